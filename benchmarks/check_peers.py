"""Smoke check: the three peer DINs train and predict on a small synthetic dataset in OUR column convention.

Run with the benchmark venv:  benchmarks/.venv/bin/python benchmarks/check_peers.py [--threads 1] [--json PATH]

Synthetic task: items 2..n_items+1, each with a fixed category; every row has a random history of 1..L items
(most recent first, right-padded with 0). Label 1 rows draw the candidate's category from the history with
probability 0.8, label 0 rows with probability 0.2 (otherwise a uniformly random category), so
"candidate category occurs in the history" is a strong signal (reported as a heuristic baseline AUC).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault(
    "TQDM_DISABLE", "1"
)  # rechub's trainer draws tqdm bars; keep the output readable

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402


def make_data(
    n_rows, *, L=50, n_users=1000, n_items=4000, n_cates=200, seed=0, p_pos=0.8, p_neg=0.2
):
    rng = np.random.default_rng(seed)
    item_cate = np.zeros(n_items + 2, dtype=np.int64)
    items = np.arange(2, n_items + 2)
    item_cate[items] = 2 + (items - 2) % n_cates
    per_cate = n_items // n_cates

    hist_len = rng.integers(1, L + 1, size=n_rows)
    hist_item = rng.integers(2, n_items + 2, size=(n_rows, L))
    hist_item[np.arange(L)[None, :] >= hist_len[:, None]] = 0
    hist_cate = item_cate[hist_item]  # item 0 -> category 0 (padding)
    label = rng.integers(0, 2, size=n_rows)

    p_from_hist = np.where(label == 1, p_pos, p_neg)
    from_hist = rng.random(n_rows) < p_from_hist
    pick = (rng.random(n_rows) * hist_len).astype(np.int64)
    cate = np.where(
        from_hist, hist_cate[np.arange(n_rows), pick], rng.integers(2, n_cates + 2, size=n_rows)
    )
    item = 2 + (cate - 2) + n_cates * rng.integers(0, per_cate, size=n_rows)
    assert np.all(item_cate[item] == cate)
    return {
        "user_id": rng.integers(2, n_users + 2, size=n_rows).astype(np.int64),
        "item_id": item.astype(np.int64),
        "cate_id": cate.astype(np.int64),
        "hist_item_id": hist_item.astype(np.int64),
        "hist_cate_id": hist_cate.astype(np.int64),
        "hist_len": hist_len.astype(np.int64),
        "label": label.astype(np.int64),
    }


def heuristic_auc(data):
    from sklearn.metrics import roc_auc_score

    hit = (data["hist_cate_id"] == data["cate_id"][:, None]).any(axis=1).astype(float)
    return roc_auc_score(data["label"], hit)


def make_log(n_rows, *, n_users=2000, n_items=20000, n_cates=100, seed=0):
    rng = np.random.default_rng(seed)
    item = rng.integers(0, n_items, size=n_rows)
    return pd.DataFrame(
        {
            "user_id": rng.integers(0, n_users, size=n_rows),
            "item_id": item,
            "time": rng.integers(1_300_000_000, 1_400_000_000, size=n_rows),
            "cate_id": item % n_cates,
        }
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=5000)
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--L", type=int, default=50)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument(
        "--log-rows",
        type=int,
        default=100_000,
        help="rows of the raw log for create_seq_features (0: skip)",
    )
    ap.add_argument(
        "--json", default=None, help="write the numbers (without test_proba) to this file"
    )
    args = ap.parse_args(argv)

    import torch

    data = make_data(args.n_train + args.n_test, L=args.L, seed=0)
    train = {k: v[: args.n_train] for k, v in data.items()}
    test = {k: v[args.n_train :] for k, v in data.items()}
    print(
        f"torch {torch.__version__}, threads={args.threads}, train={args.n_train}, test={args.n_test}, "
        f"L={args.L}, epochs={args.epochs}, batch={args.batch_size}, lr={args.lr}, mean hist_len={data['hist_len'].mean():.1f}"
    )
    print(f"heuristic 'candidate category in history' test AUC: {heuristic_auc(test):.4f}")

    common = dict(
        embed_dim=8,
        attention_units=(256, 128),
        hidden_units=(256, 128),
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=0,
        n_threads=args.threads,
    )
    results = {}
    for name, fn in [
        ("torch-rechub", peers.fit_predict_rechub_din),
        ("deepctr-torch", peers.fit_predict_deepctr_din),
        ("fuxictr", peers.fit_predict_fuxictr_din),
    ]:
        t0 = time.perf_counter()
        try:
            results[name] = fn(train, test, **common)
        except Exception as exc:  # report, keep going
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        results[name]["wall_seconds"] = time.perf_counter() - t0

    hdr = f"{'peer':<15}{'train rows/s':>14}{'s/epoch':>10}{'pred rows/s':>13}{'test AUC':>10}{'peak RSS MB':>13}{'wall s':>8}"
    print(hdr)
    print("-" * len(hdr))
    for name, r in results.items():
        if "error" in r:
            print(f"{name:<15} FAILED: {r['error']}")
            continue
        print(
            f"{name:<15}{r['train_rows_per_s']:>14,.0f}{np.median(r['train_seconds_per_epoch']):>10.2f}"
            f"{r['predict_rows_per_s']:>13,.0f}{r['test_auc']:>10.4f}"
            f"{(r['peak_rss_mb'] or float('nan')):>13.0f}{r['wall_seconds']:>8.1f}"
        )

    if args.log_rows:
        log = make_log(args.log_rows)
        before = log.copy()
        secs, (tr, va, te) = peers.time_rechub_create_seq_features(
            log, max_len=50, return_output=True
        )
        assert log.equals(before), "input log was mutated"
        print(
            f"torch_rechub create_seq_features on a {args.log_rows:,}-row log: {secs:.2f} s "
            f"({args.log_rows / secs:,.0f} log rows/s); out train/val/test rows = {len(tr):,}/{len(va):,}/{len(te):,}"
        )
        results["create_seq_features"] = {
            "log_rows": args.log_rows,
            "seconds": secs,
            "rows": [len(tr), len(va), len(te)],
        }

    if args.json:
        slim = {
            k: {kk: vv for kk, vv in v.items() if kk != "test_proba"} for k, v in results.items()
        }
        with open(args.json, "w") as f:
            json.dump(slim, f, indent=2, default=str)
    failed = [n for n, r in results.items() if "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
