"""shared/spec.py: every validation path reports the step and the field."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest

from shared.errors import InvalidRequest, NotFound
from shared.spec import (
    InputRef,
    check_datastore_path,
    definition_json_schema,
    load_definition,
    parse_definition,
    resolve_dataset_path,
    substitute,
    substitute_arguments,
    validate_parameter_assignments,
)

REPO_ROOT = Path(__file__).resolve().parents[2]

IRIS = {
    "name": "iris-retrain",
    "description": "Retrain when new data lands",
    "parameters": {"learning_rate": 0.1, "data_path": "iris/raw", "epochs": 3, "shuffle": True},
    "computes": {"cpu-cluster": {"type": "aml", "vm_size": "STANDARD_D2_V2"}},
    "datasets": {"raw": {"datastore": "workspaceblobstore", "path": "{parameters.data_path}"}},
    "steps": [
        {
            "name": "prep",
            "type": "python",
            "compute": "local",
            "source_directory": "src",
            "script_name": "prep.py",
            "arguments": ["--raw", "{inputs.raw}", "--out", "{outputs.clean}", "--lr", "{parameters.learning_rate}"],
            "inputs": {"raw": "datasets.raw"},
            "outputs": ["clean"],
            "allow_reuse": True,
            "hash_paths": [],
        },
        {
            "name": "train",
            "source_directory": "src",
            "script_name": "train.py",
            "arguments": ["--data", "{inputs.clean}", "--model", "{outputs.model}", "--epochs", 5],
            "inputs": {"clean": "prep.clean"},
            "outputs": ["model"],
        },
    ],
}


def definition(**changes):
    data = copy.deepcopy(IRIS)
    data.update(changes)
    return data


def with_step(index: int, **changes):
    data = copy.deepcopy(IRIS)
    data["steps"][index].update(changes)
    return data


def problems(data, base_dir=None) -> list[str]:
    with pytest.raises(InvalidRequest) as caught:
        parse_definition(data, base_dir)
    return caught.value.message.splitlines()


def make_sources(root: Path) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "src" / "prep.py").write_text("print('prep')\n")
    (root / "src" / "train.py").write_text("print('train')\n")
    return root


# -- the happy path ------------------------------------------------------------------------------


def test_parses_the_api_example_with_defaults():
    defn = parse_definition(IRIS)
    train = defn.step("train")
    assert train.type == "python" and train.compute == "local" and train.allow_reuse is True
    assert train.max_retries == 0 and train.retry_interval_seconds == 30
    assert defn.datasets["raw"].datastore == "workspaceblobstore"
    assert defn.upstream("train") == ["prep"]
    assert defn.dependencies() == {"prep": [], "train": ["prep"]}
    assert defn.computes["cpu-cluster"].settings == {"vm_size": "STANDARD_D2_V2"}


def test_literal_arguments_keep_their_types():
    defn = parse_definition(with_step(0, arguments=["1", 1, 1.5, True]))
    assert [type(a) for a in defn.step("prep").arguments] == [str, int, float, bool]


def test_parameter_types_come_from_defaults():
    defn = parse_definition(IRIS)
    assert {k: type(v) for k, v in defn.parameters.items()} == {
        "learning_rate": float,
        "data_path": str,
        "epochs": int,
        "shuffle": bool,
    }


def test_step_lookup_of_unknown_name_is_not_found():
    with pytest.raises(NotFound, match="'nope'"):
        parse_definition(IRIS).step("nope")


def test_run_after_is_an_edge():
    data = copy.deepcopy(IRIS)
    data["steps"].append({"name": "report", "script_name": "r.py", "run_after": ["train"]})
    assert parse_definition(data).upstream("report") == ["train"]


# -- shape errors (pydantic) become `steps[name].field` lines -------------------------------------


def test_invalid_pipeline_name():
    assert problems(definition(name="-bad")) == [
        "name: must be 1-64 letters, digits, '_', '.', '-', starting with a letter or digit, got '-bad'"
    ]


def test_unknown_step_type_names_step_and_field():
    (line,) = problems(with_step(1, type="java"))
    assert line.startswith("steps[train].type: must be one of")


def test_unknown_field_names_step_and_field():
    assert problems(with_step(0, scipt_name="x.py")) == ["steps[prep].scipt_name: unknown field"]


def test_non_scalar_argument_names_its_index():
    assert problems(with_step(0, arguments=["a", {"x": 1}])) == [
        "steps[prep].arguments[1]: must be a string, number or boolean, not mapping"
    ]


def test_bad_parameter_name_and_value():
    lines = problems(definition(parameters={"bad name": 1, "empty": None}))
    assert any(line.startswith("parameters.bad name: name must be an identifier") for line in lines)
    assert "parameters.empty: must be a string, number or boolean, not null" in lines


def test_missing_step_name_uses_index():
    data = copy.deepcopy(IRIS)
    data["steps"].append({"script_name": "x.py"})
    assert problems(data) == ["steps[2].name: required"]


def test_step_name_with_dot_rejected():
    (line,) = problems(with_step(0, name="pre.p"))
    assert line.startswith("steps[pre.p].name: must be letters")


def test_all_shape_problems_reported_together():
    data = with_step(0, allow_reuse="maybe", typo=1)
    data["steps"][1]["type"] = "java"
    lines = problems(data)
    assert len(lines) == 3
    assert {line.split(":")[0] for line in lines} == {
        "steps[prep].allow_reuse",
        "steps[prep].typo",
        "steps[train].type",
    }


def test_not_a_mapping():
    with pytest.raises(InvalidRequest, match="definition: must be a mapping"):
        parse_definition(["x"])


def test_no_steps():
    assert problems(definition(steps=[]))[0].startswith("steps:")


# -- reference errors --------------------------------------------------------------------------


def test_input_naming_unknown_step():
    data = with_step(1, inputs={"clean": "prepp.clean"})
    assert problems(data) == ["steps[train].inputs.clean: unknown step 'prepp'"]


def test_input_naming_undeclared_output():
    data = with_step(1, inputs={"clean": "prep.cleaned"})
    assert problems(data) == ["steps[train].inputs.clean: step 'prep' has no output 'cleaned'"]


def test_input_naming_unknown_dataset():
    assert problems(with_step(0, inputs={"raw": "datasets.rawx"})) == [
        "steps[prep].inputs.raw: unknown dataset 'rawx'"
    ]


def test_malformed_input_reference():
    (line,) = problems(with_step(0, inputs={"raw": "raw"}))
    assert line.startswith("steps[prep].inputs.raw: 'raw' is neither")


def test_run_after_unknown_step():
    assert problems(with_step(1, run_after=["nope"])) == ["steps[train].run_after[0]: unknown step 'nope'"]


def test_unknown_compute():
    assert problems(with_step(0, compute="gpu")) == ["steps[prep].compute: unknown compute 'gpu'"]


def test_local_compute_cannot_be_redefined():
    assert problems(definition(computes={"local": {"type": "aml"}})) == [
        "computes.local: 'local' is built in and cannot be redefined"
    ]


def test_duplicate_step_names():
    data = copy.deepcopy(IRIS)
    data["steps"][1]["name"] = "prep"
    assert "steps[1].name: duplicate step name 'prep'" in problems(data)


def test_duplicate_output():
    assert problems(with_step(1, outputs=["model", "model"])) == [
        "steps[train].outputs[1]: duplicate output 'model'"
    ]


def test_python_step_needs_script():
    data = copy.deepcopy(IRIS)
    del data["steps"][1]["script_name"]
    assert problems(data) == ["steps[train].script_name: required for a python step"]


def test_data_transfer_needs_one_input_and_output():
    data = copy.deepcopy(IRIS)
    data["steps"].append({"name": "copy", "type": "data_transfer", "inputs": {"m": "train.model"}})
    assert problems(data) == ["steps[copy].inputs: a data_transfer step takes exactly one input and one output"]


def test_cycle_lists_path_and_names_field():
    data = with_step(0, inputs={"raw": "datasets.raw", "model": "train.model"})
    assert problems(data) == ["steps[train].inputs.clean: dependency cycle prep -> train -> prep"]


def test_cycle_through_run_after():
    data = copy.deepcopy(IRIS)
    data["steps"][0]["run_after"] = ["train"]
    (line,) = problems(data)
    assert "dependency cycle" in line and "prep -> train -> prep" in line


def test_self_dependency_is_a_cycle():
    (line,) = problems(with_step(0, run_after=["prep"]))
    assert line == "steps[prep].run_after: dependency cycle prep -> prep"


# -- placeholders ------------------------------------------------------------------------------


def test_unknown_parameter_placeholder():
    data = with_step(0, arguments=["--a", "b", "c", "{parameters.lr}"])
    assert problems(data) == ["steps[prep].arguments[3]: unknown placeholder {parameters.lr}"]


@pytest.mark.parametrize(
    "argument",
    ["{inputs.nope}", "{outputs.model}", "{datasets.raw}", "prefix={outputs.x}/suffix"],
)
def test_placeholders_must_name_declared_things(argument):
    (line,) = problems(with_step(0, arguments=[argument]))
    assert line.startswith("steps[prep].arguments[0]: unknown placeholder {")


def test_dataset_path_allows_only_parameter_placeholders():
    data = definition(datasets={"raw": {"path": "{inputs.x}/{parameters.nope}"}})
    assert problems(data) == [
        "datasets.raw.path: unknown placeholder {inputs.x}",
        "datasets.raw.path: unknown placeholder {parameters.nope}",
    ]


@pytest.mark.parametrize(
    ("path", "reason"),
    [("../x", "'..' leaves the datastore"), ("/abs", "absolute"), ("a\\b", "backslashes"), ("C:/x", "absolute")],
)
def test_dataset_path_must_stay_in_datastore(path, reason):
    (line,) = problems(definition(datasets={"raw": {"path": path}}))
    assert line.startswith("datasets.raw.path:") and reason in line


def test_substitute_replaces_and_rejects_unknown():
    assert substitute("{parameters.a}-{inputs.b}/{outputs.c}", {"a": 1}, {"b": "in"}, {"c": "out"}) == "1-in/out"
    with pytest.raises(InvalidRequest, match=r"unknown placeholder \{parameters.z\}"):
        substitute("{parameters.z}", {"a": 1})
    assert substitute('{"json": 1}') == '{"json": 1}'


def test_substitute_arguments_for_fingerprint_keeps_data_placeholders():
    defn = parse_definition(IRIS)
    args = substitute_arguments(defn.step("prep"), {**defn.parameters, "learning_rate": 0.2})
    assert args == ["--raw", "{inputs.raw}", "--out", "{outputs.clean}", "--lr", "0.2"]
    local = substitute_arguments(defn.step("prep"), defn.parameters, {"raw": "/in"}, {"clean": "/out"})
    assert local[:4] == ["--raw", "/in", "--out", "/out"]
    assert substitute_arguments(defn.step("train"), defn.parameters)[-1] == "5"


def test_resolve_dataset_path_rechecks_after_substitution():
    defn = parse_definition(IRIS)
    assert resolve_dataset_path(defn, "raw", {"data_path": "iris//raw/"}) == "iris/raw"
    with pytest.raises(InvalidRequest, match="datasets.raw.path: '..' leaves the datastore"):
        resolve_dataset_path(defn, "raw", {"data_path": "../other"})


def test_check_datastore_path_normalises():
    assert check_datastore_path("./a//b/") == "a/b"


def test_input_ref_parse():
    assert InputRef.parse("datasets.raw") == InputRef("dataset", "raw")
    assert InputRef.parse("prep.clean") == InputRef("step", "prep", "clean")
    assert str(InputRef.parse("prep.clean")) == "prep.clean"


# -- local paths (base_dir) --------------------------------------------------------------------


def test_source_directory_escaping_without_base_dir():
    assert problems(with_step(0, source_directory="../..")) == [
        "steps[prep].source_directory: path '../..' leaves the pipeline folder"
    ]


def test_source_directory_must_exist_in_base_dir(tmp_path):
    make_sources(tmp_path)
    parse_definition(IRIS, tmp_path)
    assert problems(with_step(0, source_directory="srcx"), tmp_path) == [
        "steps[prep].source_directory: path 'srcx' does not exist"
    ]


def test_absolute_source_directory(tmp_path):
    make_sources(tmp_path)
    (line,) = problems(with_step(0, source_directory=str(tmp_path / "src")), tmp_path)
    assert line.startswith("steps[prep].source_directory:") and "absolute" in line


def test_symlinked_source_directory_leaving_the_folder(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "prep.py").write_text("")
    root = make_sources(tmp_path / "pipeline")
    os.symlink(outside, root / "link")
    assert problems(with_step(0, source_directory="link"), root) == [
        "steps[prep].source_directory: path 'link' leaves the pipeline folder"
    ]


def test_script_must_exist_in_source_directory(tmp_path):
    make_sources(tmp_path)
    assert problems(with_step(0, script_name="missing.py"), tmp_path) == [
        "steps[prep].script_name: path 'missing.py' does not exist"
    ]


def test_hash_paths_checked(tmp_path):
    make_sources(tmp_path)
    (tmp_path / "config.yaml").write_text("a: 1")
    parse_definition(with_step(0, hash_paths=["../config.yaml"]), tmp_path)
    assert problems(with_step(0, hash_paths=["../../etc/passwd"]), tmp_path) == [
        "steps[prep].hash_paths[0]: path '../../etc/passwd' leaves the pipeline folder"
    ]


# -- loading files ---------------------------------------------------------------------------


def test_load_yaml_and_json_by_content(tmp_path):
    make_sources(tmp_path)
    import yaml

    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(IRIS))
    defn, base = load_definition(tmp_path / "pipeline.yaml")
    assert defn.name == "iris-retrain" and base == tmp_path.resolve()
    (tmp_path / "p.txt").write_text(json.dumps(IRIS))
    assert load_definition(tmp_path / "p.txt")[0] == defn
    assert load_definition(tmp_path)[0] == defn  # a folder holding pipeline.yaml


def test_load_errors_name_the_file(tmp_path):
    make_sources(tmp_path)
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(with_step(1, inputs={"clean": "prepp.clean"})))
    with pytest.raises(InvalidRequest) as caught:
        load_definition(path)
    assert caught.value.message == f"{path}: steps[train].inputs.clean: unknown step 'prepp'"


def test_load_syntax_errors_name_the_file(tmp_path):
    bad_yaml = tmp_path / "a.yaml"
    bad_yaml.write_text("name: [unclosed\n")
    with pytest.raises(InvalidRequest, match=f"{bad_yaml}: invalid YAML"):
        load_definition(bad_yaml)
    bad_json = tmp_path / "b.json"
    bad_json.write_text('{"name": }')
    with pytest.raises(InvalidRequest, match=f"{bad_json}: invalid JSON at line 1"):
        load_definition(bad_json)
    with pytest.raises(InvalidRequest, match="no such file"):
        load_definition(tmp_path / "missing.yaml")


# -- parameter assignments ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("assignments", "expected"),
    [
        ({}, {"learning_rate": 0.1, "data_path": "iris/raw", "epochs": 3, "shuffle": True}),
        ({"learning_rate": 1}, {"learning_rate": 1.0}),
        ({"learning_rate": "0.2"}, {"learning_rate": 0.2}),
        ({"learning_rate": "1e-3"}, {"learning_rate": 0.001}),
        ({"epochs": "7"}, {"epochs": 7}),
        ({"shuffle": "false"}, {"shuffle": False}),
        ({"shuffle": "TRUE"}, {"shuffle": True}),
        ({"data_path": "other/path"}, {"data_path": "other/path"}),
    ],
)
def test_parameter_assignments_typed_with_defaults(assignments, expected):
    resolved = validate_parameter_assignments(parse_definition(IRIS), assignments)
    assert set(resolved) == set(IRIS["parameters"])
    for name, value in expected.items():
        assert resolved[name] == value and type(resolved[name]) is type(value)


@pytest.mark.parametrize(
    ("assignments", "message"),
    [
        ({"lr": 1}, "ParameterAssignments.lr: unknown parameter"),
        ({"learning_rate": "abc"}, "ParameterAssignments.learning_rate: expected float, got str 'abc'"),
        ({"learning_rate": True}, "ParameterAssignments.learning_rate: expected float, got bool True"),
        ({"epochs": 2.0}, "ParameterAssignments.epochs: expected int, got float 2.0"),
        ({"epochs": "2.5"}, "ParameterAssignments.epochs: expected int"),
        ({"shuffle": "yes"}, "ParameterAssignments.shuffle: expected bool"),
        ({"shuffle": 1}, "ParameterAssignments.shuffle: expected bool"),
        ({"data_path": 3}, "ParameterAssignments.data_path: expected str, got int 3"),
    ],
)
def test_bad_parameter_assignments_name_the_parameter(assignments, message):
    with pytest.raises(InvalidRequest) as caught:
        validate_parameter_assignments(parse_definition(IRIS), assignments)
    assert caught.value.message.startswith(message)


def test_all_bad_assignments_reported():
    with pytest.raises(InvalidRequest) as caught:
        validate_parameter_assignments(parse_definition(IRIS), {"lr": 1, "epochs": "x"})
    assert len(caught.value.message.splitlines()) == 2


# -- schema ------------------------------------------------------------------------------------


def test_committed_schema_matches_generated():
    committed = json.loads((REPO_ROOT / "schemas" / "pipeline.schema.json").read_text())
    assert committed == definition_json_schema(), (
        "schemas/pipeline.schema.json is stale; regenerate with "
        "`.venv/bin/python -m shared.spec > schemas/pipeline.schema.json`"
    )


def test_schema_describes_steps():
    schema = definition_json_schema()
    step = schema["$defs"]["StepSpec"]
    assert step["additionalProperties"] is False
    assert {"name", "inputs", "outputs", "allow_reuse"} <= set(step["properties"])


def test_yaml_duplicate_keys_rejected_with_line(tmp_path):
    path = tmp_path / "pipeline.yaml"
    path.write_text("name: a\nname: b\nsteps: []\n")
    with pytest.raises(InvalidRequest) as caught:
        load_definition(path)
    assert caught.value.message == f"{path}: invalid YAML at line 2 column 1: duplicate key 'name'"


def test_yaml_exponent_floats_are_numbers(tmp_path):
    path = tmp_path / "pipeline.yaml"
    path.write_text("name: p\nparameters: {lr: 1e-3, n: 3, s: '1e-3'}\nsteps: [{name: a, script_name: a.py}]\n")
    (tmp_path / "a.py").write_text("")
    defn, _ = load_definition(path)
    assert defn.parameters == {"lr": 0.001, "n": 3, "s": "1e-3"}
    assert type(defn.parameters["lr"]) is float


def test_model_dump_round_trips():
    defn = parse_definition(IRIS)
    again = parse_definition(json.loads(json.dumps(defn.model_dump(mode="json"))))
    assert again == defn
    assert again.computes["cpu-cluster"].settings == {"vm_size": "STANDARD_D2_V2"}


def test_script_must_stay_in_source_directory(tmp_path):
    make_sources(tmp_path)
    (tmp_path / "other.py").write_text("")
    assert problems(with_step(0, script_name="../other.py"), tmp_path) == [
        "steps[prep].script_name: path '../other.py' leaves the source directory"
    ]
    assert problems(with_step(0, script_name="../other.py")) == [
        "steps[prep].script_name: path '../other.py' leaves the source directory"
    ]


def test_source_directory_that_is_a_file(tmp_path):
    make_sources(tmp_path)
    assert problems(with_step(0, source_directory="src/prep.py"), tmp_path) == [
        "steps[prep].source_directory: path 'src/prep.py' is not a folder"
    ]


def test_cycle_reported_together_with_other_problems():
    data = with_step(0, inputs={"raw": "datasets.raw", "model": "train.model"}, compute="gpu")
    assert problems(data) == [
        "steps[prep].compute: unknown compute 'gpu'",
        "steps[train].inputs.clean: dependency cycle prep -> train -> prep",
    ]
