"""scikit-learn's IsolationForest on the forest bench's data sets (run by bench/forest-bench.ts).

Usage: python sklearn-iforest.py <dir> <seeds> <throughput_rows>
Reads <dir>/<name>.csv (features..., label) for every name in <dir>/sets.json; writes JSON on
stdout: per set the mean ROC AUC over the seeds and the best fit time, and the scoring
throughput on throughput_rows standard-normal rows of 10 features (100 trees, 256 samples).
"""
import json
import sys
import time

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score


def main() -> None:
    folder, seeds, rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with open(f"{folder}/sets.json") as f:
        names = json.load(f)
    out = {"sklearn": __import__("sklearn").__version__, "sets": {}}
    for name in names:
        data = np.loadtxt(f"{folder}/{name}.csv", delimiter=",")
        x, y = data[:, :-1], data[:, -1]
        aucs, fits = [], []
        for seed in range(seeds):
            model = IsolationForest(n_estimators=100, max_samples=256, random_state=seed)
            t0 = time.perf_counter()
            model.fit(x)
            fits.append((time.perf_counter() - t0) * 1000)
            # score_samples is the negated paper score: higher is more normal.
            aucs.append(roc_auc_score(y, -model.score_samples(x)))
        out["sets"][name] = {"auc": float(np.mean(aucs)), "fit_ms": float(min(fits))}
    rng = np.random.default_rng(7)
    train = rng.standard_normal((10_000, 10))
    test = rng.standard_normal((rows, 10))
    model = IsolationForest(n_estimators=100, max_samples=256, random_state=0).fit(train)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        model.score_samples(test)
        best = min(best, time.perf_counter() - t0)
    out["throughput_rows_per_s"] = rows / best
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
