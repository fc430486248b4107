"""Pipeline packages: a zip with pipeline.yaml at the root plus the source folders it names.

`build_package` is what the CLI sends to `POST /api/pipelines` (application/zip);
`extract_package` is the host's zip-slip-safe, size-limited reader of such a package.
"""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path, PurePosixPath

from shared.errors import InvalidRequest
from shared.fingerprint import SourceHasher
from shared.safezip import extract_zip
from shared.spec import PipelineDefinition

PACKAGE_DEFINITION_NAME = "pipeline.yaml"
_COPY_CHUNK = 1024 * 1024
_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def package_paths(definition: PipelineDefinition) -> list[str]:
    """Folders and files (relative to the definition) that a package must carry."""
    paths: set[str] = set()
    for step in definition.steps:
        if step.source_directory:
            paths.add(step.source_directory)
        paths.update(step.hash_paths or [])
    return sorted(paths)


def build_package(definition_file: Path, definition: PipelineDefinition, base_dir: Path,
                  hasher: SourceHasher) -> bytes:
    """Zip the definition (as pipeline.yaml) and its sources, honouring .amlignore/.gitignore."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        _add_bytes(archive, PACKAGE_DEFINITION_NAME, definition_file.read_bytes())
        for relative in package_paths(definition):
            local = base_dir / relative
            if local.is_file():
                _add_file(archive, relative, local)
                continue
            snapshot = hasher.hash_directory(local)
            for entry in snapshot.files:
                _add_file(archive, f"{PurePosixPath(relative)}/{entry.path}", local / entry.path)
    return buffer.getvalue()


def _add_bytes(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_FIXED_ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, data)


def _add_file(archive: zipfile.ZipFile, name: str, path: Path) -> None:
    info = zipfile.ZipInfo(str(PurePosixPath(name)), date_time=_FIXED_ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    with path.open("rb") as source, archive.open(info, "w") as target:
        while chunk := source.read(_COPY_CHUNK):
            target.write(chunk)


def extract_package(data: bytes, destination: Path) -> Path:
    """Extract a package into `destination` (safely: shared/safezip.py); return its pipeline.yaml."""
    if not data:
        raise InvalidRequest("request body: expected a zip package, got an empty body")
    extract_zip(io.BytesIO(data), destination, what="package")
    definition = destination / PACKAGE_DEFINITION_NAME
    if not definition.is_file():
        raise InvalidRequest(f"package: no {PACKAGE_DEFINITION_NAME} at the root of the zip")
    return definition
