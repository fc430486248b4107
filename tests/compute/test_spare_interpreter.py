"""The spare interpreter a local step may run in (shared/compute/interpreters.py), against Azurite:
a script cannot tell it from an interpreter started for it, and nothing of the host's leaks into it."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

import shared.compute.local as local_module
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
    "cwd": os.getcwd(), "argv": sys.argv, "file": __file__, "name": __name__,
    "path": sys.path, "stdin": sys.stdin.read(),
    "environment": {k: v for k, v in os.environ.items() if k not in ("MLPIPE_JOB_ID", "MLPIPE_RUN_ID")},
    "flags": list(sys.flags), "stdout": [sys.stdout.encoding, sys.stdout.line_buffering, sys.stdout.isatty()],
    "proc_environ_job_id": "MLPIPE_JOB_ID=" + os.environ["MLPIPE_JOB_ID"] in
        open("/proc/self/environ", "rb").read().decode(errors="replace").split("\\0"),
}))
print("to stderr", file=sys.stderr)
"""


@pytest.fixture
def backend(storage_env):
    local_module.discard_spare_interpreter()
    yield LocalBackend(cancel_grace_seconds=2)
    local_module.discard_spare_interpreter()


def wait_for_spare(limit: float = 20.0) -> int:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        pid = local_module._spare.ready_pid()
        if pid is not None:
            return pid
        time.sleep(0.02)
    raise AssertionError("no spare interpreter was started")


def run_and_inspect(backend, script: Path, **fields) -> tuple[dict, int, str]:
    """Run the INSPECT script as step "inspect" of run "run1" (the same folder every time)."""
    request = request_for(script, run_id="run1", step_name="inspect", arguments=["--x", "é"], **fields)
    handle = backend.submit(request)
    status = wait_done(backend, handle)
    log = (work_dir_for(request.run_id, request.step_name) / "log.txt").read_text()
    assert status.state == "Completed", (status, log)
    return json.loads(log.splitlines()[0]), handle.data["pid"], log


@pytest.mark.parametrize("locale", ["as the host has it", "none (the interpreter coerces C to UTF-8)"])
def test_a_step_cannot_tell_the_spare_from_an_interpreter_started_for_it(backend, tmp_path, monkeypatch, locale):
    if locale.startswith("none"):
        for name in ("LANG", "LC_ALL", "LC_CTYPE"):
            monkeypatch.delenv(name, raising=False)
    script = write_script(tmp_path / "src", INSPECT)
    wait_done(backend, backend.submit(request_for(write_script(tmp_path / "warm", "pass\n"))))
    spare_pid = wait_for_spare()
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "from-host"))  # after the spare started: it must still count
    # PYTHONPATH: the source folder (mlpipe puts it first), then the definition's (a duplicate included).
    definition = {"FROM_DEFINITION": "yes", "PYTHONPATH": f"{script.parent}:{sys.prefix}:{tmp_path / 'extra'}"}
    in_spare, pid, log = run_and_inspect(backend, script, environment=definition)
    assert pid == spare_pid
    assert "to stderr" in log

    monkeypatch.setenv("MLPIPE_LOCAL_SPARE_INTERPRETER", "off")
    reset_settings()
    local_module.discard_spare_interpreter()
    started_for_it, pid, _ = run_and_inspect(backend, script, environment=definition)
    assert pid != spare_pid and local_module._spare.ready_pid() is None

    started_for_it["environment"].pop("MLPIPE_LOCAL_SPARE_INTERPRETER")  # the one difference made here
    assert in_spare == started_for_it
    assert in_spare["environment"]["FROM_DEFINITION"] == "yes" and in_spare["proc_environ_job_id"]
    # The script's folder, then PYTHONPATH once each (the definition's replaces the host's), then the rest.
    assert in_spare["path"][:4] == [str(script.parent), str(script.parent), sys.prefix, str(tmp_path / "extra")]
    assert str(tmp_path / "from-host") not in in_spare["path"]
    assert in_spare["argv"][1:] == ["--x", "é"] and in_spare["name"] == "__main__" and in_spare["stdin"] == ""


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
    environ = Path(f"/proc/{wait_for_spare()}/environ").read_bytes().decode(errors="replace")
    assert "MLPIPE_JOB_ID=" in environ
    for secret in ("token-value-123456", "AccountKey"):
        assert secret not in environ


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
