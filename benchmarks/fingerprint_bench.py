"""Source-snapshot hashing speed, next to raw floors measured in the same run.

    .venv/bin/python benchmarks/fingerprint_bench.py [--size-mb 1024] [--files 64] [--small-files 10000]

Targets (BENCHMARKS): a 1 GB tree hashed cold at >= 500 MB/s; an unchanged 10,000-file tree
hashed warm (stat cache on disk, fresh process state) in < 0.3 s.

"Cold" means the page cache was dropped (`echo 1 > /proc/sys/vm/drop_caches`, needs root) before
the run; the table says whether that worked, and shows a raw read of the same files after a drop
so you can see the disk's own speed. Without root the "cold" rows are really page-cache reads.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from shared.source_snapshot import READ_SIZE, SourceHasher  # noqa: E402
from shared.stat_cache import RACY_WINDOW_NS  # noqa: E402

MB = 1 << 20


def drop_page_cache() -> bool:
    subprocess.run(["sync"], check=False)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
        return True
    except OSError:
        return False


def cached_kb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("Cached:"):
            return int(line.split()[1])
    return -1


def build_big_tree(root: Path, size_mb: int, files: int) -> int:
    per_file = size_mb * MB // files
    block = os.urandom(per_file)
    for index in range(files):
        # distinct contents per file without paying os.urandom for every byte
        (root / f"part-{index:03d}.bin").write_bytes(index.to_bytes(8, "little") + block[8:])
    return per_file * files


def build_small_tree(root: Path, count: int) -> None:
    for index in range(count):
        folder = root / f"pkg{index % 100:02d}"
        folder.mkdir(exist_ok=True)
        (folder / f"module_{index:05d}.py").write_text(f"VALUE = {index}\n" + "# padding\n" * (index % 200))


def raw_read(paths: list[Path], workers: int) -> None:
    def read(path: Path) -> None:
        buffer = bytearray(READ_SIZE)
        with open(path, "rb", buffering=0) as handle:
            while handle.readinto(buffer):
                pass

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(read, paths))


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def hashlib_in_memory(workers: int) -> float:
    """MB/s of sha256 over in-memory data with `workers` threads: the CPU ceiling."""
    data = os.urandom(64 * MB)
    rounds = 4 * workers
    with ThreadPoolExecutor(workers) as pool:
        seconds = timed(lambda: list(pool.map(lambda _: hashlib.sha256(data).digest(), range(rounds))))
    return rounds * 64 / seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--files", type=int, default=64)
    parser.add_argument("--small-files", type=int, default=10_000)
    parser.add_argument("--dir", type=Path, default=None, help="scratch folder (default: system temp)")
    args = parser.parse_args(argv)

    scratch = Path(tempfile.mkdtemp(prefix="mlpipe-fp-bench-", dir=args.dir))
    rows: list[tuple[str, str, str]] = []
    try:
        big = scratch / "big"
        big.mkdir()
        total = build_big_tree(big, args.size_mb, args.files)
        total_mb = total / MB
        files = sorted(big.iterdir())
        workers = SourceHasher().workers

        dropped = drop_page_cache()
        cached_after_drop = cached_kb()
        seconds = timed(lambda: raw_read(files, workers))
        rows.append((f"raw read floor, cold ({workers} threads, no hashing)", f"{total_mb / seconds:,.0f} MB/s",
                     f"{seconds:.2f} s"))
        seconds = timed(lambda: raw_read(files, workers))
        rows.append(("raw read, page cache", f"{total_mb / seconds:,.0f} MB/s", f"{seconds:.2f} s"))
        rows.append(("sha256 in memory, 1 thread", f"{hashlib_in_memory(1):,.0f} MB/s", ""))
        rows.append((f"sha256 in memory, {workers} threads", f"{hashlib_in_memory(workers):,.0f} MB/s", ""))

        drop_page_cache()
        snapshot = None

        def cold_hash():
            nonlocal snapshot
            snapshot = SourceHasher(None).hash_directory(big)

        seconds = timed(cold_hash)
        rows.append((f"**snapshot {total_mb:,.0f} MB / {args.files} files, cold** (target >= 500)",
                     f"**{total_mb / seconds:,.0f} MB/s**", f"{seconds:.2f} s"))
        seconds = timed(lambda: SourceHasher(None).hash_directory(big))
        rows.append(("snapshot same tree, page cache, no stat cache", f"{total_mb / seconds:,.0f} MB/s",
                     f"{seconds:.2f} s"))
        shutil.rmtree(big)

        small = scratch / "small"
        small.mkdir()
        build_small_tree(small, args.small_files)
        time.sleep(RACY_WINDOW_NS / 1e9 + 0.1)  # let the files age past the racy window
        cache_path = scratch / "cache" / "stat-cache.sqlite"
        drop_page_cache()
        seconds = timed(lambda: SourceHasher(cache_path).hash_directory(small))
        rows.append((f"{args.small_files:,} files, cold (empty stat cache)", f"{seconds:.3f} s", ""))
        warm_times = []
        for _ in range(5):
            hasher = SourceHasher(cache_path)  # new object: the cache is read from the SQLite file
            warm_times.append(timed(lambda hasher=hasher: hasher.hash_directory(small)))
            assert hasher.cache.misses == 0, f"warm run missed {hasher.cache.misses} files"
        rows.append((f"**{args.small_files:,} files, warm** (target < 0.3 s; median of 5)",
                     f"**{statistics.median(warm_times):.3f} s**", f"best {min(warm_times):.3f} s"))
        (small / "pkg00" / "module_00000.py").write_text("VALUE = -1\n")
        hasher = SourceHasher(cache_path)
        seconds = timed(lambda: hasher.hash_directory(small))
        rows.append((f"{args.small_files:,} files, warm, 1 file changed", f"{seconds:.3f} s",
                     f"{hasher.cache.misses} re-hashed"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    print(f"\nmachine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
          f"page cache drop: {'yes' if dropped else 'NO (not root?) - cold rows are page-cache reads'}"
          f" (Cached after drop: {cached_after_drop / 1024:,.0f} MB)\n")
    print("| measurement | rate / time | note |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
