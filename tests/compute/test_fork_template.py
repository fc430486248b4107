"""Local steps forked from the template interpreter (shared/compute/forkserver.py), against Azurite:
what a forked step sees is compared with an interpreter started for it in test_spare_interpreter.py;
here: many at once, cancel, the template ending under a running step, a later host, host stop."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import shared.compute.local as local_module
from shared.compute import interpreters
from shared.compute.forkserver import ForkTemplate
from shared.runs import RunStore
from tests.compute.test_local_backend import pid_alive, request_for, wait_done, write_script
from tests.compute.test_spare_interpreter import readied_backend, wait_for_template


@pytest.fixture
def backend(storage_env, monkeypatch):
    """A local backend forking its steps from a template."""
    yield from readied_backend(monkeypatch, "fork")


def started_template(backend, tmp_path) -> int:
    assert wait_done(backend, backend.submit(request_for(write_script(tmp_path / "warm", "pass\n")))).state \
        == "Completed"
    return wait_for_template()


def wait_until(condition, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert condition()


def test_many_steps_forked_at_once_each_report_their_own_exit_and_output(backend, tmp_path):
    started_template(backend, tmp_path)
    script = write_script(tmp_path / "src", """
        import sys, time
        time.sleep(0.05 * (int(sys.argv[1]) % 4))
        print("step", sys.argv[1])
        print("error of", sys.argv[1], file=sys.stderr)
        sys.exit(int(sys.argv[1]) % 3)
    """)
    requests = [request_for(script, run_id="fan", step_name=f"s{n}", arguments=[str(n)]) for n in range(24)]
    with ThreadPoolExecutor(max_workers=8) as pool:  # as a fan-out's activities submit: at once
        handles = list(pool.map(backend.submit, requests))
    assert all(handle.data.get("template") for handle in handles)
    for n, (request, handle) in enumerate(zip(requests, handles)):
        status = wait_done(backend, handle)
        log = RunStore().get_log(request.run_id, request.step_name)
        assert log.splitlines() == [f"step {n}", f"error of {n}"]
        if n % 3:
            assert status.state == "Failed" and status.error.startswith(f"script exited with code {n % 3}")
            assert status.error.endswith(f"error of {n}")  # its own stderr, through its own FIFO
        else:
            assert status.state == "Completed"


def test_a_step_whose_environment_shapes_start_up_is_not_forked(backend, tmp_path):
    template_pid = started_template(backend, tmp_path)
    script = write_script(tmp_path / "src", "import sys; print(sys.flags.hash_randomization)\n")
    request = request_for(script, environment={"PYTHONHASHSEED": "0"})
    handle = backend.submit(request)
    assert wait_done(backend, handle).state == "Completed"
    assert "template" not in handle.data and local_module._template.ready_pid() == template_pid
    assert RunStore().get_log(request.run_id, request.step_name).strip() == "0"


def test_a_forked_step_is_canceled_with_its_children(backend, tmp_path):
    template_pid = started_template(backend, tmp_path)
    pid_file = tmp_path / "child.pid"
    script = write_script(tmp_path / "src", f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        open({str(pid_file)!r}, "w").write(str(child.pid))
        time.sleep(300)
    """)
    handle = backend.submit(request_for(script))
    assert handle.data["template"] and handle.data["pid"] != template_pid
    wait_until(lambda: pid_file.exists() and pid_file.read_text())
    backend.cancel(handle)
    assert backend.poll(handle, wait_seconds=5).state == "Canceled"
    for pid in (handle.data["pid"], int(pid_file.read_text())):
        wait_until(lambda: not pid_alive(pid), limit=5)
    assert pid_alive(template_pid)


def test_when_the_template_ends_under_a_running_step_the_step_fails_and_is_stopped(backend, tmp_path):
    template_pid = started_template(backend, tmp_path)
    script = write_script(tmp_path / "src", "import time; print('running', flush=True); time.sleep(300)\n")
    request = request_for(script)
    handle = backend.submit(request)
    wait_until(lambda: "running" in backend.fetch_logs(handle))
    os.kill(template_pid, signal.SIGKILL)
    status = wait_done(backend, handle)
    assert status.state == "Failed" and "template interpreter it was forked from ended" in status.error
    wait_until(lambda: not pid_alive(handle.data["pid"]), limit=5)
    # The next steps start their own interpreter while a new template starts, then are forked again.
    follow_up = backend.submit(request_for(write_script(tmp_path / "next", "print('after')\n"), step_name="next"))
    assert wait_done(backend, follow_up).state == "Completed"
    assert wait_for_template() != template_pid


def test_a_forked_step_of_an_earlier_host_is_recognised_killed_and_lost(backend, tmp_path):
    """/proc shows the template's marker for a forked process: with its start time, it proves the group."""
    started_template(backend, tmp_path)
    handle = backend.submit(request_for(write_script(tmp_path / "src", "import time; time.sleep(300)\n")))
    assert isinstance(handle.data["started"], int)
    stale = handle.model_copy(update={"data": {**handle.data, "started": handle.data["started"] - 1}})
    local_module._jobs.pop(handle.id)  # as a new host process sees it: not one of its jobs
    assert backend.poll(stale).state == "Lost"
    time.sleep(0.2)
    assert pid_alive(handle.data["pid"]), "a process that started at another time is not the job's"
    assert backend.poll(handle).state == "Lost"
    wait_until(lambda: not pid_alive(handle.data["pid"]), limit=5)


def test_the_host_stopping_lets_a_running_forked_step_finish(backend, tmp_path):
    template_pid = started_template(backend, tmp_path)
    done = tmp_path / "done.txt"
    script = write_script(tmp_path / "src", f"""
        import pathlib, time
        time.sleep(1)
        pathlib.Path({str(done)!r}).touch()
    """)
    handle = backend.submit(request_for(script))
    started = time.monotonic()
    local_module.discard_spare_interpreter()  # what devhost does as it stops: it must not wait for the step
    assert time.monotonic() - started < 0.5 and local_module._template.ready_pid() is None
    assert not done.exists() and pid_alive(template_pid)
    assert wait_done(backend, handle).state == "Completed" and done.exists()
    wait_until(lambda: not pid_alive(template_pid), limit=5)  # its last step ended: it exits


def test_the_template_starts_without_the_hosts_secrets(backend, tmp_path, monkeypatch):
    monkeypatch.setenv("SOME_API_TOKEN", "token-value-123456")
    environ = Path(f"/proc/{started_template(backend, tmp_path)}/environ").read_bytes().decode(errors="replace")
    assert "MLPIPE_JOB_ID=" in environ
    for secret in ("token-value-123456", "AccountKey"):
        assert secret not in environ


def test_steps_forked_one_after_another_each_have_their_end_seen(tmp_path):
    """A chain: the next go-ahead waits for the previous step's end, so the template must notice
    an end that comes while it is not yet waiting (a lost SIGCHLD would hang the chain here)."""
    template = ForkTemplate()
    environment = {"PATH": os.environ.get("PATH", ""), "PYTHONUNBUFFERED": "1"}
    template.replenish(lambda: (environment, tmp_path))
    wait_until(lambda: template.ready_pid() is not None)
    script = write_script(tmp_path / "src", "import sys; sys.exit(int(sys.argv[1]) % 2)\n")
    try:
        for n in range(300):
            step = template.launch([str(script), str(n)], {**environment, "MLPIPE_JOB_ID": f"job-{n}"}, tmp_path,
                                   tmp_path / "log.txt")
            assert step.wait(timeout=10) == n % 2
            step.stderr.close()
    finally:
        template.discard()


def test_a_template_that_ended_touches_only_its_own_steps(tmp_path):
    """The next template may be running steps by the time the last one's end is handled."""
    template = ForkTemplate()
    environment = {"PATH": os.environ.get("PATH", ""), "PYTHONUNBUFFERED": "1"}
    script = write_script(tmp_path / "src", "import time; time.sleep(300)\n")
    try:
        template.replenish(lambda: (environment, tmp_path))
        wait_until(lambda: template.ready_pid() is not None)
        first = template._template
        os.kill(first.process.pid, signal.SIGKILL)
        wait_until(lambda: template.ready_pid() is None)
        template.replenish(lambda: (environment, tmp_path))
        wait_until(lambda: template.ready_pid() is not None)
        step = template.launch([str(script)], {**environment, "MLPIPE_JOB_ID": "job"}, tmp_path, tmp_path / "log")
        template._template_ended(first)  # the first one's end handled late, again
        time.sleep(0.2)
        assert step.poll() is None and pid_alive(step.pid) and template.ready_pid() is not None
        interpreters.kill_group(step.pid, signal.SIGKILL)
        assert step.wait(timeout=10) == -signal.SIGKILL
        step.stderr.close()
    finally:
        template.discard()


def test_a_template_that_cannot_start_is_logged_and_leaves_no_folder(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    template = ForkTemplate()
    template.replenish(lambda: ({"PATH": ""}, tmp_path / "no-such-folder"))  # its working folder is missing
    wait_until(lambda: "could not start the template interpreter" in caplog.text)
    assert template.ready_pid() is None and list((tmp_path / "tmp").iterdir()) == []
