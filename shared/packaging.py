"""Pipeline packages: a zip with pipeline.yaml at the root plus the source folders it names.

`build_package` is what the CLI sends to `POST /api/pipelines` (application/zip);
`extract_package` is the host's zip-slip-safe, size-limited reader of such a package.
"""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path, PurePosixPath

from shared.errors import InvalidRequest, PayloadTooLarge
from shared.fingerprint import SourceHasher
from shared.spec import PipelineDefinition

PACKAGE_DEFINITION_NAME = "pipeline.yaml"
MAX_PACKAGE_ENTRIES = 20_000
MAX_UNPACKED_BYTES = 2 * 1024**3
MAX_COMPRESSION_RATIO = 200  # a zip bomb inflates far beyond this
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


def _safe_member_path(name: str) -> PurePosixPath:
    if not name or "\\" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise InvalidRequest(f"package entry {name!r}: absolute or Windows-style paths are not allowed")
    path = PurePosixPath(name)
    if any(part in ("..", "") for part in path.parts) or ".." in name.split("/"):
        raise InvalidRequest(f"package entry {name!r}: '..' would leave the package folder")
    return path


def extract_package(data: bytes, destination: Path) -> Path:
    """Extract a package into `destination` and return the path of its pipeline.yaml.

    Rejects entries that would escape the destination (zip slip), symbolic links, more than
    MAX_PACKAGE_ENTRIES entries, more than MAX_UNPACKED_BYTES in all, and bomb-like ratios.
    The byte count is enforced while writing, so a lying header cannot get past it.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as error:
        raise InvalidRequest(f"request body: not a valid zip package ({error})") from None
    with archive:
        members = archive.infolist()
        if len(members) > MAX_PACKAGE_ENTRIES:
            raise PayloadTooLarge(f"package: {len(members)} entries, at most {MAX_PACKAGE_ENTRIES} allowed")
        declared = sum(member.file_size for member in members)
        if declared > MAX_UNPACKED_BYTES:
            raise PayloadTooLarge(f"package: unpacks to {declared} bytes, at most {MAX_UNPACKED_BYTES} allowed")
        if declared > MAX_COMPRESSION_RATIO * max(len(data), 1) and declared > 64 * 1024**2:
            raise InvalidRequest("package: compression ratio is implausibly high (zip bomb?)")
        written = 0
        for member in members:
            relative = _safe_member_path(member.filename)
            mode = member.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise InvalidRequest(f"package entry {member.filename!r}: symbolic links are not allowed")
            target = destination.joinpath(*relative.parts)
            if member.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as source, target.open("wb") as sink:
                while chunk := source.read(_COPY_CHUNK):
                    written += len(chunk)
                    if written > MAX_UNPACKED_BYTES:
                        raise PayloadTooLarge(f"package: unpacks to more than {MAX_UNPACKED_BYTES} bytes")
                    sink.write(chunk)
    definition = destination / PACKAGE_DEFINITION_NAME
    if not definition.is_file():
        raise InvalidRequest(f"package: no {PACKAGE_DEFINITION_NAME} at the root of the zip")
    return definition
