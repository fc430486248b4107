"""Local compute: the step script runs as a subprocess of this host, in its own process group.

Work folder `<data_dir>/work/{run_id}/{step}/`, wiped at submit:
  inputs/{name}/      downloaded inputs (PipelineData via its manifest; datasets by path)
  outputs/{name}/     empty folders the script fills; uploaded and committed on exit 0
  log.txt             stdout and stderr, interleaved
  metrics.jsonl       MLPIPE_METRICS_FILE
  result.json         the final JobStatus, written once the outputs are committed and the log uploaded

Running processes are tracked in a process-wide dict keyed by handle id. A handle that is not
in it is answered from result.json when that job had finished (a host restart between "job done"
and "step recorded" must not run the step again); otherwise it comes from an earlier host
process and cannot be followed (its pipes and exit status are gone), so poll kills what is left
of it and answers Lost. inputs/ and outputs/ are removed after a successful step (they are
copies of blobs); a failed step's folder stays for inspection until the step is submitted again.
"""

from __future__ import annotations

import _thread
import collections
import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from shared.compute import interpreters
from shared.compute.base import Gate, JobHandle, JobStatus, StepJobRequest, parse_metrics, substitute_data_placeholders
from shared.compute.forkserver import ForkedStep, ForkTemplate
from shared.datastore import default_datastore, get_datastore
from shared.errors import ComputeError, InvalidRequest, NotFound
from shared.redact import is_secret_setting
from shared.runs import RunStore, check_path_segment
from shared.settings import checked_choice, get_settings
from shared.storage import parallel_map

BACKEND_NAME = "local"
STDERR_TAIL_LINES = 20
CANCEL_MARKER = "cancel-requested"  # written into the work folder by a cancel from another process
# Finished jobs kept in memory; older ones are answered from their result.json.
_FINISHED_JOBS_KEPT = 256
# Identifies this host process; a handle from another boot is recognisably foreign.
_BOOT_ID = uuid.uuid4().hex


@dataclass
class _LocalJob:
    handle: JobHandle
    request: StepJobRequest
    process: subprocess.Popen
    work_dir: Path
    output_dirs: dict[str, Path]
    stderr_tail: collections.deque
    stderr_done: threading.Event  # the stderr pump has copied everything into the log
    exited: threading.Event  # set by a waiter thread the moment the script's process ends
    deadline: float | None
    canceled: bool = False
    timed_out: bool = False
    final: JobStatus | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


# Process-wide: every LocalBackend instance in this process sees the same jobs.
_jobs: dict[str, _LocalJob] = {}
_jobs_by_step: dict[tuple[str, str], str] = {}
_jobs_lock = threading.Lock()


def work_dir_for(run_id: str, step: str) -> Path:
    return (get_settings().data_dir / "work" / check_path_segment(run_id, "run id")
            / check_path_segment(step, "step name"))


class LocalBackend:
    name = BACKEND_NAME
    takes_gate = True  # its interpreter starts while the gate is asked (submit)

    def __init__(self, cancel_grace_seconds: float = 5.0):
        self.cancel_grace_seconds = cancel_grace_seconds

    # ----- submit --------------------------------------------------------------------------

    def submit(self, request: StepJobRequest, gate: Gate | None = None) -> JobHandle | None:
        """Start the script; with a `gate`, None (and nothing of the step ran) if the gate says no.

        The interpreter is started before the go-ahead (shared/compute/interpreters.py): the spare
        one, started while the previous step ran, or one started now whose start-up (~10 ms) overlaps
        the gate (the reuse claim: a storage round trip) and the input downloads; none of the step's
        own code runs before both are done. Raises an MlpipeError if an input cannot be staged (the
        waiting interpreter is then stopped)."""
        self._stop_previous_attempt(request.run_id, request.step_name)
        work_dir = work_dir_for(request.run_id, request.step_name)
        _wipe(work_dir)
        log_path = work_dir / "log.txt"
        ahead = _interpreters_ahead()
        interpreter, environment = _interpreter_for(request, work_dir, log_path, ahead)
        handle_id = interpreter.job_id
        try:
            go = gate() if gate is not None else True
            if go:
                arguments, output_dirs = self._prepare(request, work_dir)
        except BaseException:
            interpreters.abort(interpreter)
            raise
        if not go:
            interpreters.abort(interpreter)
            return None
        process = interpreters.go(interpreter, [request.script, *arguments], environment, work_dir, log_path)
        tail: collections.deque = collections.deque(maxlen=STDERR_TAIL_LINES)
        stderr_done, exited = threading.Event(), threading.Event()
        _start_helper(_pump_stderr, process.stderr, log_path, tail, stderr_done)
        data = {"pid": process.pid, "pgid": process.pid, "boot": _BOOT_ID, "workDir": str(work_dir),
                "runId": request.run_id, "step": request.step_name}
        if isinstance(process, ForkedStep):
            process.when_ended(exited.set)  # the template's report of its exit
            # /proc shows the template's marker for it, and when it started
            data.update(template=process.template_job_id, started=_start_time(process.pid))
        else:
            _start_helper(_wait_for_exit, process, exited)
        if ahead == "fork":
            _template.replenish(_spare_setup)
        elif ahead == "on":
            _spare.replenish(_spare_setup)
        handle = JobHandle(backend=BACKEND_NAME, id=handle_id, data=data)
        deadline = time.monotonic() + request.timeout_seconds if request.timeout_seconds else None
        job = _LocalJob(handle, request, process, work_dir, output_dirs, tail, stderr_done, exited, deadline)
        with _jobs_lock:
            _jobs[handle_id] = job
            _jobs_by_step[(request.run_id, request.step_name)] = handle_id
        return handle

    @staticmethod
    def _prepare(request: StepJobRequest, work_dir: Path) -> tuple[list[str], dict[str, Path]]:
        """Stage the inputs and create the output folders: the script's arguments (with their
        paths) and the output folders."""
        input_paths = _stage_inputs(request, work_dir / "inputs")
        output_dirs = {name: work_dir / "outputs" / check_path_segment(name, "output name")
                       for name in request.outputs}
        for folder in output_dirs.values():
            folder.mkdir(parents=True)
        arguments = substitute_data_placeholders(request.arguments, input_paths,
                                                 {n: str(p) for n, p in output_dirs.items()})
        if any("\0" in argument for argument in arguments):  # no OS passes it to a program
            raise InvalidRequest(f"step '{request.step_name}': an argument contains a NUL character")
        return arguments, output_dirs

    def _stop_previous_attempt(self, run_id: str, step: str) -> None:
        """A re-submitted step (activity retried) must not race its earlier process for the folder."""
        previous = _jobs.get(_jobs_by_step.get((run_id, step), ""))
        if previous is not None and not previous.exited.is_set():
            self.cancel(previous.handle)

    # ----- poll ----------------------------------------------------------------------------

    def poll(self, handle: JobHandle, wait_seconds: float = 0.0) -> JobStatus:
        """Wait up to `wait_seconds` for the job to end; Running if it has not."""
        job = _jobs.get(handle.id)
        if job is None:
            return _recorded_result(handle) or _give_up_foreign_job(handle)
        if job.final is not None:
            return job.final
        timeout = max(0.0, wait_seconds)
        if job.deadline is not None:
            timeout = min(timeout, max(0.0, job.deadline - time.monotonic()))
        if not job.exited.wait(timeout):
            if job.deadline is None or time.monotonic() < job.deadline:
                return JobStatus(state="Running")
            job.timed_out = True
            interpreters.kill_group(job.process.pid, signal.SIGKILL)
            job.exited.wait()
        return self._finish(job)

    def _finish(self, job: _LocalJob) -> JobStatus:
        """Collect the exited job's result once: outputs, metrics, log. Retried by the next poll if
        storage fails half way (nothing is final until everything is uploaded)."""
        with job.lock:
            if job.final is not None:
                return job.final
            # Whatever outlived the script in its group is not ours to keep (and may hold stderr open).
            interpreters.kill_group(job.process.pid, signal.SIGKILL)
            job.stderr_done.wait(timeout=5)
            code = job.process.returncode
            metrics = _read_metrics(job.work_dir / "metrics.jsonl")
            if job.canceled or (job.work_dir / CANCEL_MARKER).exists():
                status = JobStatus(state="Canceled", error="canceled", metrics=metrics)
            elif job.timed_out:
                status = JobStatus(state="Failed", metrics=metrics,
                                   error=f"timed out after {job.request.timeout_seconds:g}s")
            elif code == 0:
                status = _commit_outputs(job, metrics)
            elif code is None:  # a forked step whose template ended first
                status = JobStatus(state="Failed", metrics=metrics, error=job.process.lost)
            else:
                status = JobStatus(state="Failed", metrics=metrics, error=_failure_message(code, job.stderr_tail))
            RunStore().upload_log_file(job.request.run_id, job.request.step_name, job.work_dir / "log.txt",
                                       replaces_earlier=job.request.attempt > 1)
            _write_result(job.work_dir, job.handle.id, status)
            if status.state == "Completed":
                for folder in ("inputs", "outputs"):
                    shutil.rmtree(job.work_dir / folder, ignore_errors=True)
            job.final = status
        _forget_finished_jobs()
        return status

    # ----- cancel and logs -----------------------------------------------------------------

    def cancel(self, handle: JobHandle) -> None:
        """SIGTERM the job's process group, SIGKILL after the grace period. No-op if already ended.

        Works from another worker process on the same machine too (Functions may run several):
        a marker file tells the owning process that the exit it sees was a cancel.
        """
        job = _jobs.get(handle.id)
        if job is None:
            if _recorded_result(handle) is None:
                _cancel_foreign_job(handle, self.cancel_grace_seconds)
            return
        if job.exited.is_set():
            return
        job.canceled = True
        interpreters.kill_group(job.process.pid, signal.SIGTERM)
        job.exited.wait(self.cancel_grace_seconds)
        interpreters.kill_group(job.process.pid, signal.SIGKILL)  # the leader or children that ignored SIGTERM
        job.exited.wait()

    def fetch_logs(self, handle: JobHandle) -> str:
        """The log so far: the local file while this host has it, else the uploaded copy."""
        work_dir = Path(handle.data.get("workDir", ""))
        if handle.data.get("workDir") and (work_dir / "log.txt").is_file():
            return _read_log(work_dir)
        try:
            return RunStore().get_log(handle.data.get("runId", ""), handle.data.get("step", ""))
        except NotFound:
            return ""


# ----- helpers ----------------------------------------------------------------------------


def _write_result(work_dir: Path, handle_id: str, status: JobStatus) -> None:
    """Atomically record the job's final status next to its log (temp file + rename)."""
    temporary = work_dir / f".result.{handle_id}.tmp"
    temporary.write_text(json.dumps({"handleId": handle_id, "status": status.model_dump(mode="json")}))
    os.replace(temporary, work_dir / "result.json")


def _recorded_result(handle: JobHandle) -> JobStatus | None:
    """The final status recorded for exactly this handle, if its job finished."""
    work_dir = handle.data.get("workDir")
    if not work_dir:
        return None
    try:
        recorded = json.loads((Path(work_dir) / "result.json").read_text())
    except (OSError, ValueError):
        return None
    if recorded.get("handleId") != handle.id:
        return None  # the step was submitted again since; this handle's job is history
    return JobStatus.model_validate(recorded["status"])


def _forget_finished_jobs() -> None:
    """Bound the in-memory job table: finished jobs beyond the newest few are dropped (their
    result.json answers later polls)."""
    with _jobs_lock:
        finished = [handle_id for handle_id, job in _jobs.items() if job.final is not None]
        for handle_id in finished[:max(0, len(finished) - _FINISHED_JOBS_KEPT)]:
            job = _jobs.pop(handle_id)
            key = (job.request.run_id, job.request.step_name)
            if _jobs_by_step.get(key) == handle_id:
                del _jobs_by_step[key]


def _wipe(work_dir: Path) -> None:
    """Start from an empty work folder (inputs/ and outputs/ are created only when a step has them)."""
    if work_dir.exists():
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True)


def _stage_inputs(request: StepJobRequest, inputs_dir: Path) -> dict[str, str]:
    """Download every input concurrently; name -> local path (a folder, or the file of a single-blob dataset)."""

    def stage(item) -> tuple[str, str]:
        name, ref = item
        target = inputs_dir / check_path_segment(name, "input name")
        datastore = get_datastore(ref.datastore)
        local = datastore.download_output(ref.path, target) if ref.is_pipeline_data \
            else datastore.download_path(ref.path, target)
        return name, str(local)

    return dict(parallel_map(stage, list(request.inputs.items())))


def _interpreter_for(request: StepJobRequest, work_dir: Path, log_path: Path,
                     ahead: str) -> tuple[interpreters.Interpreter, dict[str, str]]:
    """A fork from the template or the spare interpreter if it fits the step, else one started for
    it; and the step's environment."""
    environment = _child_environment(request, work_dir)
    spare = _spare.take(environment) if ahead == "on" else None
    if spare is not None:
        environment[interpreters.JOB_ID_VARIABLE] = spare.job_id
        return spare, environment
    job_id = environment[interpreters.JOB_ID_VARIABLE] = uuid.uuid4().hex  # a later host recognises its processes
    if ahead == "fork" and _template.fits(environment):
        return interpreters.Interpreter(None, job_id, started_for_step=False, template=_template), environment
    try:
        return interpreters.start_for_step(environment, work_dir, log_path), environment
    except ComputeError as error:
        raise ComputeError(f"step '{request.step_name}': {error.message}") from error


def _host_environment() -> dict[str, str]:
    """The host's environment without its secrets: the settings holding datastore connections,
    known secret settings, anything named like a secret, and values registered as secrets (e.g. a
    compute's token_setting)."""
    datastore_connections = {spec["connection"] for spec in (get_settings().extra_datastores or {}).values()
                             if isinstance(spec, dict) and spec.get("connection")}
    env = {k: v for k, v in os.environ.items()
           if k.split("__", 1)[0] not in datastore_connections and not is_secret_setting(k, v)}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _child_environment(request: StepJobRequest, work_dir: Path) -> dict[str, str]:
    env = _host_environment()
    env.update(request.environment)
    python_path = [request.source_dir] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env.update({
        "MLPIPE_METRICS_FILE": str(work_dir / "metrics.jsonl"),
        "MLPIPE_RUN_ID": request.run_id,
        "MLPIPE_STEP_NAME": request.step_name,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join(python_path),
    })
    return env


def _spare_setup() -> tuple[dict[str, str], Path]:
    """The spare interpreter's environment (the host's without secrets) and working folder."""
    root = get_settings().data_dir / "work"
    root.mkdir(parents=True, exist_ok=True)
    return _host_environment(), root


def _interpreters_ahead() -> str:
    """How interpreters are readied ahead of local steps: "fork" (from a template that stays
    running; where the OS has no fork, as "on"), "on" (one spare at a time) or "off"."""
    choice = checked_choice("MLPIPE_LOCAL_SPARE_INTERPRETER", get_settings().local_spare_interpreter,
                            ("fork", "on", "off"))
    return "on" if choice == "fork" and not hasattr(os, "fork") else choice


# Per host process: the template local steps are forked from (shared/compute/forkserver.py), and
# the spare interpreter for the next local step (shared/compute/interpreters.py).
_template = ForkTemplate()
_spare = interpreters.SpareInterpreter()


def discard_spare_interpreter() -> None:
    """Stop the spare interpreter and let the template go, if any (the host is stopping; both would
    also exit on their own once the host process ends, at EOF on their stdin)."""
    _spare.discard()
    _template.discard()


def _start_helper(function, *args) -> None:
    """Run `function(*args)` on a new thread without waiting for it to be scheduled.

    threading.Thread.start() blocks until the thread runs; right after a fork/exec, with the new
    interpreter competing for the CPU, that wait cost milliseconds per step. These helpers need
    no join (they signal Events), so the low-level start is enough.
    """
    _thread.start_new_thread(function, args)


def _wait_for_exit(process: subprocess.Popen, exited: threading.Event) -> None:
    """Block in waitpid so poll() learns of the exit at once (Popen.wait(timeout) sleeps in steps)."""
    process.wait()
    exited.set()


def _pump_stderr(stream, log_path: Path, tail: collections.deque, done: threading.Event) -> None:
    """Copy the child's stderr into the log (O_APPEND, like its stdout) and keep the last lines."""
    try:
        with stream, open(log_path, "ab", buffering=0) as log:
            for line in iter(stream.readline, b""):
                log.write(line)
                tail.append(line.decode("utf-8", errors="replace").rstrip("\n"))
    finally:
        done.set()


def _failure_message(code: int, stderr_tail: collections.deque) -> str:
    if code < 0:
        try:
            reason = f"killed by {signal.Signals(-code).name}"
        except ValueError:
            reason = f"killed by signal {-code}"
        message = f"script exited with code {code} ({reason})"
    else:
        message = f"script exited with code {code}"
    tail = "\n".join(stderr_tail).strip()
    return f"{message}; last lines of stderr:\n{tail}" if tail else message


def _commit_outputs(job: _LocalJob, metrics: dict) -> JobStatus:
    """Upload and commit every output; Completed, or Failed if the script wrote an unusable file name.

    Storage failures propagate (the next poll retries); a bad name would fail every retry.
    """
    datastore = default_datastore()
    try:
        parallel_map(lambda name: datastore.upload_output(job.output_dirs[name], job.request.outputs[name]),
                     list(job.request.outputs))
    except InvalidRequest as error:
        return JobStatus(state="Failed", metrics=metrics, error=f"output not uploaded: {error.message}")
    return JobStatus(state="Completed", metrics=metrics, outputs=dict(job.request.outputs))


def _read_metrics(path: Path) -> dict:
    try:
        return parse_metrics(path.read_text(encoding="utf-8", errors="replace"))
    except FileNotFoundError:
        return {}


def _read_log(work_dir: Path) -> str:
    try:
        return (work_dir / "log.txt").read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def _group_members_of_job(handle: JobHandle) -> list[int]:
    """Pids in the job's process group, if /proc (Linux) shows the group is that job's: a member's
    environment as it started carries MLPIPE_JOB_ID=<job id>, or, for a step forked from a template,
    the group's leader carries the template's and started when the step did. A group id is not reused
    while the group has members, so once it is shown to be the job's, every member is."""
    pgid = handle.data.get("pgid")
    if not (isinstance(pgid, int) and pgid > 1):
        return []
    step_marker = f"MLPIPE_JOB_ID={handle.id}".encode()
    template, started = handle.data.get("template"), handle.data.get("started")
    template_marker = f"MLPIPE_JOB_ID={template}".encode() if template else None
    members, proven = [], False
    for pid, fields in _processes():
        if int(fields[2]) != pgid:
            continue
        members.append(pid)
        if not proven:
            with contextlib.suppress(OSError):
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                proven = step_marker in environ or (
                    pid == pgid and template_marker in environ and int(fields[19]) == started)
    return members if proven else []


def _processes() -> list[tuple[int, list[str]]]:
    """Every process /proc shows: its pid and the fields of its stat after the command name (state,
    ppid, pgrp, ...; [19] is its start time)."""
    processes = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields:
                processes.append((int(entry.name), fields))
    return processes


def _stat_fields(pid: int) -> list[str]:
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split())
    except (OSError, IndexError):
        return []


def _start_time(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot, from /proc), None if /proc does not show it."""
    fields = _stat_fields(pid)
    return int(fields[19]) if len(fields) > 19 else None


def _cancel_foreign_job(handle: JobHandle, grace_seconds: float) -> None:
    """Cancel a job this process did not start, if /proc shows its group is that job's."""
    pgid = handle.data.get("pgid")
    if not _group_members_of_job(handle):
        return
    work_dir = handle.data.get("workDir")
    if work_dir:
        with contextlib.suppress(OSError):
            (Path(work_dir) / CANCEL_MARKER).write_text(handle.id)
    interpreters.kill_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline and _group_members_of_job(handle):
        time.sleep(0.05)
    interpreters.kill_group(pgid, signal.SIGKILL)


def _give_up_foreign_job(handle: JobHandle) -> JobStatus:
    """A job started by an earlier host process: kill what is left of it (only if it is provably
    that job's process group) and report Lost so the executor submits it again."""
    if _group_members_of_job(handle):
        interpreters.kill_group(handle.data["pgid"], signal.SIGKILL)
    return JobStatus(state="Lost", error="the local job belongs to an earlier host process and cannot be followed")
