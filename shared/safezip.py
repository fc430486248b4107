"""Extracting zip files that come from users or from storage: no zip slip, no bombs, no links.

One implementation serves publish packages (shared/packaging.py) and source snapshots
(shared/registry.py).
"""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from shared.errors import InvalidRequest, PayloadTooLarge

MAX_ENTRIES = 20_000
MAX_UNPACKED_BYTES = 2 * 1024**3
MAX_COMPRESSION_RATIO = 200  # a zip bomb inflates far beyond this
_COPY_CHUNK = 1024 * 1024


def _member_path(name: str, what: str) -> PurePosixPath:
    if not name or "\\" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise InvalidRequest(f"{what} entry {name!r}: absolute or Windows-style paths are not allowed")
    path = PurePosixPath(name)
    if ".." in name.split("/") or any(part == ".." for part in path.parts):
        raise InvalidRequest(f"{what} entry {name!r}: '..' would leave the {what} folder")
    return path


def extract_zip(source: str | Path | BinaryIO, destination: Path, *, what: str = "zip",
                max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_UNPACKED_BYTES) -> None:
    """Extract `source` into `destination`, keeping executable bits.

    Rejects entries that would land outside `destination`, symbolic links, more than
    `max_entries` entries, more than `max_bytes` in all and bomb-like ratios. The byte count is
    enforced while writing, so a lying header cannot get past it.
    """
    try:
        archive = zipfile.ZipFile(source)
    except zipfile.BadZipFile as error:
        raise InvalidRequest(f"{what}: not a valid zip file ({error})") from None
    destination.mkdir(parents=True, exist_ok=True)
    with archive:
        members = archive.infolist()
        if len(members) > max_entries:
            raise PayloadTooLarge(f"{what}: {len(members)} entries, at most {max_entries} allowed")
        declared = sum(member.file_size for member in members)
        compressed = sum(member.compress_size for member in members)
        if declared > max_bytes:
            raise PayloadTooLarge(f"{what}: unpacks to {declared} bytes, at most {max_bytes} allowed")
        if declared > 64 * 1024**2 and declared > MAX_COMPRESSION_RATIO * max(compressed, 1):
            raise InvalidRequest(f"{what}: compression ratio is implausibly high (zip bomb?)")
        written = 0
        for member in members:
            relative = _member_path(member.filename, what)
            mode = member.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise InvalidRequest(f"{what} entry {member.filename!r}: symbolic links are not allowed")
            target = destination.joinpath(*relative.parts)
            if member.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as reader, target.open("wb") as sink:
                while chunk := reader.read(_COPY_CHUNK):
                    written += len(chunk)
                    if written > max_bytes:
                        raise PayloadTooLarge(f"{what}: unpacks to more than {max_bytes} bytes")
                    sink.write(chunk)
            if mode & 0o111:
                os.chmod(target, 0o755)
