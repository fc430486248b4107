"""The pipeline definition (API.md section 1): pydantic models, loading and validation.

`parse_definition` is the one entry point that validates: pydantic checks the shape, then
`_semantic_problems` checks references, placeholders, paths and cycles. Every problem is
reported at once, one per line, as `InvalidRequest` with a location such as
`steps[train].inputs.clean: unknown step 'prepp'`; a raw pydantic error never escapes.

`PipelineDefinition.model_validate` alone checks only the shape; use it to reload a definition
that was already validated (e.g. from a published pipeline record).
"""

from __future__ import annotations

import json
import math
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, StringConstraints, ValidationError

from shared.errors import InvalidRequest, NotFound
from shared.graph import find_cycle

__all__ = [
    "BUILTIN_COMPUTE",
    "DEFAULT_DATASTORE",
    "ComputeSpec",
    "DatasetSpec",
    "InputRef",
    "PipelineDefinition",
    "StepSpec",
    "check_datastore_path",
    "definition_json_schema",
    "format_value",
    "load_definition",
    "parse_definition",
    "placeholders_in",
    "resolve_dataset_path",
    "substitute",
    "substitute_arguments",
    "validate_parameter_assignments",
]

BUILTIN_COMPUTE = "local"
DEFAULT_DATASTORE = "workspaceblobstore"
DEFINITION_FILE_NAMES = ("pipeline.yaml", "pipeline.yml", "pipeline.json")

PIPELINE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
# Identifiers appear inside `{inputs.X}` placeholders and `STEP.OUTPUT` references, so no dots.
IDENTIFIER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
STEP_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$"
RESOURCE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"  # computes, datastores

PipelineName = Annotated[str, StringConstraints(pattern=PIPELINE_NAME_PATTERN)]
Identifier = Annotated[str, StringConstraints(pattern=IDENTIFIER_PATTERN)]
StepName = Annotated[str, StringConstraints(pattern=STEP_NAME_PATTERN)]
ResourceName = Annotated[str, StringConstraints(pattern=RESOURCE_NAME_PATTERN)]

_PATTERN_HINTS = {
    PIPELINE_NAME_PATTERN: "must be 1-64 letters, digits, '_', '.', '-', starting with a letter or digit",
    IDENTIFIER_PATTERN: "must be an identifier: letters, digits and '_', not starting with a digit, at most 64",
    STEP_NAME_PATTERN: "must be letters, digits, '_' and '-', starting with a letter or '_', at most 64",
    RESOURCE_NAME_PATTERN: "must be 1-64 letters, digits, '_', '.', '-', starting with a letter or digit",
}

# `{namespace.name}`; a namespace other than inputs/outputs/parameters is reported as unknown.
PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z0-9_.-]+)\}")
PLACEHOLDER_NAMESPACES = ("inputs", "outputs", "parameters")


def _scalar_only(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number")
    if value is None or not isinstance(value, (bool, int, float, str)):
        raise ValueError(f"must be a string, number or boolean, not {_type_name(value)}")
    return value


def _type_name(value: Any) -> str:
    return {type(None): "null", dict: "mapping", list: "list"}.get(type(value), type(value).__name__)


# A parameter default or a literal argument. In pydantic's smart union an exact type match wins,
# so True stays a bool and "1" a string; the before-validator gives one clear message instead of
# one per union member.
ScalarValue = Annotated[bool | int | float | str, BeforeValidator(_scalar_only)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ComputeSpec(BaseModel):
    """A named compute target; settings beyond `type` belong to the backend and are kept as is."""

    model_config = ConfigDict(extra="allow")

    type: Literal["aml", "databricks", "adla"]

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class DatasetSpec(_Model):
    """A path on a datastore. The path may use `{parameters.NAME}` (e.g. a data_path parameter)."""

    datastore: ResourceName = DEFAULT_DATASTORE
    path: str = Field(min_length=1)


@dataclass(frozen=True)
class InputRef:
    """A parsed input reference: `datasets.NAME` (kind "dataset") or `STEP.OUTPUT` (kind "step")."""

    kind: Literal["dataset", "step"]
    name: str
    output: str | None = None

    @classmethod
    def parse(cls, ref: str) -> InputRef:
        head, dot, tail = ref.partition(".")
        if not dot or not head or not tail:
            raise ValueError(f"'{ref}' is neither 'datasets.NAME' nor 'STEP.OUTPUT'")
        if head == "datasets":
            return cls("dataset", tail)
        return cls("step", head, tail)

    @classmethod
    def try_parse(cls, ref: str) -> InputRef | None:
        try:
            return cls.parse(ref)
        except ValueError:
            return None

    def __str__(self) -> str:
        return f"datasets.{self.name}" if self.kind == "dataset" else f"{self.name}.{self.output}"


class StepSpec(_Model):
    """One step. `settings` carries backend-specific options (e.g. a Databricks notebook_path)."""

    name: StepName
    type: Literal["python", "databricks", "adla", "data_transfer"] = "python"
    compute: ResourceName = BUILTIN_COMPUTE
    source_directory: str | None = Field(
        default=None, description="Relative to the definition file; None means no source snapshot."
    )
    script_name: str | None = None
    arguments: list[ScalarValue] = Field(default_factory=list)
    inputs: dict[Identifier, str] = Field(default_factory=dict, description="datasets.NAME or STEP.OUTPUT")
    outputs: list[Identifier] = Field(default_factory=list)
    allow_reuse: bool = True
    hash_paths: list[str] = Field(default_factory=list, description="Relative to source_directory.")
    run_after: list[StepName] = Field(default_factory=list)
    environment: dict[str, Any] | None = Field(
        default=None, description="Environment variables / requirements; part of the fingerprint."
    )
    settings: dict[str, Any] = Field(default_factory=dict, description="Backend-specific step settings.")
    max_retries: int = Field(default=0, ge=0, le=100)
    retry_interval_seconds: float = Field(default=30, ge=0, le=86400)

    def input_refs(self) -> dict[str, InputRef]:
        """{input name: parsed reference}; only for a validated step (refs are well-formed)."""
        return {name: InputRef.parse(ref) for name, ref in self.inputs.items()}

    def upstream_steps(self) -> list[str]:
        """Steps this one needs: producers of its PipelineData inputs plus run_after, sorted.
        (Malformed references, possible only before validation finished, are not edges.)"""
        refs = (InputRef.try_parse(text) for text in self.inputs.values())
        producers = {ref.name for ref in refs if ref is not None and ref.kind == "step"}
        return sorted(producers | set(self.run_after))


class PipelineDefinition(_Model):
    name: PipelineName
    description: str | None = None
    parameters: dict[Identifier, ScalarValue] = Field(default_factory=dict)
    computes: dict[ResourceName, ComputeSpec] = Field(default_factory=dict)
    datasets: dict[StepName, DatasetSpec] = Field(default_factory=dict)
    steps: list[StepSpec] = Field(min_length=1)
    _steps_by_name: dict[str, StepSpec] | None = PrivateAttr(default=None)

    def step(self, name: str) -> StepSpec:
        """The step called `name` (a dict lookup: large pipelines ask this once per step)."""
        if self._steps_by_name is None:
            self._steps_by_name = {step.name: step for step in self.steps}
        try:
            return self._steps_by_name[name]
        except KeyError:
            raise NotFound(f"step '{name}' is not in pipeline '{self.name}'") from None

    @property
    def step_names(self) -> list[str]:
        return [step.name for step in self.steps]

    def upstream(self, step: str | StepSpec) -> list[str]:
        """Names of the steps `step` needs (data inputs and run_after), sorted."""
        return (self.step(step) if isinstance(step, str) else step).upstream_steps()

    def dependencies(self) -> dict[str, list[str]]:
        """{step: [upstream steps]}: the orchestrator input's `steps` and graph.py's input."""
        return {step.name: step.upstream_steps() for step in self.steps}

    def compute_type(self, compute: str) -> str:
        return "local" if compute == BUILTIN_COMPUTE else self.computes[compute].type


# ---------------------------------------------------------------------------------------------
# Placeholders and values


def format_value(value: Any) -> str:
    """How a parameter or literal argument appears on a command line: `str()` as Azure ML does
    (so booleans are `True`/`False`, floats use Python's shortest repr)."""
    return str(value)


def placeholders_in(text: str) -> list[tuple[str, str]]:
    """[(namespace, name)] for every `{namespace.name}` in text, in order."""
    return [(m.group(1), m.group(2)) for m in PLACEHOLDER_RE.finditer(text)]


def substitute(
    text: str,
    parameters: Mapping[str, Any] | None = None,
    inputs: Mapping[str, Any] | None = None,
    outputs: Mapping[str, Any] | None = None,
) -> str:
    """Replace `{parameters.X}`, `{inputs.X}`, `{outputs.X}`; InvalidRequest for an unknown one."""
    tables = {"parameters": parameters or {}, "inputs": inputs or {}, "outputs": outputs or {}}

    def replace(match: re.Match) -> str:
        namespace, name = match.group(1), match.group(2)
        table = tables.get(namespace)
        if table is None or name not in table:
            raise InvalidRequest(f"unknown placeholder {match.group(0)}")
        return format_value(table[name])

    return PLACEHOLDER_RE.sub(replace, text)


def substitute_arguments(
    step: StepSpec,
    parameters: Mapping[str, Any],
    inputs: Mapping[str, Any] | None = None,
    outputs: Mapping[str, Any] | None = None,
) -> list[str]:
    """The step's arguments as strings, placeholders replaced. For the fingerprint, pass the
    parameters only and leave `inputs`/`outputs` None: their placeholders then stay literal, so
    the fingerprint does not depend on where a run happens to download its data."""
    result = []
    for argument in step.arguments:
        if not isinstance(argument, str):
            result.append(format_value(argument))
            continue
        known_only = {
            "parameters": parameters,
            "inputs": inputs if inputs is not None else {n: f"{{inputs.{n}}}" for n in step.inputs},
            "outputs": outputs if outputs is not None else {n: f"{{outputs.{n}}}" for n in step.outputs},
        }
        result.append(substitute(argument, **known_only))
    return result


# ---------------------------------------------------------------------------------------------
# Datastore paths


def _datastore_path_problem(path: str) -> str | None:
    if "\\" in path:
        return "backslashes are not allowed; use '/'"
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        return "must be relative to the datastore, not absolute"
    if ".." in path.split("/"):
        return "'..' leaves the datastore"
    if any(ord(ch) < 32 for ch in path):
        return "control characters are not allowed"
    return None


def check_datastore_path(path: str, where: str = "path") -> str:
    """Normalised datastore-relative path (no leading/trailing '/', no '.' or empty segments).

    InvalidRequest if it is absolute, has backslashes or '..'. Use it on every path built from
    user input (e.g. after a DataPathAssignment or a parameter substitution).
    """
    problem = _datastore_path_problem(path)
    if problem:
        raise InvalidRequest(f"{where}: {problem} ({path!r})")
    return "/".join(part for part in path.split("/") if part not in ("", "."))


def resolve_dataset_path(definition: PipelineDefinition, dataset: str, parameters: Mapping[str, Any]) -> str:
    """The dataset's datastore path with parameters substituted, checked again after substitution
    (a parameter value may itself try to leave the datastore)."""
    where = f"datasets.{dataset}.path"
    try:
        path = substitute(definition.datasets[dataset].path, parameters=parameters)
    except InvalidRequest as exc:
        raise InvalidRequest(f"{where}: {exc.message}") from None
    return check_datastore_path(path, where)


# ---------------------------------------------------------------------------------------------
# Semantic validation


def _placeholder_problems(text: str, allowed: Mapping[str, Any], where: str) -> list[str]:
    problems = []
    for namespace, name in placeholders_in(text):
        known = allowed.get(namespace)
        if known is None or name not in known:
            problems.append(f"{where}: unknown placeholder {{{namespace}.{name}}}")
    return problems


def _local_path_problem(
    relative: str, boundary: Path | None, start: str = ".", boundary_name: str = "pipeline folder"
) -> str | None:
    """Why `relative` (taken from `start`, a folder below `boundary`) is not a path inside
    `boundary`, or None. With `boundary` None only a lexical check is possible; with it, symlinks
    are resolved and the path must exist."""
    if "\\" in relative:
        return f"path {relative!r} uses backslashes; use '/'"
    if relative.startswith("/") or re.match(r"^[A-Za-z]:", relative):
        return f"path {relative!r} is absolute; it must be relative to the {boundary_name}"
    if boundary is None:
        lexical = posixpath.normpath(posixpath.join(start, relative))
        if lexical == ".." or lexical.startswith("../"):
            return f"path {relative!r} leaves the {boundary_name}"
        return None
    base = boundary.resolve()
    target = (base / start / relative).resolve()
    if target != base and base not in target.parents:
        return f"path {relative!r} leaves the {boundary_name}"
    if not target.exists():
        return f"path {relative!r} does not exist"
    return None


def _step_problems(
    step: StepSpec, definition: PipelineDefinition, steps_by_name: Mapping[str, StepSpec], base_dir: Path | None
) -> list[str]:
    where = f"steps[{step.name}]"
    problems: list[str] = []
    names = steps_by_name

    if step.compute != BUILTIN_COMPUTE and step.compute not in definition.computes:
        problems.append(f"{where}.compute: unknown compute '{step.compute}'")

    for input_name, ref_text in step.inputs.items():
        field = f"{where}.inputs.{input_name}"
        try:
            ref = InputRef.parse(ref_text)
        except ValueError as exc:
            problems.append(f"{field}: {exc}")
            continue
        if ref.kind == "dataset":
            if ref.name not in definition.datasets:
                problems.append(f"{field}: unknown dataset '{ref.name}'")
        elif ref.name not in names:
            problems.append(f"{field}: unknown step '{ref.name}'")
        elif ref.output not in steps_by_name[ref.name].outputs:
            problems.append(f"{field}: step '{ref.name}' has no output '{ref.output}'")

    for index, other in enumerate(step.run_after):
        if other not in names:
            problems.append(f"{where}.run_after[{index}]: unknown step '{other}'")

    seen_outputs: set[str] = set()
    for index, output in enumerate(step.outputs):
        if output in seen_outputs:
            problems.append(f"{where}.outputs[{index}]: duplicate output '{output}'")
        seen_outputs.add(output)

    allowed = {"inputs": step.inputs, "outputs": seen_outputs, "parameters": definition.parameters}
    for index, argument in enumerate(step.arguments):
        if isinstance(argument, str):
            problems += _placeholder_problems(argument, allowed, f"{where}.arguments[{index}]")

    if step.type in ("python", "adla") and not step.script_name:
        problems.append(f"{where}.script_name: required for a {step.type} step")
    if step.type == "databricks":
        entry_points = [key for key in ("notebook_path", "python_script_path") if step.settings.get(key)]
        if len(entry_points) != 1:
            problems.append(f"{where}.settings.notebook_path: a databricks step needs exactly one of "
                            "settings.notebook_path and settings.python_script_path")
    if step.type == "data_transfer" and (len(step.inputs) != 1 or len(step.outputs) != 1):
        problems.append(f"{where}.inputs: a data_transfer step takes exactly one input and one output")
    problems += _backend_settings_problems(step, definition, where)

    problems += _step_path_problems(step, where, base_dir)
    return problems


# Which compute types each step type runs on ("local" is the built-in compute).
STEP_COMPUTE_TYPES = {"python": ("local", "aml"), "databricks": ("databricks",), "adla": ("adla",),
                      "data_transfer": ("local",)}


def _secret_problems(settings: Mapping[str, Any], where: str) -> list[str]:
    from shared.credentials import secret_keys_in  # light module; kept lazy like the other imports

    return [f"{location}: secrets never go in a definition; put the value in an app setting and name that "
            f"setting instead (token_setting, client_secret_setting)" for location in secret_keys_in(settings, where)]


def _backend_settings_problems(step: StepSpec, definition: PipelineDefinition, where: str) -> list[str]:
    problems = _secret_problems(step.settings, f"{where}.settings")
    compute_type = "local" if step.compute == BUILTIN_COMPUTE else (
        definition.computes[step.compute].type if step.compute in definition.computes else None)
    allowed = STEP_COMPUTE_TYPES[step.type]
    if compute_type is not None and compute_type not in allowed:
        problems.append(f"{where}.compute: a {step.type} step cannot run on compute '{step.compute}' "
                        f"(type {compute_type}); it needs {' or '.join(allowed)} compute")
    destination = step.settings.get("destination") if step.type == "data_transfer" else None
    if destination is not None:
        if not isinstance(destination, Mapping) or not destination.get("datastore") or not destination.get("path"):
            problems.append(f"{where}.settings.destination: must be {{datastore, path}}")
        elif _datastore_path_problem(str(destination["path"])):
            problems.append(f"{where}.settings.destination.path: {_datastore_path_problem(str(destination['path']))}")
    if compute_type == "aml" and step.type == "python" and step.source_directory is None:
        problems.append(f"{where}.source_directory: required on aml compute (it is the job's code snapshot)")
    if (step.type == "adla" or (step.type == "databricks" and step.settings.get("notebook_path"))) and (
            len(step.arguments) % 2 or any(not str(a).startswith("--") for a in step.arguments[::2])):
        problems.append(f"{where}.arguments: must be '--name value' pairs for a {step.type} step "
                        "(they become notebook widgets / U-SQL DECLAREs)")
    for key, value in step.settings.items():
        if any(namespace == "parameters" for namespace, _ in placeholders_in(json.dumps(value))):
            problems.append(f"{where}.settings.{key}: {{parameters.X}} is not substituted in settings; "
                            "pass parameters through arguments")
    return problems


def _compute_problems(definition: PipelineDefinition) -> list[str]:
    problems: list[str] = []
    for name, compute in definition.computes.items():
        where = f"computes.{name}"
        # Which settings a backend requires (host, workspace...) is checked by the backend at
        # submit, naming the compute: a definition may be published before its compute exists.
        problems += _secret_problems(compute.settings, where)
    return problems


def _step_path_problems(step: StepSpec, where: str, base_dir: Path | None) -> list[str]:
    """source_directory inside the pipeline folder; hash_paths (relative to the source directory,
    as in Azure ML) inside the pipeline folder; a python script inside its source directory,
    because only the source directory is snapshotted and shipped."""
    problems: list[str] = []
    source = step.source_directory or "."
    if step.source_directory is not None:
        problem = _local_path_problem(step.source_directory, base_dir)
        if not problem and base_dir is not None and not (base_dir / source).is_dir():
            problem = f"path {source!r} is not a folder"
        if problem:
            return [f"{where}.source_directory: {problem}"]
    for index, hash_path in enumerate(step.hash_paths):
        problem = _local_path_problem(hash_path, base_dir, start=source)
        if problem:
            problems.append(f"{where}.hash_paths[{index}]: {problem}")
    if step.script_name and step.type in ("python", "adla"):
        source_root = base_dir / source if base_dir is not None else None
        problem = _local_path_problem(step.script_name, source_root, boundary_name="source directory")
        if problem:
            problems.append(f"{where}.script_name: {problem}")
    return problems


def _cycle_problem(definition: PipelineDefinition) -> str | None:
    cycle = find_cycle(definition.dependencies())
    if not cycle:
        return None
    # cycle[1] needs cycle[0]: name the field of cycle[1] that creates that edge.
    producer, consumer = cycle[0], definition.step(cycle[1])
    field = "run_after"
    for input_name, ref_text in consumer.inputs.items():
        if ref_text.partition(".")[0] == producer:
            field = f"inputs.{input_name}"
            break
    return f"steps[{consumer.name}].{field}: dependency cycle " + " -> ".join(cycle)


def _semantic_problems(definition: PipelineDefinition, base_dir: Path | None) -> list[str]:
    problems: list[str] = []
    if BUILTIN_COMPUTE in definition.computes:
        problems.append(f"computes.{BUILTIN_COMPUTE}: '{BUILTIN_COMPUTE}' is built in and cannot be redefined")
    problems += _compute_problems(definition)
    for name, dataset in definition.datasets.items():
        where = f"datasets.{name}.path"
        problem = _datastore_path_problem(dataset.path)
        if problem:
            problems.append(f"{where}: {problem}")
        problems += _placeholder_problems(dataset.path, {"parameters": definition.parameters}, where)

    seen: set[str] = set()
    for index, step in enumerate(definition.steps):
        if step.name in seen:
            problems.append(f"steps[{index}].name: duplicate step name '{step.name}'")
        seen.add(step.name)
        if step.name == "datasets":
            problems.append(f"steps[{index}].name: 'datasets' is reserved (inputs use datasets.NAME)")
    if problems and len(seen) != len(definition.steps):
        return problems  # references are ambiguous with duplicate names
    steps_by_name = {step.name: step for step in definition.steps}
    for step in definition.steps:
        problems += _step_problems(step, definition, steps_by_name, base_dir)
    cycle = _cycle_problem(definition)  # unknown references are ignored by find_cycle
    if cycle:
        problems.append(cycle)
    return problems


# ---------------------------------------------------------------------------------------------
# pydantic errors -> `steps[name].field: message`


def _location(loc: tuple, data: Any) -> str:
    parts: list[str] = []
    node = data
    for element in loc:
        if element == "[key]":
            continue
        if isinstance(element, int):
            label = str(element)
            if parts == ["steps"] and isinstance(node, list) and element < len(node):
                item = node[element]
                if isinstance(item, Mapping) and isinstance(item.get("name"), str) and item["name"]:
                    label = item["name"]
            parts[-1] = f"{parts[-1]}[{label}]" if parts else f"[{label}]"
        else:
            parts.append(str(element))
        node = _child(node, element)
    return ".".join(parts) or "definition"


def _child(node: Any, key: Any) -> Any:
    if isinstance(node, Mapping):
        return node.get(key)
    if isinstance(node, list) and isinstance(key, int) and key < len(node):
        return node[key]
    return None


def _pydantic_message(error: dict) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "string_pattern_mismatch":
        hint = _PATTERN_HINTS.get(ctx.get("pattern"), f"must match {ctx.get('pattern')}")
        return f"{hint}, got {error.get('input')!r}"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"must be a mapping, not {_type_name(error.get('input'))}"
    if kind == "list_type":
        return f"must be a list, not {_type_name(error.get('input'))}"
    if kind == "string_type":
        return f"must be a string, not {_type_name(error.get('input'))}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}, got {error.get('input')!r}"
    message = error["msg"]
    if kind not in ("too_short", "too_long") and not isinstance(error.get("input"), (dict, list)):
        message += f", got {error.get('input')!r}"
    return message


def _pydantic_problems(exc: ValidationError, data: Any) -> list[str]:
    problems = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        if "[key]" in loc:  # a mapping key (a name) is invalid: point at the name itself
            problems.append(f"{_location(loc, data)}: name {_pydantic_message(error)}")
            continue
        problems.append(f"{_location(loc, data)}: {_pydantic_message(error)}")
    return list(dict.fromkeys(problems))


# ---------------------------------------------------------------------------------------------
# Public entry points


def parse_definition(data: Any, base_dir: Path | None = None) -> PipelineDefinition:
    """Validate a definition mapping; InvalidRequest listing every problem, one per line.

    With `base_dir` (the folder holding the definition file), source_directory, script_name and
    hash_paths must exist and stay inside it after resolving symlinks; without it, paths are
    checked lexically only.
    """
    if not isinstance(data, Mapping):
        raise InvalidRequest(f"definition: must be a mapping, not {_type_name(data)}")
    try:
        definition = PipelineDefinition.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequest("\n".join(_pydantic_problems(exc, data))) from None
    problems = _semantic_problems(definition, Path(base_dir) if base_dir is not None else None)
    if problems:
        raise InvalidRequest("\n".join(problems))
    return definition


class _DefinitionLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys (PyYAML silently keeps the last one) and reads
    YAML 1.2 floats: plain PyYAML (YAML 1.1) loads `learning_rate: 1e-3` as the *string* "1e-3",
    which would make the parameter a str."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_DefinitionLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _read_definition_file(path: Path) -> Any:
    text = path.read_text(encoding="utf-8-sig")
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidRequest(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    try:
        return yaml.load(text, Loader=_DefinitionLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise InvalidRequest(f"{path}: invalid YAML{where}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise InvalidRequest(f"{path}: invalid YAML: {exc}".replace("\n", " ")) from None


def load_definition(path: str | Path) -> tuple[PipelineDefinition, Path]:
    """Load a YAML or JSON definition (told apart by content); returns (definition, its folder).

    `path` may be a folder holding pipeline.yaml / pipeline.yml / pipeline.json. Every error line
    starts with the file name.
    """
    path = Path(path)
    if path.is_dir():
        candidates = [path / name for name in DEFINITION_FILE_NAMES if (path / name).is_file()]
        if not candidates:
            raise InvalidRequest(f"{path}: no {' / '.join(DEFINITION_FILE_NAMES)} in this folder")
        path = candidates[0]
    if not path.is_file():
        raise InvalidRequest(f"{path}: no such file")
    base_dir = path.resolve().parent
    data = _read_definition_file(path)
    try:
        return parse_definition(data, base_dir), base_dir
    except InvalidRequest as exc:
        raise InvalidRequest("\n".join(f"{path}: {line}" for line in exc.message.splitlines())) from None


def definition_json_schema() -> dict:
    """JSON Schema (2020-12) of the definition's shape (references are checked by parse_definition)."""
    schema = PipelineDefinition.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://mlpipe.dev/schemas/pipeline.schema.json",
        **schema,
        "title": "mlpipe pipeline definition",
    }


# ---------------------------------------------------------------------------------------------
# Parameter assignments at submit time

_INT_TEXT = re.compile(r"^[+-]?\d+$")
_FLOAT_TEXT = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def _coerce_parameter(name: str, value: Any, default: Any) -> Any:
    expected = type(default)
    wrong = InvalidRequest(
        f"ParameterAssignments.{name}: expected {expected.__name__}, got {_type_name(value)} {value!r}"
    )
    if expected is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise wrong
    if isinstance(value, bool):
        raise wrong  # a bool is an int in Python, but never a number parameter here
    if expected is int:
        if isinstance(value, int):
            return value
        if isinstance(value, str) and _INT_TEXT.match(value.strip()):
            return int(value.strip())
        raise wrong
    if expected is float:
        if isinstance(value, (int, float)) and math.isfinite(value):
            return float(value)
        if isinstance(value, str) and _FLOAT_TEXT.match(value.strip()):
            return float(value.strip())
        raise wrong
    if isinstance(value, str):
        return value
    raise wrong


def validate_parameter_assignments(
    definition: PipelineDefinition, assignments: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Every parameter, typed, defaults filled in; InvalidRequest naming each bad assignment.

    The type of a parameter is the type of its default. JSON values must match it, with two
    deliberate leniencies because Azure ML clients send every ParameterAssignment as a string:
    a numeric string is accepted for an int or float parameter ("3", "0.2", "1e-3"; an int-typed
    parameter takes only integer text), and "true"/"false" (any case) for a bool parameter.
    An int is accepted for a float parameter. Nothing else is coerced: a number for a str
    parameter, "yes" for a bool, 2.0 for an int are errors.
    """
    if assignments is None:
        assignments = {}
    if not isinstance(assignments, Mapping):
        raise InvalidRequest(f"ParameterAssignments: must be a mapping, not {_type_name(assignments)}")
    problems: list[str] = []
    resolved = dict(definition.parameters)
    for name, value in assignments.items():
        if name not in definition.parameters:
            known = ", ".join(sorted(definition.parameters)) or "none"
            problems.append(f"ParameterAssignments.{name}: unknown parameter (known: {known})")
            continue
        try:
            resolved[name] = _coerce_parameter(name, value, definition.parameters[name])
        except InvalidRequest as exc:
            problems.append(exc.message)
    if problems:
        raise InvalidRequest("\n".join(problems))
    return resolved


if __name__ == "__main__":  # `python -m shared.spec > schemas/pipeline.schema.json`
    print(json.dumps(definition_json_schema(), indent=2, sort_keys=True))
