"""Validation of remote compute entries and backend step settings (issue 5)."""

from __future__ import annotations

import pytest

from shared.errors import InvalidRequest
from shared.spec import parse_definition

COMPUTES = {
    "dbx": {"type": "databricks", "host": "https://adb-1.2.azuredatabricks.net", "token_setting": "DBX_PAT",
            "existing_cluster_id": "0101-abc"},
    "cpu": {"type": "aml", "subscription_id": "sub", "resource_group": "rg", "workspace_name": "ws",
            "cluster": "cpu-cluster"},
    "lake": {"type": "adla", "account": "myadla"},
}


def problems(steps, computes=None) -> list[str]:
    try:
        parse_definition({"name": "p", "computes": computes if computes is not None else COMPUTES,
                          "datasets": {"raw": {"path": "raw"}}, "steps": steps})
    except InvalidRequest as exc:
        return exc.message.splitlines()
    return []


def test_a_valid_mixed_definition():
    assert problems([
        {"name": "nb", "type": "databricks", "compute": "dbx", "settings": {"notebook_path": "/Repos/x/nb"},
         "arguments": ["--mode", "full"], "outputs": ["out"]},
        {"name": "py", "type": "databricks", "compute": "dbx", "settings": {"python_script_path": "dbfs:/a.py"}},
        {"name": "train", "compute": "cpu", "source_directory": "src", "script_name": "train.py",
         "inputs": {"d": "nb.out"}},
        {"name": "copy", "type": "data_transfer", "inputs": {"src": "datasets.raw"}, "outputs": ["dst"]},
        {"name": "usql", "type": "adla", "compute": "lake", "script_name": "q.usql"},
    ]) == []


def test_step_type_must_fit_the_compute_type():
    assert problems([{"name": "a", "compute": "dbx", "script_name": "a.py"},
                     {"name": "b", "type": "databricks", "settings": {"notebook_path": "/n"}},
                     {"name": "c", "type": "data_transfer", "compute": "cpu", "inputs": {"s": "datasets.raw"},
                      "outputs": ["d"]}]) == [
        "steps[a].compute: a python step cannot run on compute 'dbx' (type databricks); it needs local or aml compute",
        "steps[b].compute: a databricks step cannot run on compute 'local' (type local); it needs databricks compute",
        "steps[c].compute: a data_transfer step cannot run on compute 'cpu' (type aml); it needs local compute",
    ]


def test_databricks_step_needs_exactly_one_entry_point():
    expected = ("steps[nb].settings.notebook_path: a databricks step needs exactly one of settings.notebook_path "
                "and settings.python_script_path")
    assert problems([{"name": "nb", "type": "databricks", "compute": "dbx"}]) == [expected]
    assert problems([{"name": "nb", "type": "databricks", "compute": "dbx",
                      "settings": {"notebook_path": "/n", "python_script_path": "dbfs:/p.py"}}]) == [expected]


def test_data_transfer_takes_one_input_and_one_output():
    assert problems([{"name": "copy", "type": "data_transfer", "inputs": {"src": "datasets.raw"}}]) == [
        "steps[copy].inputs: a data_transfer step takes exactly one input and one output"]


def test_secrets_are_refused_in_computes_and_step_settings():
    computes = {"dbx": {**COMPUTES["dbx"], "token": "dapi123"},
                "cpu": {**COMPUTES["cpu"], "client_secret": "s3cret"}}
    found = problems([{"name": "nb", "type": "databricks", "compute": "dbx",
                       "settings": {"notebook_path": "/n", "new_cluster": {"storage_account_key": "k"}}}], computes)
    assert [line.split(":")[0] for line in found] == [
        "computes.dbx.token", "computes.cpu.client_secret", "steps[nb].settings.new_cluster.storage_account_key"]
    assert all("app setting" in line for line in found)
    assert not any("dapi123" in line or "s3cret" in line for line in found)


def test_parameters_go_in_arguments_not_settings():
    assert problems([{"name": "nb", "type": "databricks", "compute": "dbx",
                      "settings": {"notebook_path": "/n", "notebook_params": {"lr": "{parameters.lr}"}}}]) == [
        "steps[nb].settings.notebook_params: {parameters.X} is not substituted in settings; pass parameters "
        "through arguments"]


@pytest.mark.parametrize("key", ["token_setting", "client_secret_setting", "managed_identity_client_id",
                                 "storage_uri_scheme", "tenant_id"])
def test_setting_names_are_not_secrets(key):
    computes = {"dbx": {**COMPUTES["dbx"], key: "x"}}
    assert problems([{"name": "nb", "type": "databricks", "compute": "dbx", "settings": {"notebook_path": "/n"}}],
                    computes) == []


def test_the_remote_compute_example_validates():
    from pathlib import Path

    from shared.spec import load_definition

    example = Path(__file__).resolve().parents[2] / "examples" / "remote_compute" / "pipeline.yaml"
    definition, _ = load_definition(example)
    types = {definition.compute_type(step.compute) for step in definition.steps}
    assert types == {"local", "databricks", "aml", "adla"}


def test_aml_steps_need_a_source_directory_and_notebook_arguments_are_pairs():
    assert problems([
        {"name": "train", "compute": "cpu", "script_name": "train.py"},
        {"name": "nb", "type": "databricks", "compute": "dbx", "settings": {"notebook_path": "/n"},
         "arguments": ["--a", "1", "loose"]},
        {"name": "q", "type": "adla", "compute": "lake", "script_name": "q.usql", "arguments": ["x", "1"]},
    ]) == [
        "steps[train].source_directory: required on aml compute (it is the job's code snapshot)",
        "steps[nb].arguments: must be '--name value' pairs for a databricks step "
        "(they become notebook widgets / U-SQL DECLAREs)",
        "steps[q].arguments: must be '--name value' pairs for a adla step "
        "(they become notebook widgets / U-SQL DECLAREs)",
    ]


def test_data_transfer_destination_is_checked():
    def copy(destination):
        return [{"name": "copy", "type": "data_transfer", "inputs": {"src": "datasets.raw"}, "outputs": ["dst"],
                 "settings": {"destination": destination}}]

    assert problems(copy({"datastore": "archive", "path": "published/latest"})) == []
    assert problems(copy({"path": "x"})) == ["steps[copy].settings.destination: must be {datastore, path}"]
    assert problems(copy({"datastore": "archive", "path": "../up"})) == [
        "steps[copy].settings.destination.path: '..' leaves the datastore"]
