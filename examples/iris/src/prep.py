"""Read every CSV under --raw, drop incomplete rows, split into train/test CSV files."""

import argparse
import csv
import random
from pathlib import Path

from metrics import log_metric

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def read_rows(raw: Path) -> list[dict]:
    files = [raw] if raw.is_file() else sorted(raw.rglob("*.csv"))
    if not files:
        raise SystemExit(f"no CSV files under {raw}")
    rows = []
    for path in files:
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if all(row.get(name) not in (None, "") for name in FEATURES + ["species"]):
                    rows.append({**{name: float(row[name]) for name in FEATURES}, "species": row["species"]})
    return rows


def write_rows(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=FEATURES + ["species"])
        writer.writeheader()
        writer.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--raw", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--test-fraction", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    rows = read_rows(args.raw)
    random.Random(args.seed).shuffle(rows)
    cut = int(len(rows) * (1 - args.test_fraction))
    args.out.mkdir(parents=True, exist_ok=True)
    write_rows(args.out / "train.csv", rows[:cut])
    write_rows(args.out / "test.csv", rows[cut:])
    log_metric("rows", len(rows))
    print(f"prep: {len(rows)} rows -> {cut} train, {len(rows) - cut} test")


if __name__ == "__main__":
    main()
