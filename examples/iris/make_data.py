"""Write scikit-learn's bundled iris data set as CSV (the demo uploads it to the datastore)."""

import csv
import sys
from pathlib import Path

from sklearn.datasets import load_iris

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width", "species"]


def write_iris_csv(path: Path) -> Path:
    iris = load_iris()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for features, target in zip(iris.data, iris.target):
            writer.writerow([*map(float, features), iris.target_names[target]])
    return path


if __name__ == "__main__":
    print(write_iris_csv(Path(sys.argv[1] if len(sys.argv) > 1 else "iris.csv")))
