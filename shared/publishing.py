"""Publishing a pipeline from a folder: snapshot each source directory, upload, record.

Used by the zip-package publish (the host extracts the package into a temp folder first) and so,
through the HTTP API, by `mlpipe run` / `mlpipe publish`.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from shared.fingerprint import SourceHasher, zip_snapshot
from shared.registry import PipelineRecord, PipelineRegistry
from shared.settings import get_settings
from shared.spec import PipelineDefinition


def _upload_snapshot(registry: PipelineRegistry, source_dir: Path, hasher: SourceHasher) -> str:
    snapshot = hasher.hash_directory(source_dir)
    if registry.snapshot_exists(snapshot.hash):
        return snapshot.hash
    scratch = get_settings().data_dir / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    workspace = Path(tempfile.mkdtemp(dir=scratch, prefix="snapshot-"))
    try:
        zip_path = zip_snapshot(source_dir, snapshot, workspace / "snapshot.zip")
        registry.upload_snapshot_files(snapshot.hash, snapshot.file_hashes())
        registry.upload_snapshot(snapshot.hash, zip_path)  # last: its existence means "complete"
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    return snapshot.hash


def publish_directory(definition: PipelineDefinition, base_dir: Path, *, name: str,
                      description: str | None, version: str | None, private: bool = False,
                      hasher: SourceHasher | None = None) -> PipelineRecord:
    """Snapshot every step's source_directory (each distinct folder once) and publish."""
    registry = PipelineRegistry()
    hasher = hasher or SourceHasher(None)
    by_folder: dict[str, str] = {}
    snapshots: dict[str, str] = {}
    for step in definition.steps:
        if not step.source_directory:
            continue
        if step.source_directory not in by_folder:
            by_folder[step.source_directory] = _upload_snapshot(registry, base_dir / step.source_directory, hasher)
        snapshots[step.name] = by_folder[step.source_directory]
    return registry.publish(definition.model_dump(mode="json"), snapshots, name=name,
                            description=description, version=version, private=private)
