"""Live run progress for the CLI: one line per step status change, then a summary table."""

from __future__ import annotations

import time
from datetime import datetime
from typing import TextIO


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    parse = lambda text: datetime.fromisoformat(text.replace("Z", "+00:00"))  # noqa: E731
    return (parse(end) - parse(start)).total_seconds()


def describe_step(step: dict) -> str:
    status = step["Status"]
    if step.get("Reused"):
        return f"Reused (from run {step.get('ReusedFromRunId')})"
    duration = _seconds_between(step.get("StartTimeUtc"), step.get("EndTimeUtc"))
    text = status if duration is None else f"{status} in {duration:.2f}s"
    if step.get("Error"):
        text += f": {step['Error'].get('message', '')}"
    return text


class RunProgressPrinter:
    def __init__(self, out: TextIO):
        self.out = out
        self.started_at = time.monotonic()
        self.seen: dict[str, tuple] = {}
        self.width = 12

    def _line(self, text: str) -> None:
        self.out.write(f"[{time.monotonic() - self.started_at:7.2f}s] {text}\n")
        self.out.flush()

    def started(self, run: dict) -> None:
        self.width = max([len(step["Name"]) for step in run.get("Steps", [])] + [self.width])
        self._line(f"run {run['Id']} {run['Status']}")

    def update(self, run: dict) -> None:
        for step in run.get("Steps", []):
            key = (step["Status"], step.get("Reused"))
            if self.seen.get(step["Name"]) != key:
                self.seen[step["Name"]] = key
                if step["Status"] != "NotStarted":
                    self._line(f"{step['Name']:<{self.width}}  {describe_step(step)}")

    def finished(self, run: dict) -> None:
        self.update(run)
        duration = _seconds_between(run.get("StartTimeUtc") or run.get("CreatedTimeUtc"), run.get("EndTimeUtc"))
        took = f" in {duration:.2f}s" if duration is not None else ""
        self._line(f"run {run['Id']} {run['Status']}{took}")
        if run.get("Error"):
            self.out.write(f"  error: {run['Error'].get('message')}\n")
        for step in run.get("Steps", []):
            for name, ref in (step.get("Outputs") or {}).items():
                self.out.write(f"  {step['Name']}.{name}: {ref['Datastore']}/{ref['Path']}\n")
            if step.get("Metrics"):
                self.out.write(f"  {step['Name']} metrics: {step['Metrics']}\n")
        self.out.flush()
