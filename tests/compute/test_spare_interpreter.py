"""The spare interpreter a local step may run in (shared/compute/interpreters.py), against Azurite:
a script cannot tell it from an interpreter started for it, and nothing of the host's leaks into it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import shared.compute.local as local_module
from shared.compute import JobHandle
from shared.compute.interpreters import JOB_ID_VARIABLE, SpareInterpreter, start_for_step, starts_alike
from shared.compute.local import LocalBackend, work_dir_for
from shared.errors import MlpipeError
from shared.runs import RunStore
from shared.settings import reset_settings
from tests.compute.test_local_backend import child_pids, pid_alive, request_for, wait_done, write_script

# Everything a script can see of how it was started, printed as one JSON line.
INSPECT = """\
import json, os, sys
print(json.dumps({
    "cwd": os.getcwd(), "argv": sys.argv, "orig_argv": sys.orig_argv, "file": __file__, "name": __name__,
    "path": sys.path, "stdin": sys.stdin.read(),
    "environment": {k: v for k, v in os.environ.items() if k not in ("MLPIPE_JOB_ID", "MLPIPE_RUN_ID")},
    "flags": list(sys.flags), "stdout": [sys.stdout.encoding, sys.stdout.line_buffering, sys.stdout.isatty()],
    "proc_environ_job_ids": [entry for entry in open("/proc/self/environ", "rb").read().decode().split("\\0")
                             if entry.startswith("MLPIPE_JOB_ID=")],
    "job_id": os.environ["MLPIPE_JOB_ID"],
    "modules": sorted(sys.modules),
    "environment_order": list(os.environ),
    "main": [sorted(globals()), type(__loader__).__name__, __loader__.name, __loader__.path, __spec__],
}))
print("to stderr", file=sys.stderr)
"""

# A script that fails: what it leaves in the log (output, error output, its traceback) is compared.
FAILING = """\
import sys
print("to stdout")
print("to stderr", file=sys.stderr)
def inner():
    raise ValueError("boom")
inner()
"""


def readied_backend(monkeypatch, ahead: str):
    """A local backend readying interpreters `ahead` (MLPIPE_LOCAL_SPARE_INTERPRETER); none left after."""
    use_interpreters_ahead(monkeypatch, ahead)
    local_module.discard_spare_interpreter()
    yield LocalBackend(cancel_grace_seconds=2)
    local_module.discard_spare_interpreter()


@pytest.fixture
def backend(storage_env, monkeypatch):
    """A local backend keeping one spare interpreter ahead."""
    yield from readied_backend(monkeypatch, "on")


def wait_for_spare(limit: float = 20.0, ready=lambda: local_module._spare.ready_pid()) -> int:
    """The pid of the spare interpreter (or with `ready`, of something else started in the background)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        pid = ready()
        if pid is not None:
            return pid
        time.sleep(0.02)
    raise AssertionError("no spare interpreter was started")


def wait_for_template() -> int:
    return wait_for_spare(ready=lambda: local_module._template.ready_pid())


def use_interpreters_ahead(monkeypatch, value: str) -> None:
    monkeypatch.setenv("MLPIPE_LOCAL_SPARE_INTERPRETER", value)
    reset_settings()


def ready_ahead(backend, tmp_path, ahead: str) -> int:
    """Run a first step so the spare (or the template) starts; its pid."""
    wait_done(backend, backend.submit(request_for(write_script(tmp_path / "warm", "pass\n"))))
    return wait_for_template() if ahead == "fork" else wait_for_spare()


def run_step(backend, script: Path, **fields) -> tuple[JobHandle, str, str]:
    """Run `script` as step "inspect" of run "run1" (the same folder every time): its handle, log, error."""
    request = request_for(script, run_id="run1", step_name="inspect", arguments=["--x", "é"], **fields)
    handle = backend.submit(request)
    status = wait_done(backend, handle)
    return handle, (work_dir_for(request.run_id, request.step_name) / "log.txt").read_text(), status.error


def run_and_inspect(backend, script: Path, **fields) -> tuple[dict, JobHandle, str]:
    """Run the INSPECT script: what it saw (its job ids checked and set aside), its handle and log."""
    handle, log, error = run_step(backend, script, **fields)
    assert error is None, (error, log)
    seen = json.loads(log.splitlines()[0])
    marker = handle.data.get("template") or seen["job_id"]  # a forked process's /proc shows the template's
    assert seen.pop("proc_environ_job_ids") == [f"{JOB_ID_VARIABLE}={marker}"]
    assert seen.pop("job_id") == handle.id
    return seen, handle, log


@pytest.mark.parametrize("ahead", ["on", "fork"])
@pytest.mark.parametrize("locale", ["as the host has it", "none (the interpreter coerces C to UTF-8)"])
def test_a_step_cannot_tell_an_interpreter_readied_ahead_from_one_started_for_it(backend, tmp_path, monkeypatch,
                                                                                 locale, ahead):
    if locale.startswith("none"):
        for name in ("LANG", "LC_ALL", "LC_CTYPE"):
            monkeypatch.delenv(name, raising=False)
    use_interpreters_ahead(monkeypatch, ahead)
    script = write_script(tmp_path / "src", INSPECT)
    ready_pid = ready_ahead(backend, tmp_path, ahead)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "from-host"))  # after the spare started: it must still count
    # PYTHONPATH: the source folder (mlpipe puts it first), then the definition's (a duplicate included).
    definition = {"FROM_DEFINITION": "yes", "PYTHONPATH": f"{script.parent}:{sys.prefix}:{tmp_path / 'extra'}"}
    readied, handle, log = run_and_inspect(backend, script, environment=definition)
    if ahead == "fork":
        assert handle.data["pid"] != ready_pid and handle.data["template"]
    else:
        assert handle.data["pid"] == ready_pid and "template" not in handle.data
    assert "to stderr" in log

    use_interpreters_ahead(monkeypatch, "off")
    local_module.discard_spare_interpreter()
    started_for_it, handle, _ = run_and_inspect(backend, script, environment=definition)
    assert handle.data["pid"] != ready_pid and "template" not in handle.data
    assert local_module._spare.ready_pid() is None and local_module._template.ready_pid() is None

    for seen in (readied, started_for_it):
        seen["environment"].pop("MLPIPE_LOCAL_SPARE_INTERPRETER")  # the one difference made here
    assert readied == started_for_it
    assert readied["environment"]["FROM_DEFINITION"] == "yes"
    # The script's folder, then PYTHONPATH once each (the definition's replaces the host's), then the rest.
    assert readied["path"][:4] == [str(script.parent), str(script.parent), sys.prefix, str(tmp_path / "extra")]
    assert str(tmp_path / "from-host") not in readied["path"]
    assert readied["argv"][1:] == ["--x", "é"] and readied["name"] == "__main__" and readied["stdin"] == ""
    assert readied["orig_argv"] == [sys.executable, str(script), "--x", "é"]  # as `python script.py` has it


@pytest.mark.parametrize("ahead", ["on", "fork"])
@pytest.mark.parametrize("failing", [FAILING, "print('never')\nx = (\n"], ids=["exception", "syntax error"])
def test_a_failing_script_leaves_the_same_log_and_error_in_an_interpreter_readied_ahead(
        backend, tmp_path, monkeypatch, ahead, failing):
    """Its traceback starts at the script, as in an interpreter started for it (no launcher frames)."""
    use_interpreters_ahead(monkeypatch, ahead)
    script = write_script(tmp_path / "src", failing)
    ready_ahead(backend, tmp_path, ahead)
    handle, readied_log, readied_error = run_step(backend, script)
    assert handle.data["pid"] != local_module._template.ready_pid() or ahead != "fork"
    use_interpreters_ahead(monkeypatch, "off")
    local_module.discard_spare_interpreter()
    _, log, error = run_step(backend, script)
    assert readied_log == log and readied_error == error
    direct = subprocess.run([sys.executable, str(script), "--x", "é"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, check=False)
    assert direct.returncode == 1 and direct.stdout.decode() == log  # as `python script.py` leaves it
    assert error.startswith("script exited with code 1") and "<string>" not in log
    assert ("ValueError: boom" in log and 'line 5, in inner' in log) or "SyntaxError" in log


def test_a_step_whose_environment_shapes_start_up_gets_an_interpreter_of_its_own(backend, tmp_path):
    script = write_script(tmp_path / "src", "import sys; print(sys.flags.hash_randomization)\n")
    wait_done(backend, backend.submit(request_for(write_script(tmp_path / "warm", "pass\n"))))
    spare_pid = wait_for_spare()
    request = request_for(script, environment={"PYTHONHASHSEED": "0"})
    handle = backend.submit(request)
    assert wait_done(backend, handle).state == "Completed"
    assert handle.data["pid"] != spare_pid and local_module._spare.ready_pid() == spare_pid
    assert RunStore().get_log(request.run_id, request.step_name).strip() == "0"


def test_a_step_with_a_sitecustomize_on_its_path_gets_an_interpreter_of_its_own(backend, tmp_path):
    """site imports sitecustomize from PYTHONPATH (the source folder is on it) as the interpreter starts."""
    script = write_script(tmp_path / "src", "import os; print(os.environ.get('CUSTOMIZED'))\n")
    write_script(tmp_path / "src", "import os; os.environ['CUSTOMIZED'] = 'at start-up'\n", name="sitecustomize.py")
    wait_done(backend, backend.submit(request_for(write_script(tmp_path / "warm", "pass\n"))))
    spare_pid = wait_for_spare()
    request = request_for(script)
    handle = backend.submit(request)
    assert wait_done(backend, handle).state == "Completed"
    assert handle.data["pid"] != spare_pid
    assert RunStore().get_log(request.run_id, request.step_name).strip() == "at start-up"


def test_the_spare_starts_without_the_hosts_secrets(backend, tmp_path, monkeypatch):
    monkeypatch.setenv("SOME_API_TOKEN", "token-value-123456")
    wait_done(backend, backend.submit(request_for(write_script(tmp_path / "warm", "pass\n"))))
    pid = wait_for_spare()
    environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    # Should this fail: which variables the spare had (names only), and the state of its process.
    names = sorted(entry.split("=", 1)[0] for entry in environ.split("\0") if entry)
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] if pid_alive(pid) else "gone"
    assert "MLPIPE_JOB_ID" in names, (pid, state, names)
    for secret in ("token-value-123456", "AccountKey"):
        assert secret not in environ, (secret, names)


def test_spare_off_starts_none_and_a_bad_value_is_named(backend, tmp_path, monkeypatch):
    monkeypatch.setenv("MLPIPE_LOCAL_SPARE_INTERPRETER", "OFF")
    reset_settings()
    before = child_pids()
    wait_done(backend, backend.submit(request_for(write_script(tmp_path / "src", "pass\n"))))
    time.sleep(0.2)
    assert local_module._spare.ready_pid() is None and child_pids() <= before

    monkeypatch.setenv("MLPIPE_LOCAL_SPARE_INTERPRETER", "sometimes")
    reset_settings()
    with pytest.raises(MlpipeError) as raised:
        backend.submit(request_for(write_script(tmp_path / "src", "pass\n")))
    assert raised.value.code == "ConfigurationError" and "MLPIPE_LOCAL_SPARE_INTERPRETER" in raised.value.message


def test_start_up_variables_decide_whether_an_interpreter_fits():
    host = {"PATH": "/bin", "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"}
    assert starts_alike({**host, "PYTHONPATH": "/src", "TOKEN": "x"}, host)
    assert not starts_alike({**host, "PYTHONHASHSEED": "0"}, host)
    assert not starts_alike({**host, "LANG": "de_DE.UTF-8"}, host)
    assert not starts_alike({**host, "LC_ALL": "C"}, host)
    assert not starts_alike({k: v for k, v in host.items() if k != "PYTHONUNBUFFERED"}, host)


def test_a_pythonpath_entry_that_may_customize_start_up_rules_the_spare_out(tmp_path):
    plain, package, zipped = tmp_path / "plain", tmp_path / "package", tmp_path / "libs.zip"
    plain.mkdir()
    (package / "usercustomize").mkdir(parents=True)
    zipped.write_bytes(b"PK")
    assert starts_alike({"PYTHONPATH": f"{plain}:{tmp_path / 'missing'}"}, {})
    assert not starts_alike({"PYTHONPATH": f"{plain}:relative"}, {})
    assert not starts_alike({"PYTHONPATH": f"{plain}::"}, {})  # an empty entry is the working folder
    assert not starts_alike({"PYTHONPATH": f"{plain}:{package}"}, {})
    assert not starts_alike({"PYTHONPATH": str(zipped)}, {})


def test_a_spare_that_cannot_be_started_is_logged_and_the_next_one_starts(caplog, tmp_path):
    """replenish runs after a step's go-ahead: whatever goes wrong must stay in the background."""
    spare = SpareInterpreter()

    def read_only_work_root():
        raise PermissionError("work folder is read-only")

    spare.replenish(read_only_work_root)
    deadline = time.monotonic() + 10
    while "could not start a spare interpreter" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "could not start a spare interpreter" in caplog.text and spare.ready_pid() is None
    spare.replenish(lambda: ({"PATH": os.environ.get("PATH", "")}, tmp_path))
    try:
        deadline = time.monotonic() + 10
        while spare.ready_pid() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert spare.ready_pid() is not None
    finally:
        spare.discard()


def test_an_interpreter_whose_host_goes_away_exits_having_run_nothing(tmp_path):
    """A waiting interpreter's stdin is a pipe from the host: when the host ends, EOF, and it exits."""
    environment = {"PATH": os.environ.get("PATH", ""), JOB_ID_VARIABLE: "job-1", "PYTHONUNBUFFERED": "1"}
    interpreter = start_for_step(environment, tmp_path, tmp_path / "log.txt")
    interpreter.process.stdin.close()
    assert interpreter.process.wait(timeout=20) == 0
    assert interpreter.process.stderr.read() == b"" and (tmp_path / "log.txt").read_bytes() == b""
    interpreter.process.stderr.close()


def test_a_step_in_the_spare_is_canceled_with_its_children(backend, tmp_path):
    pid_file = tmp_path / "child.pid"
    script = write_script(tmp_path / "src", f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        open({str(pid_file)!r}, "w").write(str(child.pid))
        time.sleep(300)
    """)
    wait_done(backend, backend.submit(request_for(write_script(tmp_path / "warm", "pass\n"))))
    spare_pid = wait_for_spare()
    handle = backend.submit(request_for(script))
    assert handle.data["pid"] == spare_pid
    deadline = time.monotonic() + 20
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    backend.cancel(handle)
    assert backend.poll(handle, wait_seconds=5).state == "Canceled"
    for pid in (spare_pid, int(pid_file.read_text())):
        deadline = time.monotonic() + 5
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pid_alive(pid)
