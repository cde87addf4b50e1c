#!/usr/bin/env python3
"""scikit-learn on the rows `train_bench --dump` wrote: the speed peer of
liveseg's propensity training (BENCHMARKS.md, "Propensity models").

It runs the same pipeline `train_propensity` runs, on the same rows and the
same time split: standardise on the training fold, L2 logistic regression
(C = 1 / l2 = 1.0, lbfgs), Platt calibration fitted on the calibration
fold, AUC on the validation fold. Run through scripts/bench-train-peer.sh,
which times both in one run.

The dump: u64 rows, u64 features, then rows*features f32 (row-major), then
rows u8 labels, little-endian.
"""
import sys
import time

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler


def main(path: str) -> None:
    raw = open(path, "rb").read()
    rows, dim = np.frombuffer(raw[:16], dtype="<u8")
    rows, dim = int(rows), int(dim)
    x = np.frombuffer(raw[16 : 16 + rows * dim * 4], dtype="<f4").reshape(rows, dim)
    y = np.frombuffer(raw[16 + rows * dim * 4 :], dtype="u1")[:rows].astype(np.int8)
    train_end, cal_end = int(rows * 0.7), int(rows * 0.85)
    started = time.perf_counter()
    scaler = StandardScaler().fit(x[:train_end])
    xt = scaler.transform(x)
    model = LogisticRegression(C=1.0, solver="lbfgs", max_iter=200, tol=1e-6)
    model.fit(xt[:train_end], y[:train_end])
    logit = model.decision_function(xt)
    platt = LogisticRegression(C=1e6, solver="lbfgs")
    platt.fit(logit[train_end:cal_end, None], y[train_end:cal_end])
    p = platt.predict_proba(logit[cal_end:, None])[:, 1]
    auc = roc_auc_score(y[cal_end:], p)
    took = time.perf_counter() - started
    print(
        f"scikit-learn {__import__('sklearn').__version__}: {took:.2f}s "
        f"({train_end} train rows, lbfgs {model.n_iter_[0]} iterations); validation AUC {auc:.4f}"
    )


if __name__ == "__main__":
    main(sys.argv[1])
