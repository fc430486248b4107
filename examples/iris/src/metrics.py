"""Log metrics the way mlpipe reads them: JSON lines in the file named by MLPIPE_METRICS_FILE."""

import json
import os


def log_metric(name: str, value: float) -> None:
    path = os.environ.get("MLPIPE_METRICS_FILE")
    if not path:
        print(f"metric {name}={value}")
        return
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps({"name": name, "value": float(value)}) + "\n")
