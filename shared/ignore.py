"""Which files of a source directory belong to its snapshot: `.amlignore`, else `.gitignore`.

Semantics (as Azure ML snapshots and git):
- Every folder may hold an ignore file; in a folder that has both, `.amlignore` is used and
  `.gitignore` is not (Azure ML's rule, applied per folder).
- Patterns use gitignore syntax (pathspec's GitWildMatchPattern via `GitIgnoreSpec`) and are
  relative to the folder holding the file. A deeper file overrides a shallower one; within a file
  the last matching pattern wins; `!pattern` re-includes.
- An ignored folder is not entered at all, so nothing below it can be re-included (git's rule).
- `.git`, `.mlpipe` and `__pycache__` are always left out (folders, and a `.git` file as in
  submodules and worktrees): they change without the source changing (commits, mlpipe's own
  caches, bytecode) and would defeat reuse.
- Only ignore files inside the source directory count, not those of folders above it (git
  would apply them): the snapshot must hash the same on the user's machine and on the host,
  which receives the source directory alone (in a package zip or a snapshot zip).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pathspec

__all__ = ["ALWAYS_EXCLUDED", "IGNORE_FILE_NAMES", "IgnoreRules", "read_ignore_file"]

IGNORE_FILE_NAMES = (".amlignore", ".gitignore")  # first present one wins, per folder
ALWAYS_EXCLUDED = frozenset({".git", ".mlpipe", "__pycache__"})  # folders, or files of that name


def read_ignore_file(folder: Path) -> list[str] | None:
    """The lines of the folder's effective ignore file, or None when it has none."""
    for name in IGNORE_FILE_NAMES:
        path = folder / name
        if path.is_file():
            return path.read_text(encoding="utf-8", errors="replace").splitlines()
    return None


@dataclass(frozen=True)
class IgnoreRules:
    """The ignore files in effect for one folder: (folder prefix relative to the root, spec),
    shallowest first. Immutable, so a walker can hand a child folder `rules.for_folder(...)`."""

    layers: tuple[tuple[str, pathspec.PathSpec], ...] = ()

    def for_folder(self, folder: Path, relative_folder: str) -> IgnoreRules:
        """Rules for `folder` (at POSIX `relative_folder`, '' for the root): adds its ignore file."""
        lines = read_ignore_file(folder)
        if not lines:
            return self
        prefix = f"{relative_folder}/" if relative_folder else ""
        return IgnoreRules(self.layers + ((prefix, pathspec.GitIgnoreSpec.from_lines(lines)),))

    def is_ignored(self, relative_path: str, is_dir: bool) -> bool:
        """Whether the POSIX path (relative to the root) is left out by the deepest rule matching it."""
        if relative_path.rsplit("/", 1)[-1] in ALWAYS_EXCLUDED:
            return True
        for prefix, spec in reversed(self.layers):
            if not relative_path.startswith(prefix):
                continue
            candidate = relative_path[len(prefix):] + ("/" if is_dir else "")
            verdict = spec.check_file(candidate).include
            if verdict is not None:
                return verdict
        return False
