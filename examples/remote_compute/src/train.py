"""Train on the features folder; write the model and a metric (MLPIPE_METRICS_FILE)."""
import argparse
import json
import os
import pathlib

parser = argparse.ArgumentParser()
parser.add_argument("--data")
parser.add_argument("--model")
args = parser.parse_args()
rows = [line for f in sorted(pathlib.Path(args.data).rglob("*")) if f.is_file() for line in f.read_text().splitlines()]
pathlib.Path(args.model, "model.json").write_text(json.dumps({"rows": len(rows)}))
with open(os.environ["MLPIPE_METRICS_FILE"], "a") as metrics:
    metrics.write(json.dumps({"name": "rows", "value": len(rows)}) + "\n")
