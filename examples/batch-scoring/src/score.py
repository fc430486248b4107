"""Score every CSV under --data with the pickled model under --model; one predictions CSV per input."""

import argparse
import csv
import json
import os
import pickle
from pathlib import Path

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def find_model(path: Path) -> Path:
    if path.is_file():
        return path
    found = sorted(path.rglob("model.pkl"))
    if not found:
        raise SystemExit(f"no model.pkl under {path}")
    return found[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    with find_model(args.model).open("rb") as handle:
        model = pickle.load(handle)  # noqa: S301 - our own model, written by examples/iris/src/train.py
    files = [args.data] if args.data.is_file() else sorted(args.data.rglob("*.csv"))
    if not files:
        raise SystemExit(f"no CSV files under {args.data}")
    args.out.mkdir(parents=True, exist_ok=True)
    scored = 0
    for path in files:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.DictReader(handle) if all(row.get(n) not in (None, "") for n in FEATURES)]
        predictions = model.predict([[float(row[n]) for n in FEATURES] for row in rows]) if rows else []
        relative = path.name if args.data.is_file() else str(path.relative_to(args.data))
        target = args.out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=FEATURES + ["prediction"])
            writer.writeheader()
            for row, label in zip(rows, predictions):
                writer.writerow({**{n: row[n] for n in FEATURES}, "prediction": label})
        scored += len(rows)
        print(f"score: {relative}: {len(rows)} rows")
    with open(os.environ["MLPIPE_METRICS_FILE"], "a", encoding="utf-8") as metrics:
        metrics.write(json.dumps({"name": "rows_scored", "value": scored}) + "\n")
        metrics.write(json.dumps({"name": "files_scored", "value": len(files)}) + "\n")


if __name__ == "__main__":
    main()
