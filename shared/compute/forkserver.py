"""Local steps forked from a template interpreter that stays running (MLPIPE_LOCAL_SPARE_INTERPRETER=fork).

Starting a Python interpreter costs ~10 ms of CPU per step; a no-op step forked from one that has
started costs ~3 ms in all, its own exit included (benchmarks/local_step_start.py; STEP_ENDING). The host keeps
one template: an interpreter started with the host's environment minus its secrets (as the spare of
interpreters.py), which has imported nothing beyond what every interpreter imports as it starts. For
each step the host sends it a go-ahead (argv, environment, working folder, log, and a FIFO for
stderr); the template forks, and the child becomes the step exactly as a spare does
(interpreters.BECOME_THE_STEP) in a session and process group of its own. This is what
multiprocessing's "forkserver" start method does for its workers.

The template is the step's parent: it reports on its stdout when a child started (its pid) and when
it ended (its wait status), and the host answers poll/wait from those reports (ForkedStep stands in
for a Popen). Differences a step could notice, documented in the README: the str hash seed is the
template's (shared by the steps forked from it, as by multiprocessing's forked workers); its parent
process is the template; /proc/<pid>/environ and cmdline show the template's start (its
MLPIPE_JOB_ID marker is recorded in the step's handle so a later host still recognises the process);
the objects an interpreter makes as it starts are in the garbage collector's permanent generation
(gc.get_freeze_count() is not 0; gc.get_objects() leaves them out); an object only the start-up
modules hold is not finalized at the step's end (STEP_ENDING). Steps whose start-up would differ
(interpreters.starts_alike) are never forked.
"""

from __future__ import annotations

import _thread
import contextlib
import logging
import marshal
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from shared.compute import interpreters
from shared.errors import ComputeError

log = logging.getLogger("mlpipe.compute.local")

# Before its first fork the template does what every interpreter does before it runs a script (its
# first compile, ~1 ms: the parser's set-up) and moves what it holds into the garbage collector's
# permanent generation (gc.freeze(), Python's documented way to fork without copying): a step's
# exit then does not write to (and so copy) every page the template's objects are on; `gc` itself
# is taken out of sys.modules again, as a fresh interpreter has not imported it.
TEMPLATE_PREPARATION = """\
def _prepare_to_fork():
    import sys
    compile(b"", "<template>", "exec", dont_inherit=True)
    libc_exit = _find_libc_exit()
    import gc
    gc.freeze()
    del sys.modules["gc"]
    return libc_exit
"""

# How a forked step ends. `python script.py` ends by finalizing the interpreter (Py_FinalizeEx),
# then calls C's exit(). Finalization ends by freeing every object the interpreter holds, the
# template's too, which writes to, and so copies, every page the step shares with the template: a
# no-op step took 4.4 ms with it, 3.0 ms without (benchmarks/local_step_start.py). So a forked step
# does, in Python's order, what a script can see of finalization: its exit status as Python reckons
# it (SystemExit's code; any other code printed to stderr, status 1), non-daemon threads joined,
# atexit callbacks, sys.stdout and sys.stderr flushed (status 120 if stdout cannot be) and put back
# to the originals, and what the script brought (__main__ and the modules it imported) torn down as
# finalization tears it down: taken out of sys.modules, garbage collected, the globals of those
# still alive set to None (names with one leading underscore first), newest first, collected again;
# the streams flushed again. So finalizers run and files left open are flushed. Then C's exit()
# (found through ctypes by the template before its first fork, called with the GIL held as at
# Python's own exit) runs C atexit handlers and flushes C stdio. Left out: tearing down the
# template's start-up modules (sys and builtins included), the low-level exit functions C extensions
# register with Py_AtExit, and freeing memory. Where a thread is still running by then (a daemon
# thread: Python stops those before its teardown, which Python code cannot), or ctypes is missing,
# the step ends as Python ends, after what was done already.
STEP_ENDING = """\
def _find_libc_exit():
    import sys
    imported_before, finders_before = set(sys.modules), set(sys.path_importer_cache)
    try:
        import ctypes
        libc_exit = ctypes.PyDLL(None).exit
        libc_exit.argtypes = (ctypes.c_int,)
        libc_exit.restype = None
    except Exception:
        libc_exit = None
    for name in set(sys.modules) - imported_before:
        del sys.modules[name]
    for path in set(sys.path_importer_cache) - finders_before:
        del sys.path_importer_cache[path]
    return libc_exit

def _end_the_step(become_the_step, template_modules, libc_exit):
    import sys, _thread

    def exit_status(code):
        if code is None:
            return 0
        if isinstance(code, int):
            return code & 0xFF if -2**63 <= code < 2**63 else 255
        if sys.stderr is not None:
            try:
                print(code, file=sys.stderr)
            except Exception:
                pass
        return 1

    def flush_std_files():
        status = 0
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name, None)
            if stream is None or getattr(stream, "closed", False):
                continue
            try:
                stream.flush()
            except Exception as error:
                status = 120
                if name == "stdout" and sys.stderr is not None:
                    try:
                        sys.stderr.write(f"Exception ignored in: {stream!r}\\n")
                        error.__traceback__ = error.__traceback__.tb_next  # from the flush on
                        sys.excepthook(type(error), error, error.__traceback__)
                    except Exception:
                        pass
        return status

    def clear_globals(namespace):
        names = [name for name in namespace if isinstance(name, str)]
        for name in names:
            if name.startswith("_") and not name.startswith("__"):
                namespace[name] = None
        for name in names:
            if name != "__builtins__":
                namespace[name] = None

    # The script runs in a __main__ of its own, alike but for the template's functions, whose frames
    # (still running here) would otherwise keep the script's globals from being collected below.
    main = type(sys)("__main__")
    vars(main).update((name, value) for name, value in vars(sys.modules["__main__"]).items() if name.startswith("__"))
    sys.modules["__main__"] = main
    del main
    try:
        become_the_step()
        status = 0
    except SystemExit as ending:
        status = exit_status(ending.code)
    if "threading" in sys.modules:
        sys.modules["threading"]._shutdown()
    import atexit
    atexit._run_exitfuncs()
    status = flush_std_files() or status
    if libc_exit is None or _thread._count():
        raise SystemExit(status)
    for name in ("stdin", "stdout", "stderr"):
        setattr(sys, name, getattr(sys, "__" + name + "__", None))
    import _weakref, gc
    collect = gc.collect  # gc itself may be torn down below
    if gc.isenabled():  # as Python does before its teardown
        collect()
    brought = [name for name in sys.modules if name == "__main__" or name not in template_modules]
    alive = []
    for name in brought:
        value = sys.modules.pop(name)
        if isinstance(value, type(sys)):  # modules only: sys.modules may hold other objects too
            alive.append(_weakref.ref(value))
    value = None
    collect()
    for module in reversed(alive):
        module = module()
        if module is not None and isinstance(module.__dict__, dict):
            clear_globals(module.__dict__)
        module = None
    collect()
    libc_exit(flush_std_files() or status)
"""

# The template's loop. Messages both ways are a 4-byte little-endian length and a marshalled tuple;
# every report is one write of less than PIPE_BUF bytes (atomic). It waits in select() on its stdin
# and on the wakeup pipe SIGCHLD writes to (signal.set_wakeup_fd: a child that ends just before the
# wait begins still wakes it, which a handler alone would miss while the loop blocks in read), and
# reaps its children there, in the loop: a child's "exited" always comes after its "started".
# `select` is taken out of sys.modules again, as a fresh interpreter has not imported it. At EOF on
# stdin the template stops taking go-aheads, reports its remaining children as they end, then exits.
TEMPLATE = interpreters.BECOME_THE_STEP + STEP_ENDING + TEMPLATE_PREPARATION + """\
def _launch_forks():
    import marshal, os, sys, _signal
    import select
    del sys.modules["select"]
    wakeup, woken = os.pipe()
    os.set_blocking(wakeup, False)
    os.set_blocking(woken, False)

    def report(*message):
        data = marshal.dumps(message)
        try:
            os.write(1, len(data).to_bytes(4, "little") + data)
        except OSError:
            pass  # the host is gone: nobody to tell

    def reap(block=False):
        while True:
            try:
                pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:
                return
            if not pid:
                return
            report("exited", pid, status)

    def read(size):
        data = b""
        while len(data) < size:
            chunk = os.read(0, size - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    libc_exit = _prepare_to_fork()
    template_modules = frozenset(sys.modules)
    _signal.signal(_signal.SIGCHLD, lambda signum, frame: None)  # its wakeup byte is what counts
    _signal.set_wakeup_fd(woken, warn_on_full_buffer=False)
    while True:
        ready = select.select([0, wakeup], [], [])[0]
        if wakeup in ready:
            try:
                os.read(wakeup, 4096)
            except BlockingIOError:
                pass
            reap()
        if 0 not in ready:
            continue
        header = read(4)
        body = read(int.from_bytes(header, "little")) if header else None
        if body is None:
            break
        token, argv, environment, cwd, log, stderr_fifo = marshal.loads(body)
        try:
            stderr = os.open(stderr_fifo, os.O_WRONLY)
        except OSError as error:
            report("failed", token, str(error)[:1000])
            continue
        try:
            pid = os.fork()
        except OSError as error:
            os.close(stderr)
            report("failed", token, str(error)[:1000])
            continue
        if pid == 0:
            _signal.set_wakeup_fd(-1)
            _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
            os.close(wakeup)
            os.close(woken)
            os.setsid()
            os.dup2(stderr, 2)
            os.close(stderr)
            _end_the_step(lambda: _become_the_step(argv, environment, cwd, log), template_modules, libc_exit)
        os.close(stderr)
        report("started", token, pid)
    _signal.set_wakeup_fd(-1)
    _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)
    reap(block=True)
_launch_forks()
"""

_HEADER = 4


class ForkedStep:
    """A step's process forked by the template: the part of subprocess.Popen the local backend uses
    (pid, stderr, wait, returncode). `lost` says why the exit status is unknown, if it is."""

    def __init__(self, pid: int, stderr, template_job_id: str) -> None:
        self.pid = pid
        self.stderr = stderr
        self.template_job_id = template_job_id  # what /proc/<pid>/environ shows as MLPIPE_JOB_ID
        self.returncode: int | None = None
        self.lost: str | None = None
        self._ended = threading.Event()
        self._lock = threading.Lock()
        self._when_ended: list[Callable[[], None]] = []

    def wait(self, timeout: float | None = None) -> int | None:
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired(f"step process {self.pid}", timeout)
        return self.returncode

    def poll(self) -> int | None:
        return self.returncode

    def when_ended(self, callback: Callable[[], None]) -> None:
        """Call `callback` once the process has ended (now, if it has): no thread waits for it."""
        with self._lock:
            if not self._ended.is_set():
                self._when_ended.append(callback)
                return
        callback()

    def _end(self, returncode: int | None, lost: str | None = None) -> None:
        with self._lock:
            self.returncode, self.lost = returncode, lost
            self._ended.set()
            callbacks, self._when_ended = self._when_ended, []
        for callback in callbacks:
            callback()


class _Launch:
    """A go-ahead waiting for the template's answer."""

    def __init__(self, stderr_fd: int) -> None:
        self.stderr_fd = stderr_fd
        self.answered = threading.Event()
        self.step: ForkedStep | None = None
        self.failure: str | None = None

    def refuse(self, failure: str) -> None:
        self.failure = failure
        self.answered.set()


@dataclass
class _TemplateProcess:
    """One template interpreter and what it was asked: its go-aheads not yet answered, the steps it
    forked that have not ended. Each template's reports touch only its own."""
    process: subprocess.Popen
    environment: dict[str, str]
    job_id: str  # its MLPIPE_JOB_ID: what /proc/<pid>/environ of its children shows
    fifo_folder: Path
    launches: dict[str, _Launch] = field(default_factory=dict)
    steps: dict[int, ForkedStep] = field(default_factory=dict)
    let_go: bool = False  # the host let it go (discard): it takes no go-aheads; its steps run on
    ended: bool = False

    def live(self) -> bool:
        return not (self.let_go or self.ended) and self.process.poll() is None


class ForkTemplate:
    """The template interpreter local steps are forked from; started in the background when asked
    (`replenish`) and again if it ended."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()  # one go-ahead at a time on the template's stdin
        self._settled = threading.Condition(self._lock)  # notified when a start in the background ends
        self._template: _TemplateProcess | None = None
        self._starting = False

    def ready_pid(self) -> int | None:
        """The template's pid, if it is running."""
        with self._lock:
            template = self._live_template()
            return template.process.pid if template else None

    def fits(self, step_environment: dict[str, str]) -> bool:
        """Whether a step with this environment may be forked from the template now."""
        with self._lock:
            template = self._live_template()
            return template is not None and interpreters.starts_alike(step_environment, template.environment)

    def launch(self, argv: list[str], environment: dict[str, str], cwd: Path, log_path: Path) -> ForkedStep:
        """Fork the step from the template and return its process once it started. Raises
        ComputeError if the template cannot (it ended, or the fork failed)."""
        token = uuid.uuid4().hex
        with self._lock:
            template = self._live_template()
        if template is None:
            raise ComputeError("the template interpreter is not running")
        fifo = template.fifo_folder / token
        try:
            os.mkfifo(fifo, 0o600)
            # Opened for reading first, without waiting for a writer: the template's open then succeeds at once.
            pending = _Launch(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        except OSError as error:  # e.g. its folder went with a template that just ended
            raise ComputeError(f"the template interpreter could not fork the step: {error.strerror}") from error
        try:
            with self._lock:
                if template.ended:  # its go-aheads were refused already
                    pending.refuse("the template interpreter ended")
                else:
                    template.launches[token] = pending
            open(log_path, "ab").close()  # the log exists once the step is under way
            message = marshal.dumps((token, argv, environment, str(cwd), str(log_path), str(fifo)))
            try:
                if not pending.answered.is_set():
                    with self._write_lock:
                        template.process.stdin.write(len(message).to_bytes(_HEADER, "little") + message)
                        template.process.stdin.flush()
            except (OSError, ValueError) as error:
                self._answer(template, token, failure=f"the template interpreter is gone ({error})")
            pending.answered.wait()  # it answers, or it ended (then every waiting go-ahead is refused)
        finally:
            with contextlib.suppress(FileNotFoundError):  # removed with its folder if the template ended
                os.unlink(fifo)
        if pending.step is None:
            os.close(pending.stderr_fd)
            raise ComputeError(f"the template interpreter could not fork the step: {pending.failure}")
        return pending.step

    def replenish(self, setup: Callable[[], tuple[dict[str, str], Path]]) -> None:
        """Start the template in the background unless it is running or starting. `setup()` gives
        its environment (the host's, without secrets) and working folder; nothing it raises reaches
        the caller (a step is running already): the next steps start interpreters of their own."""
        with self._lock:
            if self._live_template() or self._starting:
                return
            self._starting = True
        _thread.start_new_thread(self._start, (setup,))

    def discard(self, timeout: float = 10.0) -> None:
        """Let the template go (host stopping, tests): it takes no more go-aheads and exits once the
        steps forked from it have ended (they are not stopped, nor waited for here)."""
        with self._lock:
            self._settled.wait_for(lambda: not self._starting, timeout)
            template, self._template = self._template, None
            if template is not None:
                template.let_go = True
                running = len(template.steps)
        if template is None:
            return
        with contextlib.suppress(OSError):
            template.process.stdin.close()
        if running:
            log.info("the template interpreter exits once its %d running step(s) have ended", running)
            return
        try:
            template.process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("the template interpreter did not exit within %gs of being let go", timeout)

    # ----- inside ----------------------------------------------------------------------------

    def _live_template(self) -> _TemplateProcess | None:
        template = self._template
        return template if template is not None and template.live() else None

    def _start(self, setup: Callable[[], tuple[dict[str, str], Path]]) -> None:
        fifo_folder = None
        try:
            host_environment, cwd = setup()
            environment, job_id = interpreters.environment_started_ahead(host_environment)
            fifo_folder = Path(tempfile.mkdtemp(prefix="mlpipe-stderr-"))
            process = subprocess.Popen(
                [sys.executable, "-c", TEMPLATE], cwd=cwd, env=environment,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C at the host's terminal does not reach it
            )
        except Exception:  # noqa: BLE001 - no template this time; logged, never raised into a step
            if fifo_folder is not None:
                shutil.rmtree(fifo_folder, ignore_errors=True)
            log.warning("could not start the template interpreter", exc_info=True)
            with self._lock:
                self._starting = False
                self._settled.notify_all()
            return
        template = _TemplateProcess(process, environment, job_id, fifo_folder)
        with self._lock:
            self._template, self._starting = template, False
            self._settled.notify_all()
        _thread.start_new_thread(self._read_reports, (template,))

    def _read_reports(self, template: _TemplateProcess) -> None:
        """Follow the template's reports until it ends."""
        reports = template.process.stdout
        while True:
            header = reports.read(_HEADER)
            body = reports.read(int.from_bytes(header, "little")) if len(header) == _HEADER else b""
            if not body:
                break
            kind, *fields = marshal.loads(body)
            if kind == "started":
                self._answer(template, fields[0], pid=fields[1])
            elif kind == "failed":
                self._answer(template, fields[0], failure=fields[1])
            elif kind == "exited":
                with self._lock:
                    step = template.steps.pop(fields[0], None)
                if step is not None:
                    step._end(os.waitstatus_to_exitcode(fields[1]))
        template.process.wait()
        shutil.rmtree(template.fifo_folder, ignore_errors=True)
        self._template_ended(template)

    def _answer(self, template: _TemplateProcess, token: str, pid: int | None = None,
                failure: str | None = None) -> None:
        with self._lock:
            pending = template.launches.pop(token, None)
            if pending is None:
                return
            if pid is not None:
                os.set_blocking(pending.stderr_fd, True)
                pending.step = ForkedStep(pid, open(pending.stderr_fd, "rb"), template.job_id)
                template.steps[pid] = pending.step
        if pid is None:
            pending.refuse(failure)
        else:
            pending.answered.set()

    def _template_ended(self, template: _TemplateProcess) -> None:
        """The template exited: go-aheads waiting are refused; the steps it had not reported ended
        can no longer be followed (their exit status would go to no one), so they are stopped,
        unless the host let the template go (then they run on, as a host's own children would)."""
        with self._lock:
            template.ended = True
            launches, template.launches = template.launches, {}
            steps, template.steps = template.steps, {}
            if self._template is template:
                self._template = None
        for pending in launches.values():
            pending.refuse("the template interpreter ended")
        reason = f"the template interpreter it was forked from ended (exit code {template.process.returncode})"
        for pid, step in steps.items():
            if not template.let_go:
                interpreters.kill_group(pid, signal.SIGKILL)
            step._end(None, lost=f"the step's exit status is unknown: {reason}")
        if not template.let_go:
            log.warning("%s; %d running step(s) stopped", reason, len(steps))
