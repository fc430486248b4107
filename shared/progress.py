"""Live run progress for the CLI: a live step table on a terminal (rich), else one line per step
status change (logs, CI); both end with outputs and metrics."""

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


def steps_table(run, title: str | None = None):
    """A rich Table of the run's steps: status, duration, compute, reuse, error."""
    from rich.table import Table

    table = Table(title=title, title_justify="left", expand=False)
    for column in ("step", "status", "time", "compute", "note"):
        table.add_column(column, no_wrap=column != "note")
    for step in run.get("Steps", []):
        duration = _seconds_between(step.get("StartTimeUtc"), step.get("EndTimeUtc"))
        note = ""
        if step.get("Reused"):
            note = f"reused from {step.get('ReusedFromRunId')}"
        elif step.get("Error"):
            note = str(step["Error"].get("message", ""))[:200]
        table.add_row(step["Name"], f"[{_STYLES.get(step['Status'], '')}]{step['Status']}[/]" if _STYLES.get(
            step["Status"]) else step["Status"], "" if duration is None else f"{duration:.2f}s",
            step.get("Compute") or "", note)
    return table


_STYLES = {"Completed": "green", "Finished": "green", "Failed": "red", "Canceled": "yellow", "Skipped": "dim",
           "Running": "cyan", "CancelRequested": "yellow", "Queued": "blue"}


class LiveRunProgress:
    """Live step table for a terminal (rich.live); same interface as RunProgressPrinter."""

    def __init__(self, console):
        from rich.live import Live

        self.console = console
        self.started_at = time.monotonic()
        self._run = None
        self._live = Live(console=console, refresh_per_second=8, transient=False)

    def _render(self):
        run = self._run
        elapsed = time.monotonic() - self.started_at
        status = run["Status"]
        styled = f"[{_STYLES[status]}]{status}[/]" if status in _STYLES else status
        return steps_table(run, title=f"run {run['Id']}  {styled}  {elapsed:.1f}s")

    def started(self, run) -> None:
        self._run = run
        self._live.start()
        self._live.update(self._render())

    def update(self, run) -> None:
        self._run = run
        self._live.update(self._render())

    def finished(self, run) -> None:
        self._run = run
        self._live.update(self._render())
        self._live.stop()
        if run.get("Error"):
            self.console.print(f"  error: {run['Error'].get('message')}")
        for step in run.get("Steps", []):
            for name, ref in (step.get("Outputs") or {}).items():
                self.console.print(f"  {step['Name']}.{name}: {ref['Datastore']}/{ref['Path']}", highlight=False)
            if step.get("Metrics"):
                self.console.print(f"  {step['Name']} metrics: {dict(step['Metrics'])}", highlight=False)
