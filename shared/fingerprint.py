"""Step fingerprints (DESIGN.md "Reuse"): what makes a step "the same" as an earlier one.

value = sha256 of the canonical JSON (sorted keys, no spaces, ASCII) of
`{"version", "kind", "settings", "source", "inputs"}`, where
- settings: what changes results (script_name, arguments after parameter substitution,
  environment, hash_paths, output names, backend settings; see `step_settings`),
- source: the source directory's snapshot hash (shared/source_snapshot.py),
- inputs: {input name: fingerprint} with `dataset_fingerprint` (blob names + content MD5 or
  ETag) and `pipeline_data_fingerprint` (producing step's fingerprint + output name).

`ingredients` holds the same information with a hash per ingredient (and per source file when
known) so a user can see why a step was or was not reused; `diff_ingredients` names the
ingredients that differ between two of them (`mlpipe runs explain`). The value is computed from
the ingredients, so the two can never disagree.

Source snapshots themselves live in shared/source_snapshot.py and are re-exported here.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from shared.source_snapshot import (
    FileEntry,
    SourceHasher,
    SourceSnapshot,
    hash_directory,
    sha256_file,
    snapshot_hash,
    zip_snapshot,
)

__all__ = [
    "FINGERPRINT_VERSION",
    "FileEntry",
    "SourceHasher",
    "SourceSnapshot",
    "StepFingerprint",
    "canonical_json",
    "compute_step_fingerprint",
    "dataset_fingerprint",
    "diff_ingredients",
    "fingerprint_from_ingredients",
    "hash_directory",
    "pipeline_data_fingerprint",
    "sha256_file",
    "sha256_json",
    "snapshot_hash",
    "step_settings",
    "zip_snapshot",
]

FINGERPRINT_VERSION = 1  # bump to invalidate every earlier reuse record on a format change


def canonical_json(value: Any) -> str:
    """The one JSON spelling of a value: sorted keys, `,`/`:` separators, ASCII, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def sha256_json(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode("ascii")).hexdigest()


class StepFingerprint(NamedTuple):
    """`value` is the reuse key; `ingredients` the JSON-able explanation (stored per step run)."""

    value: str
    ingredients: dict


def step_settings(step, parameters: Mapping[str, Any], hash_path_hashes: Mapping[str, str] | None = None) -> dict:
    """The settings of a `shared.spec.StepSpec` that change its results, for the fingerprint.

    Arguments are substituted with the run's parameters only: `{inputs.X}`/`{outputs.Y}` stay
    literal because where a run downloads its data must not change the fingerprint (the
    inputs' own fingerprints cover their content). Compute, retries and allow_reuse are left
    out: they change how a step runs, not what it produces. `hash_path_hashes` (from
    `SourceHasher.hash_paths`) folds the content of hash_paths in; without it only the names.
    """
    from shared.spec import substitute_arguments  # spec imports nothing from here; keep it lazy

    return {
        "script_name": step.script_name,
        "arguments": substitute_arguments(step, parameters),
        "environment": step.environment,
        "hash_paths": dict(hash_path_hashes) if hash_path_hashes is not None else list(step.hash_paths),
        "outputs": sorted(step.outputs),
        "settings": step.settings,
    }


def compute_step_fingerprint(
    kind: str,
    settings: Mapping[str, Any],
    source_hash: str | None,
    input_fingerprints: Mapping[str, str],
    source_files: Iterable[FileEntry] | Mapping[str, str] | None = None,
) -> StepFingerprint:
    """Fingerprint of one step. `source_files` (a snapshot's files or {path: sha256}) only adds
    per-file detail to the ingredients; the value depends on `source_hash` alone."""
    ingredients = {
        "version": FINGERPRINT_VERSION,
        "kind": {"value": kind, "hash": sha256_json(kind)},
        "settings": {name: {"value": value, "hash": sha256_json(value)} for name, value in sorted(settings.items())},
        "source": {"hash": source_hash},
        "inputs": {name: {"fingerprint": fp} for name, fp in sorted(input_fingerprints.items())},
    }
    if source_files is not None:
        if isinstance(source_files, Mapping):
            ingredients["source"]["files"] = dict(sorted(source_files.items()))
        else:
            ingredients["source"]["files"] = {entry.path: entry.sha256 for entry in sorted(source_files)}
    return StepFingerprint(fingerprint_from_ingredients(ingredients), ingredients)


def fingerprint_from_ingredients(ingredients: Mapping[str, Any]) -> str:
    """Recompute a fingerprint value from stored ingredients (per-file detail does not count)."""
    return sha256_json(
        {
            "version": ingredients["version"],
            "kind": ingredients["kind"]["value"],
            "settings": {name: item["value"] for name, item in ingredients["settings"].items()},
            "source": ingredients["source"]["hash"],
            "inputs": {name: item["fingerprint"] for name, item in ingredients["inputs"].items()},
        }
    )


def _changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, str]]:
    """[(key, "added" | "removed" | "changed")] between two flat mappings, sorted by key."""
    changes = []
    for key in sorted(set(old) | set(new)):
        if key not in old:
            changes.append((key, "added"))
        elif key not in new:
            changes.append((key, "removed"))
        elif old[key] != new[key]:
            changes.append((key, "changed"))
    return changes


def _field(section: Mapping[str, Any], field: str) -> dict[str, Any]:
    return {name: item[field] for name, item in section.items()}


def diff_ingredients(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Which ingredients differ from `a` to `b`, e.g. `settings.arguments: changed`,
    `source.files[prep.py]: changed`, `inputs.raw: added`. Empty when the values match."""
    differences = []
    if a.get("version") != b.get("version"):
        differences.append("version: changed")
    if a["kind"]["hash"] != b["kind"]["hash"]:
        differences.append("kind: changed")
    settings = _changes(_field(a["settings"], "hash"), _field(b["settings"], "hash"))
    differences += [f"settings.{key}: {change}" for key, change in settings]
    if a["source"].get("hash") != b["source"].get("hash"):
        old_files, new_files = a["source"].get("files"), b["source"].get("files")
        per_file = _changes(old_files, new_files) if old_files is not None and new_files is not None else []
        differences += [f"source.files[{key}]: {change}" for key, change in per_file] or ["source: changed"]
    inputs = _changes(_field(a["inputs"], "fingerprint"), _field(b["inputs"], "fingerprint"))
    differences += [f"inputs.{key}: {change}" for key, change in inputs]
    return differences


def _content_tag(tag: str | bytes | bytearray) -> str:
    """An ETag or content MD5; the MD5 the Storage SDK returns as bytes is base64-encoded."""
    if isinstance(tag, (bytes, bytearray)):
        return base64.b64encode(bytes(tag)).decode("ascii")
    return str(tag)


def dataset_fingerprint(entries: Iterable[tuple[str, str | bytes | bytearray]]) -> str:
    """Fingerprint of a dataset from its blobs: (blob name, content MD5 or ETag) pairs, any order."""
    pairs = sorted((str(name), _content_tag(tag)) for name, tag in entries)
    return sha256_json({"dataset": pairs})


def pipeline_data_fingerprint(step_fingerprint: str, output: str) -> str:
    """Fingerprint of a PipelineData: whatever produced it (its step's fingerprint) and which output."""
    return sha256_json({"pipeline_data": {"step": step_fingerprint, "output": output}})
