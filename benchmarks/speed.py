"""Training and prediction speed: sklearn-din vs torch-rechub and DeepCTR-Torch, one run.

Side by side, on the same rows and the same model sizes (embedding 8, history 50,
batch 1024, Adam lr 1e-3, the stated thread count):

* the tutorial's sizes: attention MLP (256, 128), output MLP (256, 128);
* the paper's sizes:    attention MLP (80, 40),   output MLP (200, 80).

Data:

* ``synthetic``: a generated log (``make_interactions``: a geometric number of clicks
  per user, mean 20, so the mean history is about 15 of 50), one sampled negative per
  click, split per user by time (last event test, the one before validation, the rest
  training). Its training split is cut to ``--rows`` rows (1,000,000 by default).
* ``amazon-beauty``: /work/shared/data/amazon-beauty/interactions.csv, same protocol.

The peers train at a few hundred to a few thousand rows a second, so full epochs over a
million rows are out of reach for them. The side-by-side table therefore uses a FIXED
SUBSAMPLE of each data set (all rows of randomly chosen users, about ``--n-train``
training rows) on which every system runs ``--epochs`` epochs; sklearn-din alone is then
timed on the full ``--rows``-row training set (``--full-epochs`` epochs), and that run's
peak RSS is the memory measurement. Every system run is a fresh subprocess (clean RSS),
one at a time; within each (data set, sizes) the order is sklearn-din, torch-rechub,
DeepCTR-Torch, sklearn-din again, so that a change in the machine's load during the run
shows up in sklearn-din's two runs instead of in the ratios.

What is timed:

* history building: sklearn-din = ``sample_negatives`` + ``leave_last_out_split`` +
  ``SequenceFeatureTransformer`` fit/transform of train, ``partial_fit`` with the
  validation clicks, transform of test; torch-rechub = ``create_seq_features`` on the same
  log (negatives, split and histories in one call); DeepCTR-Torch has no history builder.
* train rows/s: median over epochs (sklearn-din: skorch's ``history[:, 'dur']``; the peers:
  ``benchmarks/peers.py``, wall clock around each epoch). The first epoch of every system
  includes its warm-up; the median of the epochs (of both sklearn-din runs) damps it.
* predict rows/s: on the same prediction rows for every system (side by side: the test rows
  followed by the training rows, so that the timing covers enough rows; the full-size run:
  the test rows); sklearn-din ``predict_proba`` on the DataFrame (median of 3 calls), the
  peers' predict (one call, as ``peers.py`` does). AUC is computed on the test rows only.
* peak RSS: the worker process's peak while training and predicting (sampled at 20 Hz,
  as ``peers.py`` does); the full-size run reports the kernel's high-water mark.
* test AUC after the same number of epochs, on the same test rows.
* the machine's fp32 matmul GFLOP/s (torch, the same thread count, before and after the
  systems run) and the achieved GFLOP/s of sklearn-din's training, counting analytically
  only non-padding work: per real history position the attention MLP on its 4D input,
  per row the output MLP, backward = 2x forward (so 3x the forward FLOPs a step). Dice,
  embeddings, the optimizer and sklearn-din's own factorisation of the first attention
  layer (which does fewer FLOPs than this count) are not counted.
* where sklearn-din's training time goes: ``torch.profiler`` over one epoch on the synthetic
  subsample (after a warm-up epoch), the ops with the most self CPU time.

Every worker process first runs one tiny Adam step, so torch's one-time lazy imports (about
2 s here) are paid before any timing, by every system alike.

Run in the benchmark environment (peers installed)::

    benchmarks/.venv/bin/python benchmarks/speed.py --threads 1          # ~20 minutes
    benchmarks/.venv/bin/python benchmarks/speed.py --quick              # 1-2 minute smoke run
    benchmarks/.venv/bin/python benchmarks/speed.py --sizes tutorial --skip-peers

Prints a table and PASS/MISS for each target; writes benchmarks/results/speed.md and
benchmarks/results/speed.json (``--out-dir`` to change).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("TQDM_DISABLE", "1")  # torch-rechub's trainer draws tqdm bars

from sklearn_din import SequenceFeatureTransformer  # noqa: E402
from sklearn_din.datasets import (  # noqa: E402
    leave_last_out_split,
    make_interactions,
    sample_negatives,
)

RESULTS = HERE / "results"
BEAUTY_CSV = Path("/work/shared/data/amazon-beauty/interactions.csv")
LOG_COLUMNS = ["user_id", "item_id", "time", "cate_id"]
HISTORY_COLS = ("item_id", "cate_id")
MAX_LEN = 50
EMBED_DIM = 8
BATCH_SIZE = 1024
LR = 1e-3
SIZES = {
    "tutorial": {"attention_units": (256, 128), "hidden_units": (256, 128)},
    "paper": {"attention_units": (80, 40), "hidden_units": (200, 80)},
}
SYSTEMS = {"sklearn-din": "ours", "torch-rechub": "rechub", "DeepCTR-Torch": "deepctr"}
PEER_LABEL = {"rechub": "torch-rechub 0.9.0", "deepctr": "DeepCTR-Torch 0.3.0"}

# Targets of the issue (ratios from one run, same machine, same threads).
TRAIN_VS_RECHUB = 10.0
TRAIN_VS_DEEPCTR = 3.0
PREDICT_VS_PEERS = 10.0
MATMUL_FRACTION = 0.5
RSS_VS_INTS = 2.0


# ======================================================================================
# FLOP count and matmul rate
# ======================================================================================
def forward_flops(size: str, hist_len_sum: int, n_rows: int, *, n_hist_features: int = 2,
                  n_sparse: int = 1, n_dense: int = 0) -> float:
    """Forward multiply-add FLOPs (2 per MAC) of the non-padding work of ``n_rows`` rows.

    Attention MLP per real history position on its 4D input [q, k, q-k, q*k] (D = the
    concatenated item embedding) with a linear score; output MLP per row on
    [candidate, pooled history, user embedding, dense] with a linear output.
    """
    item_dim = EMBED_DIM * n_hist_features
    att = [4 * item_dim, *SIZES[size]["attention_units"], 1]
    mlp = [2 * item_dim + EMBED_DIM * n_sparse + n_dense, *SIZES[size]["hidden_units"], 1]
    per_position = sum(2 * a * b for a, b in zip(att, att[1:], strict=False))
    per_row = sum(2 * a * b for a, b in zip(mlp, mlp[1:], strict=False))
    return float(per_position) * hist_len_sum + float(per_row) * n_rows


def peer_forward_flops(system: str, size: str, n_rows: int, *, n_hist_features: int = 2) -> float:
    """Forward FLOPs of a peer's DIN on ``n_rows`` rows, by its own structure.

    Both peers score every one of the ``MAX_LEN`` positions, padding included.
    torch-rechub runs one activation unit PER history feature, each on [q, k, q-k, q*k]
    of that feature's embedding; DeepCTR-Torch one unit on the concatenated item
    embedding. Output MLP of both: user + candidate + pooled history embeddings.
    """
    units = SIZES[size]
    if system == "rechub":
        att, n_units = [4 * EMBED_DIM, *units["attention_units"], 1], n_hist_features
    else:
        att, n_units = [4 * EMBED_DIM * n_hist_features, *units["attention_units"], 1], 1
    mlp = [EMBED_DIM * (1 + 2 * n_hist_features), *units["hidden_units"], 1]
    per_position = n_units * sum(2 * a * b for a, b in zip(att, att[1:], strict=False))
    per_row = sum(2 * a * b for a, b in zip(mlp, mlp[1:], strict=False))
    return float(per_position * MAX_LEN + per_row) * n_rows


def work_per_row_md(report: dict) -> list[str]:
    """Predict work per row and the rate each system achieves on it (side-by-side runs).

    The predict ratio is the product of two factors: how much less work sklearn-din does
    per row (no padding, one activation unit) and how much faster it runs that work.
    """
    lines = [
        "### Predict: work per row and achieved rate",
        "",
        "Forward FLOPs per predicted row, counted analytically from each system's structure "
        "(`forward_flops` / `peer_forward_flops`: sklearn-din only real history positions, "
        "the peers all 50 positions, torch-rechub with one activation unit per history "
        "feature), and the GFLOP/s each system reaches on that count while predicting.",
        "",
        "| data | sizes | system | MFLOP per row | work vs sklearn-din | predict GFLOP/s |"
        " efficiency vs sklearn-din | predict speed-up = work x efficiency |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for entry in report["side_by_side"]:
        meta = report["datasets"][entry["dataset"]]
        ours = entry["ours"]
        if "test_hist_len_sum" not in meta or "error" in ours:
            return []
        n_pred = entry["n_predict"]
        ours_flops = forward_flops(entry["size"], meta["hist_len_sum"] + meta["test_hist_len_sum"],
                                   n_pred) / n_pred
        ours_rate = ours_flops * ours["predict_rows_per_s"] / 1e9
        lines.append(f"| {entry['dataset']} | {entry['size']} | sklearn-din | "
                     f"{ours_flops / 1e6:.2f} | 1.0x | {ours_rate:.1f} | 1.0x | 1.0x |")
        for system in ("rechub", "deepctr"):
            r = entry.get(system)
            if r is None or "error" in r:
                continue
            flops = peer_forward_flops(system, entry["size"], n_pred) / n_pred
            rate = flops * r["predict_rows_per_s"] / 1e9
            lines.append(
                f"| {entry['dataset']} | {entry['size']} | {PEER_LABEL[system]} | "
                f"{flops / 1e6:.2f} | {flops / ours_flops:.1f}x | {rate:.1f} | "
                f"{ours_rate / rate:.2f}x | "
                f"{ours['predict_rows_per_s'] / r['predict_rows_per_s']:.1f}x |")
    return [*lines, ""]


def train_flops(size: str, hist_len_sum: int, n_rows: int) -> float:
    """One training pass: forward + backward (2x forward)."""
    return 3.0 * forward_flops(size, hist_len_sum, n_rows)


def measure_matmul(threads: int, n: int, repeats: int) -> dict:
    """fp32 GFLOP/s of torch matmul: an n x n square product (the machine's practical
    limit) and the shape of the tutorial attention MLP's second layer (16384 positions)."""
    import torch

    torch.set_num_threads(threads)
    out = {"threads": threads}
    for name, (m, k, p) in {"square": (n, n, n), "attention_layer": (16384, 256, 128)}.items():
        a, b = torch.randn(m, k), torch.randn(k, p)
        a @ b  # warm-up
        best = math.inf
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - start)
        out[f"{name}_shape"] = [m, k, p]
        out[f"{name}_gflops"] = 2.0 * m * k * p / best / 1e9
    return out


# ======================================================================================
# data
# ======================================================================================
def synthetic_log(train_rows: int, seed: int) -> pd.DataFrame:
    """A make_interactions log whose training split has a little more than ``train_rows`` rows.

    With one negative per click, a user with e >= 3 clicks gives 2 (e - 2) training rows;
    make_interactions draws e from 2 + geometric(1/19) (mean 20).
    """
    expected_per_user = 2 * 18.0
    n_users = int(train_rows / expected_per_user * 1.05) + 20
    return make_interactions(n_users=n_users, n_items=max(2_000, n_users // 3),
                             n_categories=50, random_state=seed)


def beauty_log() -> pd.DataFrame:
    log = pd.read_csv(BEAUTY_CSV)
    return log[LOG_COLUMNS]


def subsample_users(log: pd.DataFrame, train_rows: int, seed: int) -> pd.DataFrame:
    """All rows of random users, about ``train_rows`` training rows after negatives and split."""
    events = log.groupby("user_id")["time"].nunique()
    clicks = log.groupby("user_id").size()
    # Training clicks: all but the last event (test) and the one before it (validation).
    dense_rank = log.groupby("user_id")["time"].rank(method="dense", ascending=False)
    last = (dense_rank == 1).groupby(log["user_id"]).sum()
    second = (dense_rank == 2).groupby(log["user_id"]).sum()
    train_clicks = clicks - (events >= 2) * last - (events >= 3) * second
    order = np.random.default_rng(seed).permutation(len(events))
    cumulative = np.cumsum(2 * train_clicks.to_numpy()[order])
    n_users = int(np.searchsorted(cumulative, train_rows)) + 1
    chosen = events.index.to_numpy()[order[:n_users]]
    return log[log["user_id"].isin(chosen)].reset_index(drop=True)


def build_ours(log: pd.DataFrame, seed: int) -> tuple[dict, float]:
    """sklearn-din's equivalent of create_seq_features: negatives, split, histories. Timed."""
    start = time.perf_counter()
    rows = sample_negatives(log, n_negatives=1, random_state=seed)
    train, valid, test = leave_last_out_split(rows)
    xtr, ytr = train.drop(columns="label"), train["label"].to_numpy()
    xva, yva = valid.drop(columns="label"), valid["label"].to_numpy()
    xte, yte = test.drop(columns="label"), test["label"].to_numpy()
    split_s = time.perf_counter() - start
    features = SequenceFeatureTransformer(history_cols=HISTORY_COLS, max_len=MAX_LEN)
    features.fit(xtr, ytr)
    out_train = features.transform(xtr)
    features.partial_fit(xva, yva)
    out_test = features.transform(xte)
    seconds = time.perf_counter() - start
    data = {"train": out_train, "y_train": ytr, "test": out_test, "y_test": yte,
            "negatives_split_s": split_s, "transformer_s": seconds - split_s}
    return data, seconds


def time_rechub_builder(log: pd.DataFrame, seed: int) -> float | str:
    try:
        from peers import time_rechub_create_seq_features

        return time_rechub_create_seq_features(log, max_len=MAX_LEN, seed=seed)
    except Exception as exc:  # report, keep going
        return f"failed: {type(exc).__name__}: {exc}"


def save_dataset(data: dict, directory: Path, n_train: int | None = None) -> dict:
    """Write the transformed arrays as .npy (one int32 block per split) for the workers."""
    directory.mkdir(parents=True, exist_ok=True)
    train, y_train = data["train"], data["y_train"]
    if n_train is not None:
        train, y_train = train.iloc[:n_train], y_train[:n_train]
    for name, frame, y in (("train", train, y_train), ("test", data["test"], data["y_test"])):
        block = frame.to_numpy()
        assert block.dtype == np.int32, block.dtype
        np.save(directory / f"{name}_X.npy", block)
        np.save(directory / f"{name}_y.npy", np.asarray(y).astype(np.int8))
    (directory / "columns.json").write_text(json.dumps([str(c) for c in train.columns]))
    hist_len = train["hist_len"].to_numpy()
    return {
        "dir": str(directory),
        "n_train": int(len(train)),
        "n_test": int(len(data["test"])),
        "train_pos_rate": float(np.mean(y_train)),
        "hist_len_sum": int(hist_len.sum()),
        "test_hist_len_sum": int(data["test"]["hist_len"].to_numpy().sum()),
        "mean_hist_len": float(hist_len.mean()),
        "share_full_history": float(np.mean(hist_len == MAX_LEN)),
        "train_int_bytes": int(train.memory_usage(index=False).sum() + len(y_train)),
    }


# ======================================================================================
# workers (one subprocess per system run)
# ======================================================================================
def _load(directory: Path, split: str) -> tuple[pd.DataFrame, np.ndarray]:
    columns = json.loads((directory / "columns.json").read_text())
    block = np.load(directory / f"{split}_X.npy")
    return pd.DataFrame(block, columns=columns, copy=False), np.load(directory / f"{split}_y.npy")


def _peer_dict(frame: pd.DataFrame, y: np.ndarray) -> dict:
    out = {k: frame[k].to_numpy(np.int64) for k in ("user_id", "item_id", "cate_id")}
    for f in HISTORY_COLS:
        out[f"hist_{f}"] = frame[[f"hist_{f}_{k}" for k in range(MAX_LEN)]].to_numpy(np.int64)
    out["hist_len"] = frame["hist_len"].to_numpy(np.int64)
    out["label"] = np.asarray(y, dtype=np.int64)
    return out


def source_digest() -> str:
    """Short hash of sklearn_din's source files: shows whether the code changed during a run
    (every worker imports the package afresh from the working tree)."""
    import hashlib

    import sklearn_din

    digest = hashlib.sha1()
    for path in sorted(Path(sklearn_din.__file__).parent.rglob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def _rss_now_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _warm_torch() -> None:
    """Pay torch's one-time lazy imports (the first optimizer step pulls in ~2 s of modules on
    this machine) before any timing, for every system alike."""
    import torch

    layer = torch.nn.Linear(4, 1)
    optimizer = torch.optim.Adam(layer.parameters())
    layer(torch.ones(2, 4)).sum().backward()
    optimizer.step()


def worker(spec: dict) -> dict:
    import torch
    from sklearn.metrics import roc_auc_score

    torch.set_num_threads(spec["threads"])
    directory = Path(spec["data"])
    system, size = spec["system"], spec["size"]
    units = SIZES[size]
    if system == "rechub":
        import torch_rechub.models.ranking  # noqa: F401
        import torch_rechub.trainers  # noqa: F401
    elif system == "deepctr":
        import deepctr_torch.models  # noqa: F401
    _warm_torch()
    baseline_rss = _rss_now_mb()  # interpreter + libraries, before the data
    X, y = _load(directory, "train")
    X_test, y_test = _load(directory, "test")
    loaded_rss = _rss_now_mb()
    loaded_maxrss = _maxrss_mb()
    if system == "profile":
        return {**profile_epoch(X, y, units, spec), "source_digest": source_digest()}
    n_test = len(y_test)
    # Prediction set: the test rows, then (side by side) the training rows too, so that the
    # predict timing covers enough rows to be stable; AUC is on the test rows only.
    if spec.get("predict_on") == "test+train":
        X_pred = pd.concat([X_test, X], ignore_index=True)
        y_pred = np.concatenate([y_test, y])
    else:
        X_pred, y_pred = X_test, y_test

    if system == "ours":
        from peers import _PeakRSS

        from sklearn_din import DINClassifier

        clf = DINClassifier(
            embed_dim=EMBED_DIM, attention_units=units["attention_units"],
            hidden_units=units["hidden_units"], max_epochs=spec["epochs"],
            batch_size=BATCH_SIZE, lr=LR, verbose=0, train_split=None,
            random_state=spec["seed"],
        )
        with _PeakRSS() as rss:
            start = time.perf_counter()
            clf.fit(X, y)
            fit_s = time.perf_counter() - start
            fit_maxrss = _maxrss_mb()
            predict_s, proba = [], None
            for _ in range(spec.get("predict_repeats", 3)):
                start = time.perf_counter()
                proba = clf.predict_proba(X_pred)[:, 1]
                predict_s.append(time.perf_counter() - start)
        epoch_s = [float(s) for s in clf.history[:, "dur"]]
        result = {
            "train_seconds_per_epoch": epoch_s,
            "train_rows_per_s": float(np.median([len(X) / s for s in epoch_s])),
            "fit_wall_s": fit_s,
            "predict_seconds_all": predict_s,
            "predict_seconds": float(np.median(predict_s)),
            "predict_rows_per_s": float(len(X_pred) / np.median(predict_s)),
            "test_auc": float(roc_auc_score(y_test, proba[:n_test])),
            "peak_rss_mb": rss.mb,
            "fit_maxrss_mb": fit_maxrss,
            "final_train_loss": float(clf.history[-1, "train_loss"]),
        }
    else:
        import peers

        fn = peers.fit_predict_rechub_din if system == "rechub" else peers.fit_predict_deepctr_din
        train, test = _peer_dict(X, y), _peer_dict(X_pred, y_pred)
        del X, X_test, X_pred
        out = fn(train, test, embed_dim=EMBED_DIM, attention_units=units["attention_units"],
                 hidden_units=units["hidden_units"], epochs=spec["epochs"],
                 batch_size=BATCH_SIZE, lr=LR, seed=spec["seed"], n_threads=spec["threads"])
        result = {k: v for k, v in out.items() if k not in ("test_proba", "test_auc", "n_test")}
        result["test_auc"] = float(roc_auc_score(y_test, out["test_proba"][:n_test]))
        result["fit_maxrss_mb"] = None
    result.update({"system": system, "size": size, "n_train": int(len(y)),
                   "n_test": int(n_test), "n_predict": int(len(y_pred)),
                   "source_digest": source_digest(),
                   "baseline_rss_mb": baseline_rss,
                   "loaded_rss_mb": loaded_rss,
                   "loaded_maxrss_mb": loaded_maxrss, "maxrss_mb": _maxrss_mb(),
                   "torch_threads": torch.get_num_threads()})
    return result


MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear")


def profile_epoch(X: pd.DataFrame, y: np.ndarray, units: dict, spec: dict) -> dict:
    """torch.profiler over one sklearn-din training epoch (after a warm-up epoch): the ops
    with the most self CPU time, and the share of matrix multiplications."""
    from torch.profiler import ProfilerActivity, profile

    from sklearn_din import DINClassifier

    clf = DINClassifier(
        embed_dim=EMBED_DIM, attention_units=units["attention_units"],
        hidden_units=units["hidden_units"], max_epochs=1, batch_size=BATCH_SIZE, lr=LR,
        verbose=0, train_split=None, random_state=spec["seed"],
    )
    clf.fit(X, y)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        clf.partial_fit(X, y)
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return {
        "system": "profile", "size": spec["size"], "n_train": int(len(y)),
        "epoch_s": float(clf.history[-1, "dur"]),
        "aten_self_s": total / 1e6,
        "matmul_share": sum(e.self_cpu_time_total for e in events if e.key in MATMUL_OPS) / total,
        "top_ops": [{"op": e.key, "share": e.self_cpu_time_total / total, "calls": e.count}
                    for e in events[:12]],
    }


def run_worker(spec: dict, workdir: Path, timeout: float | None) -> dict:
    """Run one system in a fresh process; its JSON result, or {"error": ...}."""
    spec_path = workdir / f"spec_{spec['tag']}.json"
    out_path = workdir / f"result_{spec['tag']}.json"
    spec_path.write_text(json.dumps(spec))
    threads = str(spec["threads"])
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
           "OPENBLAS_NUM_THREADS": threads, "TQDM_DISABLE": "1", "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--worker", str(spec_path),
             "--worker-out", str(out_path)],
            env=env, capture_output=True, text=True, timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s", "wall_s": time.perf_counter() - start}
    wall = time.perf_counter() - start
    if proc.returncode != 0 or not out_path.exists():
        tail = (proc.stderr or proc.stdout)[-2000:]
        return {"error": f"exit {proc.returncode}: {tail}", "wall_s": wall}
    result = json.loads(out_path.read_text())
    result["wall_s"] = wall
    return result


# ======================================================================================
# reporting
# ======================================================================================
def auc_se(auc: float, n_pos: int, n_neg: int) -> float:
    """Hanley & McNeil (1982) standard error of an AUC."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)
    return float(math.sqrt(max(var, 0.0) / max(n_pos * n_neg, 1)))


def combine_ours(runs: list[dict]) -> dict:
    """sklearn-din's runs of one configuration (alternated around the peers) as one entry."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[0]
    epochs = [s for r in ok for s in r["train_seconds_per_epoch"]]
    n = ok[0]["n_train"]
    out = dict(ok[0])
    out["train_rows_per_s"] = float(np.median([n / s for s in epochs]))
    out["train_rows_per_s_runs"] = [r["train_rows_per_s"] for r in ok]
    out["predict_rows_per_s"] = float(np.median([r["predict_rows_per_s"] for r in ok]))
    out["predict_rows_per_s_runs"] = [r["predict_rows_per_s"] for r in ok]
    out["peak_rss_mb"] = max(r["peak_rss_mb"] or 0 for r in ok)
    out["test_auc_runs"] = [r["test_auc"] for r in ok]
    return out


def fmt(value: object, spec: str = ",.0f") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, str):
        return value
    return format(value, spec)


def machine_info(threads: int) -> dict:
    import sklearn
    import skorch
    import torch

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, text=True,
                             capture_output=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "sklearn_din"], cwd=HERE.parent,
                               text=True, capture_output=True, timeout=10).stdout.strip()
        git = f"{rev}{' with uncommitted changes in sklearn_din/' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        git = "unknown"
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "git": git,
        "source_digest": source_digest(),
        "cpu_model": cpu,
        "cores_available": len(os.sched_getaffinity(0)),
        "threads": threads,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "skorch": skorch.__version__,
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "load_average_at_start": load,
    }


# ======================================================================================
# main
# ======================================================================================
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--threads", type=int, default=1, help="torch threads of every system")
    p.add_argument("--quick", action="store_true",
                   help="1-2 minute smoke run: tiny data, tutorial sizes only unless --sizes, one "
                        "sklearn-din run per configuration; the numbers are not measurements")
    p.add_argument("--sizes", default=None,
                   help="comma list of tutorial,paper (default both; --quick: tutorial)")
    p.add_argument("--skip-peers", action="store_true", help="time sklearn-din only")
    p.add_argument("--datasets", default="synthetic,amazon-beauty",
                   help="comma list of synthetic,amazon-beauty")
    p.add_argument("--rows", type=int, default=None,
                   help="training rows of the full synthetic run (default 1,000,000; quick 5,000)")
    p.add_argument("--n-train", type=int, default=None,
                   help="training rows of the side-by-side subsample (default 20,000; quick 600)")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs of the side-by-side runs (default 2; quick 2)")
    p.add_argument("--full-epochs", type=int, default=1, help="epochs of the full-size run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--worker-timeout", type=float, default=None, help="seconds per system run")
    p.add_argument("--no-profile", action="store_true",
                   help="skip the torch.profiler breakdown of a sklearn-din training epoch")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    p.add_argument("--render-from", type=Path, default=None, metavar="JSON",
                   help="only re-write the markdown (into --out-dir) from an earlier speed.json")
    p.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker-out", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.rows is None:
        args.rows = 5_000 if args.quick else 1_000_000
    if args.n_train is None:
        args.n_train = 600 if args.quick else 20_000
    if args.epochs is None:
        args.epochs = 2
    if args.sizes is None:
        args.sizes = "tutorial" if args.quick else "tutorial,paper"
    args.sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    bad = [s for s in args.sizes if s not in SIZES]
    if bad:
        p.error(f"--sizes: unknown {bad}; choose from {list(SIZES)}")
    args.datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    bad = [d for d in args.datasets if d not in ("synthetic", "amazon-beauty")]
    if bad:
        p.error(f"--datasets: unknown {bad}")
    return args


def command_line(argv: list[str] | None) -> str:
    argv = sys.argv[1:] if argv is None else argv
    return "benchmarks/.venv/bin/python benchmarks/speed.py " + " ".join(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        result = worker(json.loads(args.worker.read_text()))
        args.worker_out.write_text(json.dumps(result))
        return 0

    if args.render_from is not None:
        report = json.loads(args.render_from.read_text())
        saved = argparse.Namespace(**{**vars(args), **report["args"]})
        markdown, report["targets"] = render(report, saved)
        args.out_dir.mkdir(parents=True, exist_ok=True)
        (args.out_dir / "speed.md").write_text(markdown)
        (args.out_dir / "speed.json").write_text(json.dumps(report, indent=2, default=str))
        print(markdown)
        return 0

    import torch

    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    info = machine_info(args.threads)
    print(f"{info['cpu_model']}, {info['cores_available']} cores, torch {info['torch']}, "
          f"{args.threads} thread(s); load average {info['load_average_at_start']}", flush=True)
    matmul_n = 1024 if args.quick else 2048
    matmul = [measure_matmul(args.threads, matmul_n, 3 if args.quick else 5)]
    print(f"matmul fp32 {matmul_n}^3: {matmul[0]['square_gflops']:.1f} GFLOP/s; attention-layer "
          f"shape: {matmul[0]['attention_layer_gflops']:.1f} GFLOP/s", flush=True)

    report: dict = {"machine": info, "args": {k: (str(v) if isinstance(v, Path) else v)
                                             for k, v in vars(args).items()},
                    "command": command_line(argv), "matmul": matmul, "datasets": {},
                    "side_by_side": [], "full": []}
    workdir_obj = tempfile.TemporaryDirectory(prefix="din_speed_")
    workdir = Path(workdir_obj.name)
    timeout = args.worker_timeout

    # ---------------------------------------------------------------- data
    full_data = None
    datasets = {}
    for name in args.datasets:
        if name == "synthetic":
            log = synthetic_log(args.rows, args.seed)
        else:
            if not BEAUTY_CSV.exists():
                print(f"skipping amazon-beauty: {BEAUTY_CSV} not found", flush=True)
                continue
            log = beauty_log()
        sub = subsample_users(log, args.n_train, args.seed)
        ours_s, rechub_s = [], []
        data = None
        for _ in range(1 if args.quick else 2):  # alternate: ours, rechub, ours, rechub
            data, seconds = build_ours(sub, args.seed)
            ours_s.append(seconds)
            if not args.skip_peers:
                rechub_s.append(time_rechub_builder(sub, args.seed))
        meta = save_dataset(data, workdir / f"{name}_sub")
        meta.update({"log_rows": int(len(sub)), "users": int(sub["user_id"].nunique()),
                     "build_s_ours": float(np.median(ours_s)),
                     "build_s_ours_runs": ours_s,
                     "build_s_rechub": (float(np.median(rechub_s)) if rechub_s and all(
                         isinstance(s, float) for s in rechub_s) else (rechub_s or None)),
                     "negatives_split_s": data["negatives_split_s"],
                     "transformer_s": data["transformer_s"]})
        datasets[name] = meta
        print(f"{name} subsample: {len(sub):,} clicks of {meta['users']:,} users -> "
              f"{meta['n_train']:,} train / {meta['n_test']:,} test rows, mean history "
              f"{meta['mean_hist_len']:.1f} of {MAX_LEN}; history building "
              f"sklearn-din {meta['build_s_ours']:.2f}s, torch-rechub "
              f"{fmt(meta['build_s_rechub'], '.2f')}"
              f"{'s' if isinstance(meta['build_s_rechub'], float) else ''}", flush=True)
        if name == "synthetic":
            data, seconds = build_ours(log, args.seed)
            n_full = min(args.rows, len(data["train"]))
            full_meta = save_dataset(data, workdir / "synthetic_full", n_train=n_full)
            full_meta.update({"log_rows": int(len(log)), "users": int(log["user_id"].nunique()),
                              "build_s_ours": seconds,
                              "negatives_split_s": data["negatives_split_s"],
                              "transformer_s": data["transformer_s"],
                              "train_rows_available": int(len(data["train"]))})
            full_data = full_meta
            print(f"synthetic full: {len(log):,} clicks of {full_meta['users']:,} users -> "
                  f"{n_full:,} train rows (of {len(data['train']):,}) / "
                  f"{full_meta['n_test']:,} test rows, mean history "
                  f"{full_meta['mean_hist_len']:.1f}; history building {seconds:.1f}s",
                  flush=True)
        del log, sub, data
    report["datasets"] = {**datasets}
    if full_data is not None:
        report["datasets"]["synthetic_full"] = full_data

    # ---------------------------------------------------------------- side by side
    systems = ["ours"] if args.skip_peers else ["ours", "rechub", "deepctr"]
    for name, meta in datasets.items():
        for size in args.sizes:
            runs: dict[str, list[dict]] = {s: [] for s in systems}
            # sklearn-din before and after the peers; --quick and --skip-peers: once.
            order = [*systems, "ours"] if len(systems) > 1 and not args.quick else systems
            for i, system in enumerate(order):
                spec = {"system": system, "size": size, "data": meta["dir"],
                        "epochs": args.epochs, "threads": args.threads, "seed": args.seed,
                        "predict_on": "test+train", "tag": f"{name}_{size}_{system}_{i}"}
                result = run_worker(spec, workdir, timeout)
                runs[system].append(result)
                if "error" in result:
                    print(f"  {name:>13} {size:>8} {system:>8}: FAILED {result['error'][:500]}",
                          flush=True)
                else:
                    print(f"  {name:>13} {size:>8} {system:>8}: train "
                          f"{result['train_rows_per_s']:>9,.0f} rows/s, predict "
                          f"{result['predict_rows_per_s']:>10,.0f} rows/s, AUC "
                          f"{result['test_auc']:.4f}, peak RSS {fmt(result['peak_rss_mb'])} MB "
                          f"({result['wall_s']:.0f}s)", flush=True)
            entry = {"dataset": name, "size": size, "epochs": args.epochs,
                     "n_train": meta["n_train"], "n_test": meta["n_test"],
                     "n_predict": meta["n_train"] + meta["n_test"],
                     "hist_len_sum": meta["hist_len_sum"],
                     "ours": combine_ours(runs["ours"]), "ours_runs": runs["ours"]}
            for system in systems[1:]:
                entry[system] = runs[system][0]
            ours = entry["ours"]
            if "error" not in ours:
                epoch_median = float(np.median([s for r in runs["ours"] if "error" not in r
                                                 for s in r["train_seconds_per_epoch"]]))
                entry["ours_train_gflops"] = train_flops(
                    size, meta["hist_len_sum"], meta["n_train"]) / epoch_median / 1e9
            report["side_by_side"].append(entry)

    # ---------------------------------------------------------------- full size, ours alone
    if full_data is not None:
        for size in args.sizes:
            spec = {"system": "ours", "size": size, "data": full_data["dir"],
                    "epochs": args.full_epochs, "threads": args.threads, "seed": args.seed,
                    "predict_repeats": 1 if args.quick else 3, "tag": f"full_{size}"}
            result = run_worker(spec, workdir, timeout)
            entry = {"dataset": "synthetic", "size": size, "epochs": args.full_epochs,
                     "n_train": full_data["n_train"], "n_test": full_data["n_test"],
                     "train_int_mb": full_data["train_int_bytes"] / 2**20, "ours": result}
            if "error" in result:
                print(f"  full {size}: FAILED {result['error'][:500]}", flush=True)
            else:
                seconds = float(np.median(result["train_seconds_per_epoch"]))
                flops = train_flops(size, full_data["hist_len_sum"], full_data["n_train"])
                entry["train_gflops"] = flops / seconds / 1e9
                entry["train_flops_per_epoch"] = flops
                print(f"  full {size}: {full_data['n_train']:,} rows, train "
                      f"{result['train_rows_per_s']:,.0f} rows/s ({entry['train_gflops']:.1f} "
                      f"GFLOP/s non-padding), predict {result['predict_rows_per_s']:,.0f} rows/s, "
                      f"AUC {result['test_auc']:.4f}, peak RSS {result['maxrss_mb']:,.0f} MB "
                      f"(int arrays {entry['train_int_mb']:,.0f} MB)", flush=True)
            report["full"].append(entry)

    # ---------------------------------------------------------------- profile, ours alone
    report["profile"] = []
    if "synthetic" in datasets and not args.no_profile:
        for size in args.sizes:
            spec = {"system": "profile", "size": size, "data": datasets["synthetic"]["dir"],
                    "threads": args.threads, "seed": args.seed, "tag": f"profile_{size}"}
            result = run_worker(spec, workdir, timeout)
            report["profile"].append(result)
            if "error" in result:
                print(f"  profile {size}: FAILED {result['error'][:500]}", flush=True)
            else:
                print(f"  profile {size}: matmul {result['matmul_share']:.0%} of aten self time; "
                      + ", ".join(f"{o['op']} {o['share']:.0%}" for o in result["top_ops"][:6]),
                      flush=True)

    matmul.append(measure_matmul(args.threads, matmul_n, 3 if args.quick else 5))
    print(f"matmul fp32 {matmul_n}^3 again: {matmul[1]['square_gflops']:.1f} GFLOP/s", flush=True)
    report["runtime_s"] = time.perf_counter() - t_start
    report["machine"]["load_average_at_end"] = os.getloadavg()
    markdown, verdicts = render(report, args)
    report["targets"] = verdicts
    print()
    print(markdown)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "speed.md").write_text(markdown)
    (args.out_dir / "speed.json").write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {args.out_dir / 'speed.md'} and {args.out_dir / 'speed.json'} "
          f"({report['runtime_s'] / 60:.1f} min)")
    workdir_obj.cleanup()
    return 0


def render(report: dict, args: argparse.Namespace) -> tuple[str, list[dict]]:
    """The markdown report and the list of target verdicts."""
    info = report["machine"]
    matmul_peak = max(m["square_gflops"] for m in report["matmul"])
    lines = [
        "# Training and prediction speed: sklearn-din vs torch-rechub and DeepCTR-Torch",
        "",
        f"Command: `{report['command']}` (runtime {report['runtime_s'] / 60:.1f} min)",
        "",
        f"Machine: {info['cpu_model']}, {info['cores_available']} cores available (shared with "
        f"other work: load average {_fmt_load(info.get('load_average_at_start'))} at start, "
        f"{_fmt_load(info.get('load_average_at_end'))} at end); **{info['threads']} torch "
        f"thread(s)** for every system. {info['date']}, Python {info['python']}, torch "
        f"{info['torch']}, skorch {info['skorch']}, scikit-learn {info['scikit-learn']}, "
        f"numpy {info['numpy']}, pandas {info['pandas']}; sklearn-din at git "
        f"{info.get('git', 'unknown')}.",
        "",
        f"Every system: embedding {EMBED_DIM}, history {MAX_LEN}, batch {BATCH_SIZE}, Adam lr "
        f"{LR}, no weight decay, seed {args.seed}; each run a fresh subprocess, one at a time. "
        "The peers are driven through their public APIs by `benchmarks/peers.py` on sklearn-din's "
        "transformed rows (histories converted to their oldest-first layout, untimed).",
        "",
    ]
    start_digest = info.get("source_digest")
    seen = {r.get("source_digest") for e in report["side_by_side"]
            for r in [*e.get("ours_runs", []), e.get("rechub", {}), e.get("deepctr", {})]}
    seen |= {e["ours"].get("source_digest") for e in report["full"]}
    seen |= {p.get("source_digest") for p in report.get("profile", [])}
    seen.discard(None)
    if start_digest and seen - {start_digest}:
        lines += [f"**Warning: sklearn_din's source changed during this run** (digest "
                  f"{start_digest} at the start; the workers saw {sorted(seen)}): the systems "
                  "did not all run the same sklearn-din code.", ""]
    elif start_digest:
        lines += [f"sklearn_din source digest {start_digest}, the same in every worker.", ""]
    mm = report["matmul"]
    lines += [
        "## The machine's matmul rate",
        "",
        "| measured | fp32 square " + f"{mm[0]['square_shape'][0]}^3" + " GFLOP/s | "
        "fp32 16384x256 @ 256x128 GFLOP/s |",
        "|---|---:|---:|",
    ]
    for label, m in zip(("before the systems", "after the systems"), mm, strict=False):
        lines.append(f"| {label} | {m['square_gflops']:.1f} | {m['attention_layer_gflops']:.1f} |")
    lines += ["", f"The targets use the higher square rate, **{matmul_peak:.1f} GFLOP/s**.", ""]

    # data
    lines += ["## Data", ""]
    for name, meta in report["datasets"].items():
        label = "synthetic, full size (sklearn-din only)" if name == "synthetic_full" else (
            f"{name}, side-by-side subsample")
        lines.append(
            f"- **{label}**: {meta['log_rows']:,} clicks of {meta['users']:,} users -> "
            f"{meta['n_train']:,} training rows, {meta['n_test']:,} test rows; mean history "
            f"{meta['mean_hist_len']:.1f} of {MAX_LEN} ({meta['share_full_history']:.0%} of rows "
            f"full); training int arrays {meta['train_int_bytes'] / 2**20:,.0f} MB.")
    lines += [
        "",
        "The synthetic log comes from `make_interactions` (geometric clicks per user, mean 20; "
        f"seed {args.seed}), Amazon Beauty from `{BEAUTY_CSV}`; both get one sampled negative "
        "per click (`sample_negatives`) and a per-user time split (`leave_last_out_split`: last "
        "event test, the one before validation, unused here). The side-by-side subsample is all "
        "rows of randomly drawn users, so its history lengths follow the full log's.",
        "",
        "**The peers train at a few hundred to a few thousand rows a second, so the side-by-side "
        f"table uses the subsample ({args.epochs} epochs for every system); the million-row run "
        f"is sklearn-din alone ({args.full_epochs} epoch(s)).**",
        "",
    ]

    # side by side
    verdicts: list[dict] = []
    lines += [
        f"## Side by side ({args.epochs} epochs, same rows, same sizes)",
        "",
        "| data | sizes | system | history building s | train rows/s | sklearn-din speed-up "
        "(train) | predict rows/s | sklearn-din speed-up (predict) | peak RSS MB | test AUC "
        "(+/- SE) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for entry in report["side_by_side"]:
        meta = report["datasets"][entry["dataset"]]
        ours = entry["ours"]
        for system in ("ours", "rechub", "deepctr"):
            if system not in entry:
                continue
            r = entry[system]
            label = "sklearn-din" if system == "ours" else PEER_LABEL[system]
            build = {"ours": meta["build_s_ours"], "rechub": meta.get("build_s_rechub"),
                     "deepctr": "none (hand-built)"}[system]
            if "error" in r:
                lines.append(f"| {entry['dataset']} | {entry['size']} | {label} | "
                             f"{fmt(build, '.2f')} | failed: {r['error'][:80]} | | | | | |")
                continue
            ok = "error" not in ours
            train_ratio = ours["train_rows_per_s"] / r["train_rows_per_s"] if ok else None
            predict_ratio = ours["predict_rows_per_s"] / r["predict_rows_per_s"] if ok else None
            n_pos = int(round(entry["n_test"] * 0.5))
            se = auc_se(r["test_auc"], n_pos, entry["n_test"] - n_pos)
            lines.append(
                f"| {entry['dataset']} | {entry['size']} | {label} | {fmt(build, '.2f')} | "
                f"{fmt(r['train_rows_per_s'])} | {fmt(train_ratio, '.1f')}x | "
                f"{fmt(r['predict_rows_per_s'])} | {fmt(predict_ratio, '.1f')}x | "
                f"{fmt(r['peak_rss_mb'])} | {r['test_auc']:.4f} (+/- {se:.4f}) |")
    lines += [
        "",
        "History building: sklearn-din = `sample_negatives` + `leave_last_out_split` + "
        "`SequenceFeatureTransformer` (fit on train, transform train, `partial_fit` with the "
        "validation clicks, transform test); torch-rechub = `create_seq_features` on the same "
        "log (negatives, split and histories in one call; it also puts every test row into "
        "training, see the field notes). Train rows/s: median over epochs (sklearn-din: "
        "skorch's per-epoch `dur`, both of its runs; the peers: wall clock per epoch). Predict "
        "rows/s: the subsample's test rows followed by its training rows, the same rows for "
        "every system; sklearn-din's `predict_proba` on the DataFrame (median of 3 calls), the "
        "peers' one predict call. Test AUC: the test rows only; SE: Hanley & McNeil. Peak RSS: "
        "the worker process (Python + torch + this data set) while training and predicting, "
        "sampled at 20 Hz.",
        "",
    ]
    gflops_rows = [(e["dataset"], e["size"], e.get("ours_train_gflops"))
                   for e in report["side_by_side"] if e.get("ours_train_gflops")]
    if gflops_rows:
        lines.append("sklearn-din training, non-padding GFLOP/s on the subsample (median epoch): "
                     + ", ".join(f"{d} {s} {g:.1f}" for d, s, g in gflops_rows) + ".")
        lines.append("")

    lines += work_per_row_md(report)

    # profile
    profiles = [p for p in report.get("profile", []) if "error" not in p]
    if profiles:
        lines += [
            "## Where sklearn-din's training time goes",
            "",
            "`torch.profiler` over one training epoch on the synthetic subsample (after a "
            "warm-up epoch, same thread count); share of the aten ops' self CPU time.",
            "",
            "| sizes | epoch s | matmul (mm/addmm) share | top ops (share, calls) |",
            "|---|---:|---:|---|",
        ]
        for p in profiles:
            ops = ", ".join(f"`{o['op'].removeprefix('aten::')}` {o['share']:.0%} ({o['calls']})"
                            for o in p["top_ops"][:10])
            lines.append(f"| {p['size']} | {p['epoch_s']:.2f} | {p['matmul_share']:.0%} | "
                         f"{ops} |")
        lines += [
            "",
            "`mul`, `batch_norm`, `sigmoid`, `addcmul`, `sum` and their backward ops are almost "
            "all Dice (its batch statistics and gate, forward and backward, on every hidden "
            "activation of both MLPs): elementwise, memory-bound work that a fused Dice would "
            "largely remove. `index`, `index_put`, `nonzero` and `embedding_dense_backward` are "
            "the gathers of real history positions and the embedding gradients.",
            "",
        ]

    # full size
    if report["full"]:
        lines += [
            f"## sklearn-din alone on the full synthetic training set ({args.full_epochs} "
            "epoch(s))",
            "",
            "| sizes | train rows | train rows/s | fit wall s | non-padding GFLOP/s | share of "
            "matmul rate | predict rows/s | test AUC | peak RSS MB | RSS before data MB | "
            "int arrays MB | RSS / int arrays | (RSS - before data) / int arrays |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for entry in report["full"]:
            r = entry["ours"]
            if "error" in r:
                lines.append(f"| {entry['size']} | {entry['n_train']:,} | failed: "
                             f"{r['error'][:120]} |||||||||")
                continue
            lines.append(
                f"| {entry['size']} | {entry['n_train']:,} | {r['train_rows_per_s']:,.0f} | "
                f"{r['fit_wall_s']:.1f} | {entry['train_gflops']:.1f} | "
                f"{entry['train_gflops'] / matmul_peak:.0%} | {r['predict_rows_per_s']:,.0f} | "
                f"{r['test_auc']:.4f} | {r['fit_maxrss_mb']:,.0f} | {r['baseline_rss_mb']:,.0f} | "
                f"{entry['train_int_mb']:,.0f} | "
                f"{r['fit_maxrss_mb'] / entry['train_int_mb']:.2f}x | "
                f"{(r['fit_maxrss_mb'] - r['baseline_rss_mb']) / entry['train_int_mb']:.2f}x |")
        lines += [
            "",
            "Train rows/s: skorch's epoch `dur` (the epoch loop, batching included); fit wall s "
            "also includes `fit`'s input validation and array building. GFLOP/s counts the "
            "analytic non-padding work (attention MLP on the 4D input per real history "
            "position, output MLP per row, x3 for forward + backward) over the epoch time. "
            "Peak RSS: the kernel's high-water mark of a fresh process (`ru_maxrss`) at the end "
            "of `fit`: Python, torch, the loaded int arrays and everything `fit` allocates "
            "(the target is judged on this number). RSS before data: the same process after its "
            "imports and a warm-up step, before loading the arrays. Int arrays: the training "
            "DataFrame's int32 columns (one block, the layout `SequenceFeatureTransformer` "
            "returns) plus the int8 labels.",
            "",
        ]

    # targets
    def verdict(name: str, passed: bool | None, detail: str) -> None:
        state = "n/a" if passed is None else ("PASS" if passed else "MISS")
        verdicts.append({"target": name, "result": state, "detail": detail})

    for entry in report["side_by_side"]:
        if entry["size"] != "tutorial":
            continue
        ours = entry["ours"]
        tag = f"{entry['dataset']}, tutorial sizes"
        for system, need in (("rechub", TRAIN_VS_RECHUB), ("deepctr", TRAIN_VS_DEEPCTR)):
            r = entry.get(system)
            if r is None:
                continue
            if "error" in r or "error" in ours:
                verdict(f"train >= {need:g}x {PEER_LABEL[system]} with AUC >= theirs ({tag})",
                        None, "a run failed")
                continue
            ratio = ours["train_rows_per_s"] / r["train_rows_per_s"]
            n_pos = int(round(entry["n_test"] * 0.5))
            tol = max(auc_se(ours["test_auc"], n_pos, entry["n_test"] - n_pos),
                      auc_se(r["test_auc"], n_pos, entry["n_test"] - n_pos))
            auc_ok = ours["test_auc"] >= r["test_auc"] - tol
            verdict(f"train >= {need:g}x {PEER_LABEL[system]} with AUC >= theirs ({tag})",
                    ratio >= need and auc_ok,
                    f"{ratio:.1f}x; AUC {ours['test_auc']:.4f} vs {r['test_auc']:.4f} "
                    f"(equal = within one SE, {tol:.4f})")
        for system in ("rechub", "deepctr"):
            r = entry.get(system)
            if r is None or "error" in r or "error" in ours:
                continue
            ratio = ours["predict_rows_per_s"] / r["predict_rows_per_s"]
            verdict(f"predict >= {PREDICT_VS_PEERS:g}x {PEER_LABEL[system]} ({tag})",
                    ratio >= PREDICT_VS_PEERS, f"{ratio:.1f}x")
    for entry in report["full"]:
        r = entry["ours"]
        if "error" in r:
            continue
        share = entry["train_gflops"] / matmul_peak
        verdict(f"train step >= {MATMUL_FRACTION:.0%} of matmul rate ({entry['size']} sizes, "
                f"{entry['n_train']:,} rows)", share >= MATMUL_FRACTION,
                f"{entry['train_gflops']:.1f} of {matmul_peak:.1f} GFLOP/s = {share:.0%}")
        ratio = r["fit_maxrss_mb"] / entry["train_int_mb"]
        above = (r["fit_maxrss_mb"] - r["baseline_rss_mb"]) / entry["train_int_mb"]
        verdict(f"peak RSS of a {entry['n_train']:,}-row fit < {RSS_VS_INTS:g}x its int arrays "
                f"({entry['size']} sizes; whole process)", ratio < RSS_VS_INTS,
                f"{r['fit_maxrss_mb']:,.0f} MB / {entry['train_int_mb']:,.0f} MB = {ratio:.2f}x")
        verdict(f"the same, counting only what the data and fit add to the process "
                f"({entry['size']} sizes)", above < RSS_VS_INTS,
                f"({r['fit_maxrss_mb']:,.0f} - {r['baseline_rss_mb']:,.0f}) MB / "
                f"{entry['train_int_mb']:,.0f} MB = {above:.2f}x")
    lines += ["## Targets (ratios from this one run, same machine, same threads)", "",
              "| target | result | measured |", "|---|---|---|"]
    lines += [f"| {v['target']} | **{v['result']}** | {v['detail']} |" for v in verdicts]
    if report["full"]:
        lines += [
            "",
            "The memory target is reported two ways: literally (the whole process's peak RSS) "
            "and counting only what loading the data and fitting add to a process that has "
            "imported Python, torch, pandas, scikit-learn and skorch (about "
            f"{report['full'][0]['ours'].get('baseline_rss_mb', float('nan')):,.0f} MB here). "
            "At a million rows that baseline alone is about as large as the int arrays, so the "
            "literal reading can only pass if fit adds almost nothing to the data it is given.",
            "",
            "Where each peak comes from (high-water marks of the same process):",
            "",
        ]
        for entry in report["full"]:
            r = entry["ours"]
            if "loaded_maxrss_mb" not in r or "error" in r:
                continue
            above = r["fit_maxrss_mb"] - r["loaded_rss_mb"]
            ratio = above / entry["train_int_mb"]
            head = (f"- {entry['size']} sizes: after loading, {r['loaded_rss_mb']:,.0f} MB "
                    f"({r['loaded_rss_mb'] - r['baseline_rss_mb']:,.0f} MB of data); loading "
                    f"itself peaked at {r['loaded_maxrss_mb']:,.0f} MB (the .npy files read and "
                    "wrapped in a DataFrame); ")
            if r["fit_maxrss_mb"] <= r["loaded_maxrss_mb"]:
                lines.append(head + "fit never went above that, so it added at most "
                             f"{above:,.0f} MB to the loaded data ({ratio:.2f}x the int arrays).")
            else:
                lines.append(head + f"fit peaked at {r['fit_maxrss_mb']:,.0f} MB, {above:,.0f} "
                             f"MB above the loaded data ({ratio:.2f}x the int arrays): one "
                             "training step's activations and the allocator's cache of them.")
    if args.quick:
        lines += ["", "**--quick smoke run: tiny sizes, the numbers are not measurements.**"]
    return "\n".join(lines) + "\n", verdicts


def _fmt_load(value: object) -> str:
    if not value:
        return "n/a"
    return "/".join(f"{v:.1f}" for v in value)


if __name__ == "__main__":
    sys.exit(main())
