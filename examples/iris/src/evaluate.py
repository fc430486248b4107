"""Score the model on test.csv; write report.json and log accuracy."""

import argparse
import json
import pickle
from pathlib import Path

from metrics import log_metric
from train import load


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True)
    args = parser.parse_args()

    with (args.model / "model.pkl").open("rb") as handle:
        model = pickle.load(handle)
    features, labels = load(args.data / "test.csv")
    accuracy = model.score(features, labels)
    args.report.mkdir(parents=True, exist_ok=True)
    (args.report / "report.json").write_text(json.dumps({"accuracy": accuracy, "test_rows": len(labels)}, indent=2))
    log_metric("accuracy", accuracy)
    print(f"evaluate: accuracy {accuracy:.3f} on {len(labels)} rows")


if __name__ == "__main__":
    main()
