"""Fit a logistic regression on train.csv and save it as model.pkl."""

import argparse
import csv
import pickle
from pathlib import Path

from metrics import log_metric
from prep import FEATURES
from sklearn.linear_model import LogisticRegression


def load(path: Path):
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [[float(row[name]) for name in FEATURES] for row in rows], [row["species"] for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--regularization", type=float, default=1.0)
    parser.add_argument("--max-iter", type=int, default=500)
    args = parser.parse_args()

    features, labels = load(args.data / "train.csv")
    model = LogisticRegression(C=args.regularization, max_iter=args.max_iter)
    model.fit(features, labels)
    args.model.mkdir(parents=True, exist_ok=True)
    with (args.model / "model.pkl").open("wb") as handle:
        pickle.dump(model, handle)
    log_metric("train_accuracy", model.score(features, labels))
    print(f"train: fitted on {len(labels)} rows")


if __name__ == "__main__":
    main()
