"""CLI run progress: the live rich table (terminal) and the line printer (logs, CI)."""

from __future__ import annotations

import io

from rich.console import Console

from shared.api_models import Run
from shared.progress import LiveRunProgress, RunProgressPrinter

STEPS = [{"Name": "prep", "Status": "Completed", "StartTimeUtc": "2026-11-23T10:00:00.000Z",
          "EndTimeUtc": "2026-11-23T10:00:01.500Z", "Compute": "local",
          "Outputs": {"clean": {"Datastore": "workspaceblobstore", "Path": "runs/r/prep/clean"}},
          "Metrics": {"rows": 150}},
         {"Name": "train", "Status": "Failed", "Error": {"code": "StepFailed", "message": "exit code 3"}},
         {"Name": "evaluate", "Status": "Skipped"}]


def _run(status: str, steps: list) -> Run:
    return Run.model_validate({"Id": "mlpipe_r", "Status": status, "ExperimentName": "e",
                               "CreatedTimeUtc": "2026-11-23T10:00:00.000Z", "EndTimeUtc": None, "Steps": steps,
                               "Error": {"code": "StepFailed", "message": "step train failed"}
                               if status == "Failed" else None})


def test_live_table_on_a_terminal():
    out = io.StringIO()
    progress = LiveRunProgress(Console(file=out, force_terminal=True, width=120))
    progress.started(_run("Queued", [{"Name": s["Name"], "Status": "NotStarted"} for s in STEPS]))
    progress.update(_run("Running", STEPS[:1] + [{"Name": "train", "Status": "Running"}]))
    progress.finished(_run("Failed", STEPS))
    text = out.getvalue()
    for expected in ("mlpipe_r", "prep", "1.50s", "exit code 3", "Skipped", "step train failed",
                     "prep.clean: workspaceblobstore/runs/r/prep/clean", "rows"):
        assert expected in text, expected


def test_line_printer_prints_each_change_once():
    out = io.StringIO()
    printer = RunProgressPrinter(out)
    printer.started(_run("Queued", []))
    running = _run("Running", [{"Name": "prep", "Status": "Running"}])
    printer.update(running)
    printer.update(running)
    printer.finished(_run("Failed", STEPS))
    text = out.getvalue()
    assert text.count("prep          Running") == 1
    assert "train" in text and "exit code 3" in text and "run mlpipe_r Failed" in text
