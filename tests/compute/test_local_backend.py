"""LocalBackend against Azurite: outputs + metrics + log, failures, cancel, Lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

import shared.compute.local as local_module
from shared.compute import DataRef, JobHandle, StepJobRequest, get_backend, parse_metrics
from shared.compute.local import LocalBackend, work_dir_for
from shared.datastore import default_datastore
from shared.errors import InvalidRequest, NotFound
from shared.runs import RunStore


@pytest.fixture
def backend(storage_env):
    local_module.discard_spare_interpreter()  # a spare from an earlier test would be one more child process here
    return LocalBackend(cancel_grace_seconds=2)


def write_script(folder: Path, body: str, name: str = "step.py") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / name
    script.write_text(textwrap.dedent(body))
    return script


def request_for(script: Path, **fields) -> StepJobRequest:
    fields.setdefault("run_id", f"run{uuid.uuid4().hex[:8]}")
    fields.setdefault("step_name", "step")
    return StepJobRequest(script=str(script), source_dir=str(script.parent), **fields)


def wait_done(backend, handle, limit=60.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        status = backend.poll(handle, wait_seconds=1)
        if status.state != "Running":
            return status
    raise AssertionError("job did not finish")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:  # gone in between; or no /proc here, and kill found it
        return not Path("/proc/self").exists()
    except ProcessLookupError:  # reaped in between
        return False
    return state != "Z"


def test_success_with_inputs_outputs_metrics_and_log(backend, tmp_path):
    store = default_datastore()
    store.upload_bytes("iris/raw/iris.csv", b"a,b\n1,2\n")
    upstream = tmp_path / "upstream"
    (upstream / "nested").mkdir(parents=True)
    (upstream / "nested" / "part.txt").write_text("from prep")
    store.upload_output(upstream, "runs/r0/prep/clean")
    store.upload_bytes("runs/r0/prep/clean/uncommitted.tmp", b"not in the manifest")

    script = write_script(tmp_path / "src", """
        import json, os, sys, pathlib
        raw, clean, model = sys.argv[1], sys.argv[2], sys.argv[3]
        assert pathlib.Path(raw).read_text() == "a,b\\n1,2\\n", raw
        files = sorted(str(p.relative_to(clean)) for p in pathlib.Path(clean).rglob("*") if p.is_file())
        assert files == ["nested/part.txt"], files
        pathlib.Path(model, "model.txt").write_text("weights " + os.environ["MLPIPE_STEP_NAME"])
        print("hello stdout")
        print("hello stderr", file=sys.stderr)
        with open(os.environ["MLPIPE_METRICS_FILE"], "a") as m:
            m.write(json.dumps({"name": "accuracy", "value": 0.9}) + "\\n")
            m.write(json.dumps({"loss": 1.0, "note": "text is ignored"}) + "\\n")
            m.write(json.dumps({"loss": 0.5}) + "\\n")
        assert "AzureWebJobsStorage" not in os.environ
    """)
    request = request_for(script, arguments=["{inputs.raw}", "{inputs.clean}", "{outputs.model}"],
                          inputs={"raw": DataRef(path="iris/raw/iris.csv"),
                                  "clean": DataRef(path="runs/r0/prep/clean", is_pipeline_data=True)},
                          outputs={"model": "runs/r1/train/model"})
    handle = backend.submit(request)
    assert JobHandle.from_dict(handle.to_dict()) == handle
    status = wait_done(backend, handle)
    assert status.state == "Completed", status.error
    assert status.metrics == {"accuracy": 0.9, "loss": [1.0, 0.5]}
    assert status.outputs == {"model": "runs/r1/train/model"}
    manifest = store.read_manifest("runs/r1/train/model")
    assert [f["name"] for f in manifest["files"]] == ["model.txt"]
    assert store.read_bytes("runs/r1/train/model/model.txt") == b"weights step"
    log = RunStore().get_log(request.run_id, "step")
    assert "hello stdout" in log and "hello stderr" in log
    assert backend.fetch_logs(handle) == log
    assert backend.poll(handle) == status  # terminal answers are stable


def test_failure_reports_exit_code_and_stderr_tail(backend, tmp_path):
    script = write_script(tmp_path / "src", """
        import sys
        print("working...")
        for i in range(40):
            print(f"noise {i}", file=sys.stderr)
        raise SystemExit("bad things happened")
    """)
    request = request_for(script, outputs={"out": "runs/rx/step/out"})
    status = wait_done(backend, backend.submit(request))
    assert status.state == "Failed"
    assert "exit" in status.error and "code 1" in status.error
    assert "bad things happened" in status.error and "noise 39" in status.error
    assert "noise 0\n" not in status.error  # only the tail
    assert not default_datastore().is_committed("runs/rx/step/out")  # failed steps commit nothing
    assert "working..." in RunStore().get_log(request.run_id, "step")


def test_step_without_data_and_a_traceback(backend, tmp_path):
    script = write_script(tmp_path / "src", "import nothing_here\n")
    status = wait_done(backend, backend.submit(request_for(script)))
    assert status.state == "Failed" and "ModuleNotFoundError" in status.error


def test_cancel_kills_the_whole_process_group(backend, tmp_path):
    pid_file = tmp_path / "child.pid"
    script = write_script(tmp_path / "src", f"""
        import signal, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"])
        open({str(pid_file)!r}, "w").write(str(child.pid))
        time.sleep(300)
    """)
    handle = backend.submit(request_for(script))
    deadline = time.monotonic() + 20
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    child_pid = int(pid_file.read_text())
    assert backend.poll(handle).state == "Running"
    started = time.monotonic()
    backend.cancel(handle)
    assert time.monotonic() - started < 10
    status = backend.poll(handle, wait_seconds=5)
    assert status.state == "Canceled"
    deadline = time.monotonic() + 5
    while pid_alive(child_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(child_pid), "the script's child (which ignores SIGTERM) survived the cancel"
    assert not pid_alive(handle.data["pid"])


def test_timeout_fails_the_step(backend, tmp_path):
    script = write_script(tmp_path / "src", "import time; time.sleep(60)\n")
    handle = backend.submit(request_for(script, timeout_seconds=0.5))
    status = wait_done(backend, handle, limit=20)
    assert status.state == "Failed" and "timed out" in status.error


def test_foreign_handle_is_lost_and_its_processes_are_killed(backend, tmp_path):
    """A job started by an earlier host: simulated by a process that carries the job's marker."""
    job_id = uuid.uuid4().hex
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"],
                              env={**os.environ, "MLPIPE_JOB_ID": job_id}, start_new_session=True)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True)
    try:
        time.sleep(0.2)  # let exec finish so /proc shows the new environment
        mine = JobHandle(backend="local", id=job_id, data={"pid": orphan.pid, "pgid": orphan.pid,
                                                           "boot": "earlier", "runId": "r", "step": "s"})
        status = backend.poll(mine, wait_seconds=0)
        assert status.state == "Lost"
        assert orphan.wait(timeout=5) == -signal.SIGKILL
        # A handle whose recorded group is not that job's processes must not kill anything.
        not_mine = JobHandle(backend="local", id=uuid.uuid4().hex, data={"pid": bystander.pid,
                                                                         "pgid": bystander.pid})
        assert backend.poll(not_mine).state == "Lost"
        time.sleep(0.2)
        assert bystander.poll() is None
    finally:
        for process in (orphan, bystander):
            if process.poll() is None:
                process.kill()
                process.wait()


def test_resubmit_wipes_the_work_folder(backend, tmp_path):
    script = write_script(tmp_path / "src", "import pathlib; pathlib.Path('leftover.txt').write_text('x')\n")
    request = request_for(script)
    wait_done(backend, backend.submit(request))
    work = work_dir_for(request.run_id, request.step_name)
    assert (work / "leftover.txt").exists()
    (work / "inputs" / "stale").mkdir(parents=True)
    handle = backend.submit(request)
    assert not (work / "inputs" / "stale").exists()
    assert wait_done(backend, handle).state == "Completed"


def test_missing_dataset_and_unknown_placeholder_are_reported(backend, tmp_path):
    script = write_script(tmp_path / "src", "pass\n")
    with pytest.raises(NotFound) as info:
        backend.submit(request_for(script, inputs={"raw": DataRef(path="no/such/data")}))
    assert "no/such/data" in info.value.message
    with pytest.raises(InvalidRequest) as info:
        backend.submit(request_for(script, arguments=["--x", "{outputs.nope}"]))
    assert "{outputs.nope}" in info.value.message
    with pytest.raises(InvalidRequest) as info:
        backend.submit(request_for(script, arguments=["a\0b"]))
    assert "NUL" in info.value.message


def test_registry_and_metric_parsing(storage_env):
    from shared.compute import register_backend

    register_backend("test-local", LocalBackend)
    assert isinstance(get_backend("test-local"), LocalBackend)
    assert get_backend("test-local") is get_backend("test-local")  # one instance per process
    from shared.errors import ComputeError
    with pytest.raises(ComputeError):
        get_backend("quantum")
    text = '{"name": "a", "value": 1}\nnot json\n{"a": 2, "b": true, "c": [3, 4]}\n[1]\n{"d": NaN}\n'
    assert parse_metrics(text) == {"a": [1, 2], "c": [3, 4]}


def test_empty_output_and_unusable_output_names(backend, tmp_path):
    script = write_script(tmp_path / "src", """
        import pathlib, sys
        pathlib.Path(sys.argv[1], "empty.txt").write_bytes(b"")
        if len(sys.argv) > 2:
            pathlib.Path(sys.argv[2], "bad\\\\name.txt").write_text("x")
    """)
    ok = request_for(script, arguments=["{outputs.out}"], outputs={"out": "runs/e1/step/out"})
    assert wait_done(backend, backend.submit(ok)).state == "Completed"
    manifest = default_datastore().read_manifest("runs/e1/step/out")
    assert manifest["files"][0]["name"] == "empty.txt" and manifest["files"][0]["size"] == 0

    bad = request_for(script, arguments=["{outputs.out}", "{outputs.odd}"],
                      outputs={"out": "runs/e2/step/out", "odd": "runs/e2/step/odd"})
    status = wait_done(backend, backend.submit(bad))
    assert status.state == "Failed" and "bad\\\\name.txt" in status.error
    assert not default_datastore().is_committed("runs/e2/step/odd")


def test_finished_job_is_answered_from_its_result_after_a_restart(backend, tmp_path):
    """Host restarted after the job finished but before the step was recorded: no re-run (not Lost)."""
    import shared.compute.local as local_module

    script = write_script(tmp_path / "src", "import pathlib, sys; pathlib.Path(sys.argv[1], 'm.txt').write_text('m')\n")
    request = request_for(script, arguments=["{outputs.model}"], outputs={"model": "runs/rr/step/model"})
    handle = backend.submit(request)
    status = wait_done(backend, handle)
    assert status.state == "Completed"
    work = work_dir_for(request.run_id, request.step_name)
    assert not (work / "inputs").exists() and not (work / "outputs").exists()  # copies cleaned up
    local_module._jobs.pop(handle.id)  # what a new host process would not have
    assert backend.poll(handle) == status
    backend.cancel(handle)  # cancelling a finished job from an earlier process is a no-op
    # Once the step is submitted again, the old handle's job is history: Lost.
    wait_done(backend, backend.submit(request))
    assert backend.poll(handle).state == "Lost"


def test_script_imports_modules_beside_it(backend, tmp_path):
    source = tmp_path / "src"
    write_script(source, "X = 41\n", name="helper.py")
    script = write_script(source, "import helper; print(helper.X + 1)\n")
    request = request_for(script)
    assert wait_done(backend, backend.submit(request)).state == "Completed"
    assert "42" in RunStore().get_log(request.run_id, "step")


def test_cancel_from_another_worker_process_is_reported_as_canceled(backend, tmp_path):
    """Functions may run several worker processes: a cancel can arrive in one that did not start the job."""
    import shared.compute.local as local_module

    script = write_script(tmp_path / "src", "import time; print('started', flush=True); time.sleep(300)\n")
    request = request_for(script)
    handle = backend.submit(request)
    log = work_dir_for(request.run_id, request.step_name) / "log.txt"
    deadline = time.monotonic() + 20
    while "started" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    foreign = local_module._cancel_foreign_job  # what cancel() does when the job is not in its table
    foreign(handle, grace_seconds=2)
    status = backend.poll(handle, wait_seconds=10)  # the owning process notices the exit
    assert status.state == "Canceled"


def test_the_hosts_secrets_do_not_reach_the_script(backend, tmp_path, monkeypatch):
    from shared.redact import register_secret

    monkeypatch.setenv("SOME_API_TOKEN", "token-value-123456")
    monkeypatch.setenv("DATABRICKS_CREDENTIAL", "registered-secret-987654")
    monkeypatch.setenv("HARMLESS_SETTING", "visible-value")
    register_secret("registered-secret-987654")
    script = write_script(tmp_path / "src", "import os\nfor k, v in sorted(os.environ.items()):\n    print(k, v)\n")
    request = request_for(script, environment={"FROM_DEFINITION": "yes"})
    status = wait_done(backend, backend.submit(request))
    assert status.state == "Completed"
    log = RunStore().get_log(request.run_id, request.step_name)
    assert "HARMLESS_SETTING visible-value" in log and "FROM_DEFINITION yes" in log
    for secret in ("token-value-123456", "registered-secret-987654", "AccountKey", os.environ["AzureWebJobsStorage"]):
        assert secret not in log


def test_the_script_runs_as_python_script_py_would_run_it(backend, tmp_path):
    """The interpreter starts before the go-ahead (launcher); the script must not notice."""
    script = write_script(tmp_path / "src", """\
        import os, sys
        assert __name__ == "__main__", __name__
        assert os.path.realpath(__file__) == os.path.realpath(sys.argv[0])
        assert sys.path[0] == os.path.dirname(os.path.realpath(sys.argv[0])), sys.path[0]
        assert sys.stdin.read() == ""  # stdin is /dev/null, as before
        print("args", sys.argv[1:])
        sys.exit(int(sys.argv[2]))
        """)
    request = request_for(script, arguments=["--code", "3"])
    status = wait_done(backend, backend.submit(request))
    assert status.state == "Failed" and "exited with code 3" in status.error
    assert "args ['--code', '3']" in RunStore().get_log(request.run_id, "step")


def test_a_closed_gate_runs_nothing_and_an_open_one_runs_the_script_once(backend, tmp_path):
    marker = tmp_path / "ran"
    script = write_script(tmp_path / "src", f"open({str(marker)!r}, 'a').write('x')\n")
    asked = []

    def gate(answer):
        def ask():
            time.sleep(0.05)  # a storage round trip; the interpreter starts meanwhile
            asked.append(answer)
            return answer
        return ask

    request = request_for(script)
    assert backend.submit(request, gate=gate(False)) is None
    assert asked == [False] and not marker.exists()
    assert not any(job.request.run_id == request.run_id for job in list(local_module._jobs.values()))
    status = wait_done(backend, backend.submit(request, gate=gate(True)))
    assert status.state == "Completed" and marker.read_text() == "x"


def test_an_input_that_cannot_be_staged_stops_the_waiting_interpreter(backend, tmp_path):
    script = write_script(tmp_path / "src", "pass\n")
    before = child_pids()
    with pytest.raises(NotFound):
        backend.submit(request_for(script, inputs={"raw": DataRef(path="no/such/data")}), gate=lambda: True)
    assert child_pids() <= before  # nothing left waiting


def child_pids() -> set[int]:
    """This process's live child processes (from /proc)."""
    children = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == os.getpid() and fields[0] != "Z":
                children.add(int(entry.name))
    return children
