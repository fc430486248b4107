"""A small Python builder for definitions, with Azure ML SDK v1 names, for users porting code.

    lr = PipelineParameter("learning_rate", default_value=0.1)
    raw = Dataset("raw", path="iris/raw")
    clean, model = PipelineData("clean"), PipelineData("model")
    prep = PythonScriptStep(name="prep", script_name="prep.py", source_directory="src",
                            arguments=["--raw", raw, "--out", clean, "--lr", lr],
                            inputs=[raw], outputs=[clean])
    train = PythonScriptStep(name="train", script_name="train.py", source_directory="src",
                             arguments=["--data", clean, "--model", model],
                             inputs=[clean], outputs=[model])
    definition = Pipeline("iris-retrain", steps=[train]).validate()

As in Azure ML, steps that produce a PipelineData another step consumes are collected
automatically, so passing the last step is enough. The builder only produces the definition
mapping (API.md section 1); `shared.spec.parse_definition` remains the one validator.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from shared.spec import DEFAULT_DATASTORE, PipelineDefinition, parse_definition

__all__ = ["Dataset", "Pipeline", "PipelineData", "PipelineParameter", "PythonScriptStep"]


class PipelineParameter:
    def __init__(self, name: str, default_value: bool | int | float | str):
        self.name = name
        self.default_value = default_value


class Dataset:
    """A datastore path used as a step input (Azure ML's DataReference / FileDataset)."""

    def __init__(self, name: str, path: str, datastore: str = DEFAULT_DATASTORE):
        self.name, self.path, self.datastore = name, path, datastore


class PipelineData:
    """Intermediate data: written by the step listing it in `outputs`, read by its consumers."""

    def __init__(self, name: str):
        self.name = name
        self.producer: PythonScriptStep | None = None


class PythonScriptStep:
    def __init__(
        self,
        name: str,
        script_name: str,
        source_directory: str | None = None,
        arguments: Iterable[Any] = (),
        inputs: Iterable[Dataset | PipelineData] = (),
        outputs: Iterable[PipelineData] = (),
        compute_target: str | Any = "local",
        allow_reuse: bool = True,
        hash_paths: Iterable[str] = (),
        environment: Mapping[str, Any] | None = None,
        step_type: str = "python",
    ):
        self.name = name
        self.script_name = script_name
        self.source_directory = source_directory
        self.arguments = list(arguments)
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.compute = getattr(compute_target, "name", compute_target)
        self.allow_reuse = allow_reuse
        self.hash_paths = list(hash_paths)
        self.environment = dict(environment) if environment is not None else None
        self.step_type = step_type
        self.after: list[PythonScriptStep] = []
        for data in self.outputs:
            data.producer = self

    def run_after(self, step: PythonScriptStep) -> None:
        self.after.append(step)

    def upstream(self) -> list[PythonScriptStep]:
        producers = [data.producer for data in self.inputs if isinstance(data, PipelineData) and data.producer]
        return producers + self.after

    def _argument(self, value: Any) -> Any:
        if isinstance(value, PipelineParameter):
            return f"{{parameters.{value.name}}}"
        if isinstance(value, PipelineData) and value in self.outputs:
            return f"{{outputs.{value.name}}}"
        if isinstance(value, (PipelineData, Dataset)):
            return f"{{inputs.{value.name}}}"
        return value

    def to_definition(self) -> dict:
        inputs = {
            data.name: (f"datasets.{data.name}" if isinstance(data, Dataset) else f"{data.producer.name}.{data.name}")
            for data in self.inputs
            if isinstance(data, Dataset) or data.producer is not None
        }
        step = {
            "name": self.name,
            "type": self.step_type,
            "compute": self.compute,
            "script_name": self.script_name,
            "arguments": [self._argument(value) for value in self.arguments],
            "inputs": inputs,
            "outputs": [data.name for data in self.outputs],
            "allow_reuse": self.allow_reuse,
            "hash_paths": self.hash_paths,
            "run_after": [step.name for step in self.after],
        }
        if self.source_directory is not None:
            step["source_directory"] = self.source_directory
        if self.environment is not None:
            step["environment"] = self.environment
        return step


class Pipeline:
    def __init__(
        self,
        name: str,
        steps: Iterable[PythonScriptStep],
        description: str | None = None,
        computes: Mapping[str, Mapping[str, Any]] | None = None,
    ):
        self.name, self.description = name, description
        self.steps = _with_upstream(steps)
        self.computes = dict(computes or {})

    def to_definition(self) -> dict:
        parameters: dict[str, Any] = {}
        datasets: dict[str, dict] = {}
        for step in self.steps:
            for value in step.arguments:
                if isinstance(value, PipelineParameter):
                    parameters[value.name] = value.default_value
            for data in step.inputs:
                if isinstance(data, Dataset):
                    datasets[data.name] = {"datastore": data.datastore, "path": data.path}
        definition: dict[str, Any] = {"name": self.name, "parameters": parameters, "computes": self.computes,
                                      "datasets": datasets, "steps": [step.to_definition() for step in self.steps]}
        if self.description is not None:
            definition["description"] = self.description
        return definition

    def validate(self, base_dir: Path | None = None) -> PipelineDefinition:
        return parse_definition(self.to_definition(), base_dir)


def _with_upstream(steps: Iterable[PythonScriptStep]) -> list[PythonScriptStep]:
    """The given steps plus every step they depend on, each once, given ones first."""
    ordered: list[PythonScriptStep] = []
    seen: set[int] = set()
    stack = list(reversed(list(steps)))
    while stack:
        step = stack.pop()
        if id(step) in seen:
            continue
        seen.add(id(step))
        ordered.append(step)
        stack.extend(reversed(step.upstream()))
    return ordered
