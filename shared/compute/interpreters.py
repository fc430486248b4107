"""The fresh Python interpreters local steps run in, started before their step's go-ahead, and how
any readied interpreter becomes the step (BECOME_THE_STEP, also what a step forked from the
template of forkserver.py runs: the default, MLPIPE_LOCAL_SPARE_INTERPRETER=fork).

With MLPIPE_LOCAL_SPARE_INTERPRETER=on or off, or for a step that cannot be forked, a local step runs
in a new `python` process of its own, as `python script.py args` would run
it. Starting an interpreter takes ~10 ms of CPU, so it is started before it is needed and waits
on its stdin for the go-ahead (LAUNCHER): the step's own one while its claim and input downloads
happen, or a spare one started while the previous step ran. A spare is started with the host's
environment, minus its secrets; the go-ahead then gives it the step's environment, working folder
and log, so the step sees what it would have seen in an interpreter started for it. A step whose
environment changes how an interpreter starts (PYTHON* other than PYTHONPATH, LANG, LC_*, or a
sitecustomize/usercustomize on its PYTHONPATH) never gets a spare. One spare is kept per host
process with `on` (none with `off`); it exits by itself when the host ends (EOF).
"""

from __future__ import annotations

import _thread
import contextlib
import importlib.machinery
import logging
import marshal
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from shared.errors import ComputeError

if TYPE_CHECKING:
    from shared.compute.forkserver import ForkedStep, ForkTemplate

# How an interpreter becomes the step's, once it has its go-ahead (builtin modules only: json/runpy
# would add ~15 ms): put /dev/null in stdin's place, the log in stdout's, and run the script in
# __main__ as `python script.py args` does (sys.argv, __file__, the script's folder first on
# sys.path, PYTHONPATH after it). An interpreter started ahead takes the step's environment,
# keeping the LC_CTYPE it set for itself at start (the step's LANG and LC_* are its own, so a fresh
# interpreter would have set it too), and the step's working folder; `environment` is None for one
# started with them. A traceback starts at the script, as it would: the launcher's frames are left out.
BECOME_THE_STEP = """\
def _become_the_step(argv, environment, cwd, log):
    import os, sys
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    if log is not None:
        out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(out, 1)
        os.close(out)
    if environment is not None:
        os.chdir(cwd)
        coerced = os.environ.get("LC_CTYPE")  # set by the interpreter itself under the C locale (PEP 538)
        os.environ.clear()
        os.environ.update(environment)
        if coerced is not None and "LC_CTYPE" not in environment:
            os.environ["LC_CTYPE"] = coerced
        python_path = environment.get("PYTHONPATH")
        entries = [os.path.abspath(p) for p in python_path.split(os.pathsep)] if python_path else []
        sys.path[1:] = list(dict.fromkeys(entries + sys.path[1:]))  # ahead of site-packages, once each, as site does
    sys.argv = argv
    sys.orig_argv = [sys.orig_argv[0], *argv]  # as `python script.py args` leaves it
    sys.path[0] = os.path.dirname(os.path.realpath(argv[0]))
    main = sys.modules["__main__"].__dict__
    for name in [name for name in main if not name.startswith("__")]:  # the launcher's own functions
        del main[name]
    loader = sys.modules["_frozen_importlib_external"].SourceFileLoader("__main__", argv[0])  # as Python sets it
    main.update(__file__=argv[0], __cached__=None, __loader__=loader)
    try:
        with open(argv[0], "rb") as source:
            code = compile(source.read(), argv[0], "exec", dont_inherit=True)
        exec(code, main)
    except Exception as error:
        error.__traceback__ = error.__traceback__.tb_next
        sys.excepthook(type(error), error, error.__traceback__)
        raise SystemExit(1) from None
"""

# What an interpreter started for one step runs first: its first compile (~1 ms, the parser's set-up,
# which every interpreter does before it runs a script) while it may wait; then wait for the go-ahead
# on stdin (a marshalled argv, environment, working folder and log file, the last three None when the
# process was started with them), then EOF, and become the step. EOF without a go-ahead: exit,
# having run nothing.
LAUNCHER = BECOME_THE_STEP + """\
def _launch():
    import marshal, os, sys
    compile(b"", "<launcher>", "exec", dont_inherit=True)
    go = sys.stdin.buffer.read()
    if not go:
        os._exit(0)
    _become_the_step(*marshal.loads(go))
_launch()
"""

log = logging.getLogger("mlpipe.compute.local")

JOB_ID_VARIABLE = "MLPIPE_JOB_ID"  # in the interpreter's environment from its start: /proc shows it


@dataclass
class Interpreter:
    """A started interpreter waiting for its go-ahead, or (process None) a fork from `template` to come."""
    process: subprocess.Popen | None
    job_id: str
    started_for_step: bool  # started with the step's environment, folder and log (not a spare)
    template: ForkTemplate | None = None


def start_for_step(environment: dict[str, str], cwd: Path, log_path: Path) -> Interpreter:
    """An interpreter started with the step's own environment (which carries its job id) and folder."""
    with open(log_path, "ab") as stdout_sink:
        process = _spawn(environment, cwd, stdout_sink)
    return Interpreter(process, environment[JOB_ID_VARIABLE], started_for_step=True)


def go(interpreter: Interpreter, argv: list[str], environment: dict[str, str], cwd: Path,
       log_path: Path) -> subprocess.Popen | ForkedStep:
    """Let the interpreter run the script (`argv[0]`) with `argv`, and return the step's process; a
    spare also gets the step's environment, folder and log; a fork from the template is made now (or,
    if the template cannot, an interpreter is started for the step). If the process died already,
    its exit status tells how."""
    if interpreter.template is not None:
        try:
            return interpreter.template.launch(argv, environment, cwd, log_path)
        except ComputeError as error:
            log.warning("%s; starting an interpreter for the step", error.message)
            interpreter = start_for_step(environment, cwd, log_path)
    if interpreter.started_for_step:
        setup = (None, None, None)
    else:
        open(log_path, "ab").close()  # the log exists once the step is under way, as for one started for it
        setup = (environment, str(cwd), str(log_path))
    with contextlib.suppress(BrokenPipeError):
        interpreter.process.stdin.write(marshal.dumps((argv, *setup)))
        interpreter.process.stdin.close()
    return interpreter.process


def abort(interpreter: Interpreter) -> None:
    """Stop an interpreter still waiting for its go-ahead (it has run none of the step's code)."""
    process = interpreter.process
    if process is None:
        return  # a fork to come: nothing was started
    with contextlib.suppress(OSError):
        process.stdin.close()  # EOF: it exits by itself
    kill_group(process.pid, signal.SIGKILL)
    process.wait()
    with contextlib.suppress(OSError):
        process.stderr.close()


def environment_started_ahead(host_environment: dict[str, str]) -> tuple[dict[str, str], str]:
    """The environment an interpreter started ahead of its step gets (a spare, or the template):
    the host's without PYTHONPATH (the step's goes in at its go-ahead), with a job id of its own
    for /proc; and that job id."""
    job_id = uuid.uuid4().hex
    environment = {name: value for name, value in host_environment.items() if name != "PYTHONPATH"}
    environment[JOB_ID_VARIABLE] = job_id
    return environment, job_id


def kill_group(pgid: int, sig: int) -> None:
    """Signal process group `pgid` (an interpreter's: it leads its own); nothing if it is gone or not ours."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def starts_alike(step_environment: dict[str, str], spare_environment: dict[str, str]) -> bool:
    """Whether an interpreter started with `spare_environment` (and no PYTHONPATH) starts as one
    started with the step's: the same start-up variables, and nothing on the step's PYTHONPATH
    that an interpreter imports as it starts (site imports sitecustomize and usercustomize from
    sys.path, where PYTHONPATH comes before site-packages)."""
    names = {name for name in (*step_environment, *spare_environment) if _shapes_start_up(name)}
    if any(step_environment.get(name) != spare_environment.get(name) for name in names):
        return False
    python_path = step_environment.get("PYTHONPATH")
    return not (python_path and any(_may_customize_start_up(entry) for entry in python_path.split(os.pathsep)))


def _shapes_start_up(name: str) -> bool:
    return (name.startswith("PYTHON") and name != "PYTHONPATH") or name == "LANG" or name.startswith("LC_")


def _may_customize_start_up(entry: str) -> bool:
    """A PYTHONPATH entry holding sitecustomize/usercustomize (module, package or extension), a
    file (a zip archive could hold one), or a relative entry (the step's folder decides)."""
    if not os.path.isabs(entry) or os.path.isfile(entry):
        return True
    return any(os.path.exists(os.path.join(entry, module + suffix))
               for module in ("sitecustomize", "usercustomize") for suffix in _MODULE_SUFFIXES)


_MODULE_SUFFIXES = ("", *importlib.machinery.all_suffixes())  # "": a package folder


def _spawn(environment: dict[str, str], cwd: Path | str, stdout) -> subprocess.Popen:
    try:
        return subprocess.Popen(
            [sys.executable, "-c", LAUNCHER], cwd=cwd, env=environment,
            stdin=subprocess.PIPE, stdout=stdout, stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: cancel reaches its children too
        )
    except OSError as exc:
        raise ComputeError(f"could not start a Python interpreter ({exc.strerror or type(exc).__name__})") from exc


class SpareInterpreter:
    """At most one interpreter started ahead with the host's environment, for the next local step."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)  # notified when a start in the background ends
        self._spare: tuple[Interpreter, dict[str, str]] | None = None
        self._starting = False

    def ready_pid(self) -> int | None:
        """The pid of the spare waiting for a step, if there is one."""
        with self._lock:
            return self._spare[0].process.pid if self._spare is not None else None

    def take(self, step_environment: dict[str, str]) -> Interpreter | None:
        """The spare, if one is ready and starts like an interpreter started for this step."""
        with self._lock:
            spare = self._spare
            if spare is None or spare[0].process.poll() is not None or not starts_alike(step_environment, spare[1]):
                return None
            self._spare = None
        return spare[0]

    def replenish(self, setup: Callable[[], tuple[dict[str, str], Path]]) -> None:
        """Start a spare in the background unless one is there or starting. `setup()` gives its
        environment (the host's, without secrets) and working folder; it runs in the background too,
        and nothing it raises reaches the caller (a step that is running already): there is then
        no spare, and the next step starts its own interpreter."""
        with self._lock:
            if self._spare is not None or self._starting:
                return
            self._starting = True
        _thread.start_new_thread(self._start, (setup,))  # Thread.start would wait for it to run

    def _start(self, setup: Callable[[], tuple[dict[str, str], Path]]) -> None:
        spare = None
        try:
            host_environment, cwd = setup()
            environment, job_id = environment_started_ahead(host_environment)
            process = _spawn(environment, cwd, subprocess.DEVNULL)
            spare = (Interpreter(process, job_id, started_for_step=False), environment)
        except Exception:  # noqa: BLE001 - no spare this time; logged, never raised into a step
            log.warning("could not start a spare interpreter", exc_info=True)
        finally:
            with self._lock:
                self._starting = False
                self._spare = spare
                self._settled.notify_all()

    def discard(self, timeout: float = 10.0) -> None:
        """Stop the spare, and one being started (host shutting down, tests)."""
        with self._lock:
            self._settled.wait_for(lambda: not self._starting, timeout)
            spare, self._spare = self._spare, None
        if spare is not None:
            abort(spare[0])
