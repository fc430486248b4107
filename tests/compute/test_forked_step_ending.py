"""How a step forked from the template ends (shared/compute/forkserver.py STEP_ENDING): as it would in an
interpreter started for it (exit status, finalizers, files left open, atexit, threads, C stdio), without
tearing down what it shares with the template. Each script runs both ways, against Azurite."""

from __future__ import annotations

import re
import textwrap
import time
from pathlib import Path

import pytest

import shared.compute.local as local_module
from shared.compute.local import LocalBackend, work_dir_for
from tests.compute.test_local_backend import request_for, wait_done, write_script
from tests.compute.test_spare_interpreter import ready_ahead, use_interpreters_ahead

# Finalizers, files never closed (in __main__ and in a module it imported), atexit callbacks, a
# non-daemon thread still running when the script ends, and output C stdio buffered.
FINALIZERS = """\
import atexit, ctypes, sys, threading, time, weakref
import helper
GREETING = "hello"
class Noisy:
    def __init__(self, name):
        self.name = name
    def __del__(self):
        print("finalized:", self.name, "- GREETING is", GREETING)
noisy = Noisy("a global of __main__")
cycle = Noisy("a cycle")
cycle.itself = cycle
target = Noisy("a weakref.finalize target")
weakref.finalize(target, print, "weakref.finalize callback")
atexit.register(print, "atexit callback")
kept = open(sys.argv[1] + "/main.txt", "w")
kept.write("written by __main__, never closed")
helper.keep_open(sys.argv[1] + "/helper.txt")
threading.Thread(target=lambda: (time.sleep(0.2), print("non-daemon thread done"))).start()
ctypes.CDLL(None).printf(b"printed by C stdio\\n")
print("script done")
"""

HELPER = """\
_kept = []
def keep_open(path):
    kept = open(path, "w")
    kept.write("written by an imported module, never closed")
    _kept.append(kept)
"""

# An object only the interpreter's own start-up modules hold (here `sys`): Python finalizes it as it
# tears itself down; a forked step leaves that teardown out (the one difference, README).
WITNESS = """\
import os, sys
class Witness:
    def __init__(self, path):
        self.write, self.fd = os.write, os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    def __del__(self):
        self.write(self.fd, b"finalized at the interpreter's teardown\\n")
sys.witness = Witness(sys.argv[1] + "/witness.txt")
"""

BROKEN_STDOUT = """\
import sys
class Broken:
    def write(self, text):
        return len(text)
    def flush(self):
        raise OSError("disk full")
sys.stdout = Broken()
"""

SCRIPTS = {
    "finalizers, open files, atexit, threads, C stdio": FINALIZERS,
    "sys.exit with a message": "import sys\nprint('before')\nsys.exit('bye')\n",
    "SystemExit with a large code": "print('before')\nraise SystemExit(256 + 7)\n",
    "SystemExit(None) from a function": "import sys\ndef leave():\n    sys.exit()\nleave()\nprint('never')\n",
    "sys.stdout replaced by a file": (
        "import sys\nsys.stdout = open(sys.argv[1] + '/redirected.txt', 'w')\nprint('hi')\n"),
    "stdout that cannot be flushed": BROKEN_STDOUT,
    "an exception": "def fail():\n    raise KeyError('k')\nprint('before')\nfail()\n",
    # C extensions in numbers, as an ML step has them; its result in a file it never closes.
    "scikit-learn fitted": (
        "import sys\nimport numpy as np\nfrom sklearn.linear_model import LogisticRegression\n"
        "X = np.arange(40, dtype=float).reshape(20, 2)\nmodel = LogisticRegression().fit(X, X[:, 0] > 19)\n"
        "kept = open(sys.argv[1] + '/model.txt', 'w')\nkept.write(repr(model.coef_.round(3).tolist()))\n"
        "print('score', model.score(X, X[:, 0] > 19))\n"),
    # What the standard library leaves to the interpreter's end: a log file handler, a temporary folder,
    # a process pool and a thread pool never shut down, a suspended generator's `finally`.
    "standard library left to the end": (
        "import concurrent.futures, logging, multiprocessing, sys, tempfile, time\n"
        "logging.basicConfig(filename=sys.argv[1] + '/log.txt', level=logging.INFO)\n"
        "logging.info('logged, never flushed by the script')\n"
        "scratch = tempfile.TemporaryDirectory()\n"
        "open(sys.argv[1] + '/scratch.txt', 'w').write(scratch.name)\n"
        "pool = multiprocessing.get_context('fork').Pool(2)\nprint('pool', sum(pool.map(abs, [-1, -2, 3])))\n"
        "threads = concurrent.futures.ThreadPoolExecutor(1)\n"
        "threads.submit(lambda: (time.sleep(0.2), print('thread pool task done')))\n"
        "def steps():\n    try:\n        yield 1\n    finally:\n        print('generator finally')\n"
        "suspended = steps()\nnext(suspended)\nprint('script done')\n"),
    # As some packages do (the iris demo's scikit-learn brings one): kept alive by an import hook, say.
    "objects other than modules in sys.modules": (
        "import sys, types\nclass Lazy:\n    pass\n"
        "sys.modules['a_class'] = sys.held_by_an_import_hook = Lazy\nsys.modules['an_instance'] = Lazy()\n"
        "sys.modules['a_module_subclass'] = type('Sub', (types.ModuleType,), {})('a_module_subclass')\n"
        "print('imported')\n"),
    "a daemon thread still running": (
        "import threading, time\nthreading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
        "print('done')\n" + WITNESS),
}


def end_of(backend, script: Path, out: Path) -> tuple[str, str | None, list[str], dict[str, str]]:
    """Run `script` (its output folder as its argument): its state, error, log lines, and the files it left."""
    out.mkdir(parents=True)
    request = request_for(script, arguments=[str(out)])
    status = wait_done(backend, backend.submit(request))
    log = (work_dir_for(request.run_id, request.step_name) / "log.txt").read_text()
    normalise = lambda text: re.sub(r" at 0x[0-9a-f]+", " at 0x…", text) if text else text  # noqa: E731
    files = {path.name: path.read_text() for path in sorted(out.iterdir())}
    return status.state, normalise(status.error), normalise(log).splitlines(), files


def ends(storage_env, monkeypatch, tmp_path: Path, script: Path, ahead: str) -> tuple:
    use_interpreters_ahead(monkeypatch, ahead)
    local_module.discard_spare_interpreter()
    backend = LocalBackend(cancel_grace_seconds=2)
    try:
        if ahead == "fork":
            ready_ahead(backend, tmp_path / ahead, ahead)
        return end_of(backend, script, tmp_path / ahead / "out")
    finally:
        local_module.discard_spare_interpreter()


def both_ways(storage_env, monkeypatch, tmp_path: Path, body: str) -> tuple[tuple, tuple]:
    script = write_script(tmp_path / "src", body)
    (tmp_path / "src" / "helper.py").write_text(HELPER)
    return (ends(storage_env, monkeypatch, tmp_path, script, "fork"),
            ends(storage_env, monkeypatch, tmp_path, script, "off"))


@pytest.mark.parametrize("case", list(SCRIPTS))
def test_a_forked_step_ends_as_in_an_interpreter_started_for_it(storage_env, monkeypatch, tmp_path, case):
    forked, started_for_it = both_ways(storage_env, monkeypatch, tmp_path, SCRIPTS[case])
    state, error, log, files = forked
    # A temporary folder of a random name, which must be gone by the end.
    scratch = [ending[3].pop("scratch.txt", None) for ending in (forked, started_for_it)]
    assert not any(folder and Path(folder).exists() for folder in scratch)
    # Its stdout and stderr meet in the log in the order they reach it: compare lines as a multiset.
    assert (state, error, sorted(log), files) == (started_for_it[0], started_for_it[1], sorted(started_for_it[2]),
                                                  started_for_it[3])
    if case.startswith("finalizers"):
        assert log == started_for_it[2]  # stdout alone: the very same order
        assert log[-1].startswith("finalized: a weakref.finalize target") and "atexit callback" in log
        assert "printed by C stdio" in log and "non-daemon thread done" in log and state == "Completed"
        assert files == {"helper.txt": "written by an imported module, never closed",
                         "main.txt": "written by __main__, never closed"}
    expected = {"sys.exit with a message": "code 1", "SystemExit with a large code": "code 7",
                "stdout that cannot be flushed": "code 120", "an exception": "code 1"}
    if case in expected:
        assert state == "Failed" and expected[case] in error
    if case.startswith("stdout that"):
        assert "Exception ignored in: <__main__.Broken object at 0x…>" in log and "OSError: disk full" in log
    if case.startswith("scikit-learn"):
        assert state == "Completed" and log == ["score 1.0"] and files["model.txt"].startswith("[[")
    if case.startswith("standard library"):
        assert log == ["pool 6", "script done", "thread pool task done", "generator finally"], log
        assert files == {"log.txt": "INFO:root:logged, never flushed by the script\n"} and all(scratch)
    if case.startswith("sys.stdout replaced"):
        assert files == {"redirected.txt": "hi\n"}


def test_what_only_the_start_up_modules_hold_is_left_unfinalized_unless_a_thread_still_runs(
        storage_env, monkeypatch, tmp_path):
    """The one difference (README): the template's own teardown is left out. A daemon thread still
    running makes the step end as Python ends (Python stops such threads first; Python code cannot)."""
    forked, started_for_it = both_ways(storage_env, monkeypatch, tmp_path, WITNESS)
    assert started_for_it[3] == {"witness.txt": "finalized at the interpreter's teardown\n"}
    assert forked[3] == {"witness.txt": ""} and forked[0] == "Completed"  # made by the script, never written to

    started = time.monotonic()
    daemon = "import threading, time\nthreading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
    forked, _ = both_ways(storage_env, monkeypatch, tmp_path / "daemon", daemon + textwrap.dedent(WITNESS))
    assert forked[3] == {"witness.txt": "finalized at the interpreter's teardown\n"}
    assert time.monotonic() - started < 30  # the daemon thread did not hold the step up
