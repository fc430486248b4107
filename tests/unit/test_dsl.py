"""shared/dsl.py: the Azure-ML-v1-style builder produces a definition spec.py accepts."""

from __future__ import annotations

import pytest

from shared.dsl import Dataset, Pipeline, PipelineData, PipelineParameter, PythonScriptStep
from shared.errors import InvalidRequest


def build():
    lr = PipelineParameter("learning_rate", default_value=0.1)
    raw = Dataset("raw", path="iris/raw")
    clean, model = PipelineData("clean"), PipelineData("model")
    prep = PythonScriptStep(name="prep", script_name="prep.py", source_directory="src",
                            arguments=["--raw", raw, "--out", clean, "--lr", lr], inputs=[raw], outputs=[clean])
    train = PythonScriptStep(name="train", script_name="train.py", source_directory="src",
                             arguments=["--data", clean, "--model", model, "--epochs", 3],
                             inputs=[clean], outputs=[model], compute_target="cpu")
    return prep, train


def test_upstream_steps_are_collected_and_placeholders_written():
    prep, train = build()
    pipeline = Pipeline("iris-retrain", steps=[train], computes={"cpu": {"type": "aml"}})
    definition = pipeline.validate()
    assert definition.step_names == ["train", "prep"]
    assert definition.parameters == {"learning_rate": 0.1}
    assert definition.datasets["raw"].path == "iris/raw"
    assert definition.step("prep").arguments == ["--raw", "{inputs.raw}", "--out", "{outputs.clean}",
                                                 "--lr", "{parameters.learning_rate}"]
    assert definition.step("train").inputs == {"clean": "prep.clean"}
    assert definition.upstream("train") == ["prep"]


def test_run_after_and_validation_errors_come_from_spec():
    prep, train = build()
    report = PythonScriptStep(name="report", script_name="r.py")
    report.run_after(train)
    with pytest.raises(InvalidRequest, match=r"steps\[train\].compute: unknown compute 'cpu'"):
        Pipeline("p", steps=[report]).validate()
    definition = Pipeline("p", steps=[report], computes={"cpu": {"type": "aml"}}).validate()
    assert definition.upstream("report") == ["train"]
