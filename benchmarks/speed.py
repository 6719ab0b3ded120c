"""Training and prediction speed: sklearn-din vs torch-rechub, DeepCTR-Torch and FuxiCTR, one run.

For every data set, thread count (1, 2) and model size, in this order, each a fresh process:
sklearn-din, torch-rechub 0.9.0, DeepCTR-Torch 0.3.0, FuxiCTR 2.3.10 (``peers.py``: their public
APIs on sklearn-din's transformed rows), sklearn-din again, so that a change in the machine's load
shows in sklearn-din's two runs rather than in the ratios. Every system trains ``--epochs`` epochs
on the same rows (all rows of randomly drawn users, about ``--n-train``; one sampled negative per
click, per-user time split) and predicts the same rows (the test rows, then the training rows).

* sizes: tutorial = attention and output MLP (256, 128); paper = attention (80, 40), MLP (200, 80);
  embedding 8, history 50, batch 1024, Adam lr 1e-3 everywhere;
* data: ``synthetic-short`` (``make_interactions``, mean 20 clicks a user: mean history about
  16 of 50), ``amazon-beauty`` (``$SKLEARN_DIN_DATA/amazon-beauty``, default ``../shared/data``),
  ``synthetic-long`` (mean 80 clicks a user: mean history about 38 of 50);
* train rows/s: median epoch (sklearn-din: skorch's epoch ``dur``; peers: wall clock per epoch);
  predict rows/s: every system's median of ``peers.PREDICT_REPEATS`` (3) predict calls on the
  same rows, the first included (before 2026-12-04 the peers were timed on one call);
  test AUC on the test rows, "equal" = within one Hanley-McNeil standard error;
* sklearn-din's train GFLOP/s counts only non-padding work (per real history position the
  attention MLP on its 4D input, per row the output MLP, x3 for forward + backward) against the
  fp32 matmul rate measured at the same thread count before and after the systems;
* the gap's profile: ``torch.profiler`` over one training epoch after a warm-up epoch (1 thread);
* a ``--fit-rows`` (1,000,000) fit of sklearn-din alone: the peak RSS it adds to a process that
  holds the data, against the data's int arrays; history building on the same log,
  ``SequenceFeatureTransformer.fit_transform`` vs torch-rechub's ``create_seq_features``.

Run in the benchmark environment (``bash benchmarks/setup_env.sh``)::

    benchmarks/.venv/bin/python benchmarks/speed.py          # ~20 min on a quiet 2-core machine
    benchmarks/.venv/bin/python benchmarks/speed.py --quick  # smoke run, < 2 minutes

Prints the tables and the PASS/MISS table of issue 18's targets; writes ``speed.md`` and
``speed.json`` into ``--out-dir`` (``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("TQDM_DISABLE", "1")  # torch-rechub's trainer draws tqdm bars

from harness import (  # noqa: E402
    DATA,
    RESULTS,
    add_worker_arguments,
    answer_worker,
    auc_se,
    fmt,
    machine_info,
    machine_line,
    mark_end,
    markdown_table,
    package_versions,
    run_worker,
    source_digest,
    write_report,
)
from peers import PREDICT_REPEATS, timed_predict  # noqa: E402

MAX_LEN, EMBED_DIM, BATCH_SIZE, LR = 50, 8, 1024, 1e-3
SIZES = {
    "tutorial": {"attention_units": (256, 128), "hidden_units": (256, 128)},
    "paper": {"attention_units": (80, 40), "hidden_units": (200, 80)},
}
PEERS = {"rechub": "torch-rechub 0.9.0", "deepctr": "DeepCTR-Torch 0.3.0",
         "fuxictr": "FuxiCTR 2.3.10"}
PEER_FIT = {"rechub": "fit_predict_rechub_din", "deepctr": "fit_predict_deepctr_din",
            "fuxictr": "fit_predict_fuxictr_din"}
# name -> (history kind, mean clicks a user for make_interactions or None for a shared data set)
DATASETS = {"synthetic-short": ("short", 20.0), "amazon-beauty": ("short", None),
            "synthetic-long": ("long", 80.0)}

# Issue 18's targets (ratios from this one run, same rows, same threads).
MATMUL_SHARE = 0.5
THREAD_SCALING = 1.7
VS_PEERS = {"short": 10.0, "long": 6.0}  # torch-rechub and DeepCTR-Torch
VS_FUXICTR = 3.0
FIT_MEMORY = 1.0  # peak RSS a fit adds / its int arrays
HISTORY_BUILDING = 20.0  # x create_seq_features


# ================================================================================ work and rates
def train_flops(size: str, hist_len_sum: int, n_rows: int) -> float:
    """Forward + backward (3x forward) multiply-add FLOPs of the non-padding work of ``n_rows``."""
    item_dim = 2 * EMBED_DIM  # item + category
    att = [4 * item_dim, *SIZES[size]["attention_units"], 1]
    mlp = [2 * item_dim + EMBED_DIM, *SIZES[size]["hidden_units"], 1]
    per_position = sum(2 * a * b for a, b in zip(att, att[1:], strict=False))
    per_row = sum(2 * a * b for a, b in zip(mlp, mlp[1:], strict=False))
    return 3.0 * (per_position * hist_len_sum + per_row * n_rows)


def matmul_gflops(threads: int, n: int, repeats: int) -> float:
    """fp32 GFLOP/s of an n x n x n torch matmul at ``threads`` threads (best of ``repeats``)."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best / 1e9


# ================================================================================ data
def click_log(name: str, train_rows: int, seed: int, data_dir: Path) -> pd.DataFrame:
    """The raw log of a data set, cut to all clicks of random users giving ~``train_rows`` rows."""
    kind, mean_events = DATASETS[name]
    if mean_events is None:
        log = pd.read_csv(data_dir / "amazon-beauty" / "interactions.csv")
    else:  # a user with e clicks gives 2 (e - 2) training rows (one negative per click)
        from sklearn_din.datasets import make_interactions

        n_users = int(train_rows / (2 * (mean_events - 2)) * 1.5) + 20
        log = make_interactions(n_users=n_users, n_items=max(2_000, n_users // 3),
                                n_categories=50, mean_events=mean_events, random_state=seed)
    log = log[["user_id", "item_id", "time", "cate_id"]]
    users = log["user_id"].drop_duplicates().sample(frac=1.0, random_state=seed).to_numpy()
    rows_per_user = 2 * log.groupby("user_id").size().reindex(users).to_numpy()
    n_users = int(np.searchsorted(np.cumsum(rows_per_user), train_rows)) + 1
    return log[log["user_id"].isin(users[:n_users])].reset_index(drop=True)


def transformed_rows(log: pd.DataFrame, seed: int) -> dict:
    """sklearn-din's rows of a log: negatives, time split, histories (int32 DataFrames)."""
    from sklearn_din import SequenceFeatureTransformer
    from sklearn_din.datasets import leave_last_out_split, sample_negatives

    train, valid, test = leave_last_out_split(sample_negatives(log, n_negatives=1,
                                                               random_state=seed))
    features = SequenceFeatureTransformer(history_cols=("item_id", "cate_id"), max_len=MAX_LEN)
    out = {"train": features.fit_transform(train.drop(columns="label"), train["label"]),
           "y_train": train["label"].to_numpy()}
    features.partial_fit(valid.drop(columns="label"), valid["label"])
    out.update(test=features.transform(test.drop(columns="label")), y_test=test["label"].to_numpy())
    return out


# The synthetic logs by the length of their histories, for the A/B scripts that reuse them
# (block_cache.py, fused_mlp.py).
SYNTHETIC_HISTORIES = {"short": "synthetic-short", "long": "synthetic-long"}


def synthetic_rows(kinds: list[str], train_rows: int, data_dir: Path) -> dict[str, dict]:
    """:func:`transformed_rows` of the synthetic logs of these history kinds (seed 0)."""
    data = {}
    for kind in kinds:
        rows = transformed_rows(click_log(SYNTHETIC_HISTORIES[kind], train_rows, 0, data_dir), 0)
        data[kind] = rows
        print(f"{kind}: {len(rows['train']):,} training rows, mean history "
              f"{rows['train']['hist_len'].mean():.1f} of 50", flush=True)
    return data


def save_rows(rows: dict, directory: Path, log: pd.DataFrame) -> dict:
    """The rows as .npy blocks for the workers; what the report says about them."""
    directory.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        np.save(directory / f"{split}_X.npy", rows[split].to_numpy())
        np.save(directory / f"{split}_y.npy", np.asarray(rows[f"y_{split}"], dtype=np.int8))
    (directory / "columns.json").write_text(json.dumps([str(c) for c in rows["train"].columns]))
    hist_len = rows["train"]["hist_len"].to_numpy()
    return {"dir": str(directory), "clicks": len(log), "users": int(log["user_id"].nunique()),
            "n_train": len(hist_len), "n_test": len(rows["y_test"]),
            "hist_len_sum": int(hist_len.sum()), "mean_hist_len": float(hist_len.mean()),
            "share_full": float(np.mean(hist_len == MAX_LEN)),
            "train_int_mb": (rows["train"].memory_usage(index=False).sum() + len(hist_len)) / 2**20}


def load_rows(directory: Path, split: str) -> tuple[pd.DataFrame, np.ndarray]:
    columns = json.loads((directory / "columns.json").read_text())
    X = pd.DataFrame(np.load(directory / f"{split}_X.npy"), columns=columns, copy=False)
    return X, np.load(directory / f"{split}_y.npy")


def peer_arrays(X: pd.DataFrame, y: np.ndarray) -> dict:
    """Our rows in ``peers.py``'s column convention (most recent first, right-padded)."""
    out = {k: X[k].to_numpy(np.int64) for k in ("user_id", "item_id", "cate_id")}
    for f in ("item_id", "cate_id"):
        out[f"hist_{f}"] = X[[f"hist_{f}_{k}" for k in range(MAX_LEN)]].to_numpy(np.int64)
    out["hist_len"], out["label"] = X["hist_len"].to_numpy(np.int64), np.asarray(y, np.int64)
    return out


# ================================================================================ one system run
def classifier(size: str, epochs: int, seed: int, early_stopping: str | bool = False):
    from sklearn_din import DINClassifier

    # Defaults otherwise; a fixed number of epochs on all the rows for every system, so no
    # early stopping (its "auto" holds out validation rows from 10,000 rows on), and whole
    # histories (behaviour dropout would attend over fewer positions than the peers do).
    return DINClassifier(embed_dim=EMBED_DIM, **SIZES[size], max_epochs=epochs,
                         batch_size=BATCH_SIZE, lr=LR, verbose=0, early_stopping=early_stopping,
                         behaviour_dropout=0.0, random_state=seed)


def worker(spec: dict) -> dict:
    """One system on one data set, in this (fresh) process; what it measured."""
    import torch
    from sklearn.metrics import roc_auc_score

    torch.set_num_threads(spec["threads"])
    warm = torch.nn.Linear(4, 1)  # torch's lazy imports (~2 s) before any timing, for all alike
    warm(torch.ones(2, 4)).sum().backward()
    torch.optim.Adam(warm.parameters()).step()
    X, y = load_rows(Path(spec["data"]), "train")
    out = {"source_digest": source_digest()}
    if spec["system"] == "profile":
        return {**out, **profile_epoch(X, y, spec)}
    if spec["system"] == "fit_memory":
        return {**out, **fit_memory(X, y, spec)}
    X_test, y_test = load_rows(Path(spec["data"]), "test")
    X_pred = pd.concat([X_test, X], ignore_index=True)
    n_test = len(y_test)
    if spec["system"] == "ours":
        clf = classifier(spec["size"], spec["epochs"], spec["seed"]).fit(X, y)
        proba, predict_seconds = timed_predict(lambda: clf.predict_proba(X_pred)[:, 1])
        epochs = [float(s) for s in clf.history[:, "dur"]]
        result = {"train_seconds_per_epoch": epochs, "predict_seconds": predict_seconds}
    else:
        import peers

        fit_predict = getattr(peers, PEER_FIT[spec["system"]])
        r = fit_predict(peer_arrays(X, y), peer_arrays(X_pred, np.concatenate([y_test, y])),
                        embed_dim=EMBED_DIM, **SIZES[spec["size"]], epochs=spec["epochs"],
                        batch_size=BATCH_SIZE, lr=LR, seed=spec["seed"],
                        n_threads=spec["threads"])
        proba, epochs = r["test_proba"], r["train_seconds_per_epoch"]
        result = {"train_seconds_per_epoch": epochs, "predict_seconds": r["predict_seconds"]}
    return {**out, **result, "train_rows_per_s": float(np.median([len(y) / s for s in epochs])),
            "predict_rows_per_s": len(X_pred) / result["predict_seconds"],
            "test_auc": float(roc_auc_score(y_test, proba[:n_test])), "n_train": len(y),
            "torch_threads": torch.get_num_threads()}


MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear")


def profile_epoch(X: pd.DataFrame, y: np.ndarray, spec: dict) -> dict:
    """torch.profiler over one training epoch (after a warm-up epoch): the ops with the
    most self CPU time and the share of the matrix multiplications."""
    from torch.profiler import ProfilerActivity, profile

    clf = classifier(spec["size"], 1, spec["seed"]).fit(X, y)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        clf.partial_fit(X, y)
    # aten's ops and sklearn-din's compiled ones (Dice's kernels, namespace sklearn_din_*).
    events = sorted((e for e in prof.key_averages()
                     if e.key.startswith(("aten::", "sklearn_din_"))),
                    key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    steps = math.ceil(len(y) / BATCH_SIZE)
    return {"step_ms": 1e3 * float(clf.history[-1, "dur"]) / steps, "steps": steps,
            "matmul_share": sum(e.self_cpu_time_total for e in events if e.key in MATMUL_OPS)
            / total,
            "top_ops": [{"op": e.key.split("::")[-1], "share": e.self_cpu_time_total / total,
                         "calls_per_step": e.count / steps} for e in events[:10]]}


def fit_memory(X: pd.DataFrame, y: np.ndarray, spec: dict) -> dict:
    """Peak RSS one epoch of ``fit`` adds to a process already holding its data (VmHWM reset
    after loading, as ``memory.py`` does).

    ``hwm_mb`` is the kernel's ``VmHWM``, which the reset clears: the fit's own peak, the
    one the verdict uses. ``peak_mb`` is ``getrusage``'s maximum, which the reset does not
    clear: Linux also keeps in it the high-water mark of the parent process (copied at
    ``exec``: this script's parent built the rows, ~2.9 GB at 1M rows) and of exited
    threads, so ``peak_reset`` is false and ``peak_mb`` is not the fit's.
    ``spec["early_stopping"]`` (default False, as the speed runs) is the classifier's.
    """
    import gc

    from memory import _maxrss, _reset_peak, _rss, _status

    gc.collect()
    before, reset = _rss(), _reset_peak()
    start = time.perf_counter()
    clf = classifier(spec["size"], 1, spec["seed"],
                     early_stopping=spec.get("early_stopping", False)).fit(X, y)
    return {"fit_s": time.perf_counter() - start, "rss_before_mb": before / 2**20,
            "peak_mb": _maxrss() / 2**20, "hwm_mb": _status()["VmHWM"] / 2**20,
            "peak_reset": reset, "train_rows_per_s": len(y) / float(clf.history[-1, "dur"])}


def history_building(log: pd.DataFrame, repeats: int) -> dict:
    """fit_transform vs create_seq_features on one log, alternating (``transform_speed.py``'s)."""
    from peers import time_rechub_create_seq_features
    from transform_speed import _time_ours

    ours, theirs = [], []
    for _ in range(repeats):
        ours.append(_time_ours(log, MAX_LEN)[0])
        try:
            theirs.append(time_rechub_create_seq_features(log, max_len=MAX_LEN))
        except Exception as exc:  # report, keep going
            return {"rows": len(log), "ours_s": ours, "error": f"{type(exc).__name__}: {exc}"}
    return {"rows": len(log), "ours_s": float(np.median(ours)),
            "theirs_s": float(np.median(theirs))}


# ================================================================================ the run
def combine(runs: list[dict]) -> dict:
    """sklearn-din's runs around the peers as one: median over all their epochs and predictions."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[0]
    epochs = [s for r in ok for s in r["train_seconds_per_epoch"]]
    return {**ok[0], "train_rows_per_s": float(np.median([ok[0]["n_train"] / s for s in epochs])),
            "median_epoch_s": float(np.median(epochs)),
            "predict_rows_per_s": float(np.median([r["predict_rows_per_s"] for r in ok])),
            "runs": [{k: r[k] for k in ("train_rows_per_s", "predict_rows_per_s", "test_auc")}
                     for r in ok]}


def say(line: str) -> None:
    print(line, flush=True)


def run(args: argparse.Namespace, command: str) -> dict:
    info = machine_info()
    info["peers"] = package_versions("torch-rechub", "deepctr-torch", "fuxictr")
    info["source_digest"] = source_digest()
    info["torch_threads"] = " and ".join(map(str, args.threads)) + " (per run)"
    say(machine_line(info))
    report = {"command": command, "machine": info, "args": {k: str(v) if isinstance(v, Path)
                                                            else v for k, v in vars(args).items()},
              "matmul": {}, "datasets": {}, "runs": [], "profile": [], "extra": {}}
    n_mm, mm_reps = (512, 2) if args.quick else (2048, 5)
    for threads in args.threads:
        report["matmul"][str(threads)] = [matmul_gflops(threads, n_mm, mm_reps)]
    say(f"matmul GFLOP/s: {report['matmul']}")
    start = time.perf_counter()
    script = Path(__file__).resolve()
    with tempfile.TemporaryDirectory(prefix="din_speed_") as tmp:
        workdir = Path(tmp)

        def launch(spec: dict, threads: int) -> dict:
            result = run_worker(script, spec, workdir, threads=threads,
                                timeout=args.worker_timeout)
            done = (f"train {result['train_rows_per_s']:,.0f} rows/s" if "train_rows_per_s"
                    in result else "")
            failed = "FAILED " + result["error"][-600:] if "error" in result else None
            say(f"  {spec['tag']}: {failed or done} ({result['wall_s']:.0f} s)")
            return result

        for name in args.datasets:
            csv = args.data_dir / "amazon-beauty" / "interactions.csv"
            if DATASETS[name][1] is None and not csv.exists():
                say(f"{name}: skipped, {csv} not found (--data-dir or SKLEARN_DIN_DATA)")
                report["skipped"] = {name: f"{csv} not found"}
                continue
            log = click_log(name, args.n_train, args.seed, args.data_dir)
            meta = save_rows(transformed_rows(log, args.seed), workdir / name, log)
            report["datasets"][name] = {**meta, "kind": DATASETS[name][0]}
            say(f"{name}: {meta['n_train']:,} train / {meta['n_test']:,} test rows, mean history "
                f"{meta['mean_hist_len']:.1f} of {MAX_LEN}")
            for threads in args.threads:
                for size in args.sizes:
                    order = ["ours", *args.peers] + ([] if args.quick else ["ours"])
                    results = {}
                    for i, system in enumerate(order):
                        spec = {"system": system, "size": size, "data": meta["dir"],
                                "epochs": args.epochs, "threads": threads, "seed": args.seed,
                                "tag": f"{name}-{size}-{threads}t-{system}-{i}"}
                        results.setdefault(system, []).append(launch(spec, threads))
                    report["runs"].append({"dataset": name, "size": size, "threads": threads,
                                           "ours": combine(results.pop("ours")),
                                           **{k: v[0] for k, v in results.items()}})
            profiled = {p["dataset"] for p in report["profile"]}
            for size in () if args.no_profile or (args.quick and profiled) else args.sizes:
                spec = {"system": "profile", "size": size, "data": meta["dir"], "threads": 1,
                        "seed": args.seed, "tag": f"profile-{name}-{size}"}
                report["profile"].append({"dataset": name, "size": size,
                                          **launch(spec, 1)})
        if args.fit_rows:
            log = click_log("synthetic-short", args.fit_rows, args.seed, args.data_dir)
            meta = save_rows(transformed_rows(log, args.seed), workdir / "fit", log)
            spec = {"system": "fit_memory", "size": args.fit_size, "data": meta["dir"],
                    "threads": max(args.threads), "seed": args.seed, "tag": "fit-memory"}
            report["extra"]["fit_memory"] = {**meta, "size": args.fit_size,
                                             **launch(spec, max(args.threads))}
            if "rechub" in args.peers:
                from transform_speed import _log

                report["extra"]["history_building"] = history_building(
                    _log(args.fit_rows, args.seed), args.build_repeats)
    for threads in args.threads:
        report["matmul"][str(threads)].append(matmul_gflops(threads, n_mm, mm_reps))
    report["runtime_s"] = time.perf_counter() - start
    mark_end(report["machine"])
    return report


# ================================================================================ the report
def ratio(ours: dict, peer: dict | None, key: str) -> float | None:
    if not peer or "error" in peer or "error" in ours:
        return None
    return ours[key] / peer[key]


def auc_tolerance(entry: dict, peer: str, n_test: int) -> float:
    n_pos = n_test // 2
    return max(auc_se(entry[s]["test_auc"], n_pos, n_test - n_pos) for s in ("ours", peer))


def verdicts(report: dict) -> list[list[str]]:
    """Issue 18's targets: one row each, PASS only where every configuration passes."""
    rows = []

    def judge(target: str, cases: list[tuple[str, float | None, bool]], need: float,
              unit: str = "x") -> None:
        measured = [(where, value, extra_ok) for where, value, extra_ok in cases
                    if value is not None]
        if not measured:
            rows.append([target, "**n/a**", "not measured in this run"])
            return
        worst = min(measured, key=lambda c: c[1])
        passed = all(v >= need and ok for _, v, ok in measured) and len(measured) == len(cases)
        show = (lambda v: f"{v:.0%}") if unit == "%" else (lambda v: f"{v:.1f}x")
        detail = (f"lowest {show(worst[1])} ({worst[0]}), highest "
                  f"{show(max(v for _, v, _ in measured))}; {len(measured)} of {len(cases)} "
                  "measured")
        failed_auc = [w for w, v, ok in measured if not ok]
        if failed_auc:
            detail += f"; AUC below theirs in {', '.join(failed_auc)}"
        rows.append([target, f"**{'PASS' if passed else 'MISS'}**", detail])

    matmul = {t: max(v) for t, v in report["matmul"].items()}
    data = report["datasets"]
    share = [(f"{e['dataset']} {e['size']} {e['threads']}t",
              gflops(e, data) / matmul[str(e["threads"])] if "error" not in e["ours"] else None,
              True) for e in report["runs"]]
    judge(f"train step >= {MATMUL_SHARE:.0%} of the matmul rate", share, MATMUL_SHARE, "%")
    judge(f"2 threads >= {THREAD_SCALING}x 1 thread (sklearn-din train rows/s)",
          thread_scaling(report), THREAD_SCALING)
    for kind in ("short", "long"):
        for key, what in (("train_rows_per_s", "train"), ("predict_rows_per_s", "predict")):
            cases = [(f"{e['dataset']} {e['size']} {e['threads']}t vs {PEERS[p]}",
                      ratio(e["ours"], e.get(p), key),
                      key != "train_rows_per_s" or ratio(e["ours"], e.get(p), key) is None
                      or e["ours"]["test_auc"] >= e[p]["test_auc"]
                      - auc_tolerance(e, p, data[e["dataset"]]["n_test"]))
                     for e in report["runs"] if data[e["dataset"]]["kind"] == kind
                     for p in ("rechub", "deepctr") if p in report["args"]["peers"]]
            judge(f"{what} >= {VS_PEERS[kind]:g}x torch-rechub and DeepCTR-Torch, {kind} histories"
                  + (", AUC >= theirs" if what == "train" else ""), cases, VS_PEERS[kind])
    for key, what in (("train_rows_per_s", "train"), ("predict_rows_per_s", "predict")):
        cases = [(f"{e['dataset']} {e['size']} {e['threads']}t", ratio(e["ours"], e.get("fuxictr"),
                                                                      key), True)
                 for e in report["runs"] if "fuxictr" in report["args"]["peers"]]
        judge(f"{what} >= {VS_FUXICTR:g}x FuxiCTR", cases, VS_FUXICTR)
    fit = report["extra"].get("fit_memory")
    if fit and "error" not in fit:
        peak, source = fit.get("hwm_mb"), "VmHWM"
        if peak is None:  # a speed.json from before hwm_mb: getrusage's, see fit_memory
            peak, source = fit["peak_mb"], "ru_maxrss" + (
                "" if fit["peak_reset"] else ", not reset: holds the parent's peak")
        added = (peak - fit["rss_before_mb"]) / fit["train_int_mb"]
        rows.append([f"peak RSS a {fit['n_train']:,}-row fit adds <= {FIT_MEMORY:g}x its int "
                     "arrays",
                     f"**{'PASS' if added <= FIT_MEMORY else 'MISS'}**",
                     f"({peak:,.0f} - {fit['rss_before_mb']:,.0f}) MB / "
                     f"{fit['train_int_mb']:,.0f} MB = {added:.2f}x ({fit['size']} sizes, "
                     f"{source})"])
    build = report["extra"].get("history_building")
    if build and "error" not in build:
        speedup = build["theirs_s"] / build["ours_s"]
        rows.append([f"history building >= {HISTORY_BUILDING:g}x create_seq_features "
                     f"({build['rows']:,}-click log)",
                     f"**{'PASS' if speedup >= HISTORY_BUILDING else 'MISS'}**",
                     f"{build['theirs_s']:.2f} s / {build['ours_s']:.2f} s = {speedup:.1f}x"])
    return rows


def gflops(entry: dict, data: dict) -> float:
    meta = data[entry["dataset"]]
    return train_flops(entry["size"], meta["hist_len_sum"], meta["n_train"]) / (
        entry["ours"]["median_epoch_s"] * 1e9)


def thread_scaling(report: dict) -> list[tuple[str, float | None, bool]]:
    by = {(e["dataset"], e["size"], e["threads"]): e["ours"] for e in report["runs"]}
    out = []
    for (name, size, threads), ours in by.items():
        one = by.get((name, size, 1))
        if threads == 2 and one is not None:
            ok = "error" not in ours and "error" not in one
            out.append((f"{name} {size}",
                        ours["train_rows_per_s"] / one["train_rows_per_s"] if ok else None, True))
    return out


def render(report: dict) -> str:
    info, data, args = report["machine"], report["datasets"], report["args"]
    peers = [p for p in PEERS if p in args["peers"]]
    names = "vs " + ", ".join(PEERS[p] for p in peers) if peers else "alone"
    lines = [f"# Training and prediction speed: sklearn-din {names}",
             "", f"Command: `{report['command']}` (runtime {report['runtime_s'] / 60:.1f} min)", "",
             machine_line(info) + " Peers: " + ", ".join(f"{k} {v}" for k, v in
                                                         info["peers"].items()) + ".", ""]
    digests = {r.get("source_digest") for e in report["runs"] for r in e.values()
               if isinstance(r, dict)} - {None}
    if digests - {info["source_digest"]}:
        lines += [f"**Warning: sklearn_din's source changed during the run** ({sorted(digests)}).",
                  ""]
    lines += ["## Data", ""] + markdown_table(
        ["data", "histories", "clicks", "users", "train rows", "test rows", "mean history",
         "rows with a full history"],
        [[n, m["kind"], f"{m['clicks']:,}", f"{m['users']:,}", f"{m['n_train']:,}",
          f"{m['n_test']:,}", f"{m['mean_hist_len']:.1f} of {MAX_LEN}", f"{m['share_full']:.0%}"]
         for n, m in data.items()])
    lines += [f"\nSkipped: {name}, {why}." for name, why in report.get("skipped", {}).items()]
    lines += ["", f"Every system: embedding {EMBED_DIM}, history {MAX_LEN}, batch {BATCH_SIZE}, "
              f"Adam lr {LR}, {args['epochs']} epoch(s) on the same rows; predictions on the test "
              "rows followed by the training rows, the median of "
              f"{PREDICT_REPEATS} calls for every system. Sizes: tutorial = attention and MLP "
              "(256, 128); paper = attention (80, 40), MLP (200, 80).", ""]
    for key, what in (("train_rows_per_s", "Train"), ("predict_rows_per_s", "Predict")):
        lines += [f"## {what} rows/s (sklearn-din's speed-up over each peer)", ""]
        lines += markdown_table(
            ["data", "sizes", "threads", "sklearn-din", *(PEERS[p] for p in peers)],
            [[e["dataset"], e["size"], e["threads"], cell(e["ours"], key)]
             + [cell(e.get(p), key, ratio(e["ours"], e.get(p), key)) for p in peers]
             for e in report["runs"]])
        lines.append("")
    lines += ["## Test AUC after the same epochs (+/- one standard error)", ""]
    lines += markdown_table(
        ["data", "sizes", "threads", "sklearn-din", *(PEERS[p] for p in peers)],
        [[e["dataset"], e["size"], e["threads"]]
         + [auc_cell(e.get(s), data[e["dataset"]]["n_test"]) for s in ("ours", *peers)]
         for e in report["runs"]])
    matmul = {t: max(v) for t, v in report["matmul"].items()}
    scaling = {name: v for name, v, _ in thread_scaling(report)}
    lines += ["", "## sklearn-din's train step against the machine's matmul rate", "",
              "Non-padding GFLOP/s of sklearn-din's median training epoch against the fp32 "
              f"matmul rate at the same thread count (square {'512' if args['quick'] else '2048'}"
              "^3, best of before and after the systems: "
              + ", ".join(f"{t} thread(s) {v:.1f}" for t, v in matmul.items()) + " GFLOP/s).", ""]
    efficiency = []
    for e in report["runs"]:
        rate = None if "error" in e["ours"] else gflops(e, data)
        two_vs_one = scaling.get(f"{e['dataset']} {e['size']}") if e["threads"] == 2 else None
        efficiency.append([e["dataset"], e["size"], e["threads"], fmt(rate, ".1f"),
                           fmt(rate and rate / matmul[str(e["threads"])], ".0%"),
                           "" if two_vs_one is None else f"{two_vs_one:.2f}x"])
    lines += markdown_table(["data", "sizes", "threads", "GFLOP/s", "share of matmul rate",
                             "2 threads vs 1"], efficiency)
    if report["profile"]:
        lines += ["", "## Where the rest of sklearn-din's train step goes", "",
                  "`torch.profiler` over one training epoch after a warm-up epoch, 1 thread: "
                  "share of the ops' self CPU time (aten's and Dice's compiled kernels), "
                  "calls per step.", ""]
        lines += markdown_table(
            ["data", "sizes", "ms per step", "matmul share", "top ops (share, calls per step)"],
            [[p["dataset"], p["size"], "failed" if "error" in p else f"{p['step_ms']:.1f}",
              "" if "error" in p else f"{p['matmul_share']:.0%}",
              p["error"][-200:] if "error" in p else ", ".join(
                  f"`{o['op']}` {o['share']:.0%} ({o['calls_per_step']:.0f})"
                  for o in p["top_ops"])] for p in report["profile"]])
    errors = [(e["dataset"], e["size"], e["threads"], s, r["error"]) for e in report["runs"]
              for s, r in e.items() if isinstance(r, dict) and "error" in r]
    if errors:
        lines += ["", "## Failed runs (the error each printed)", ""]
        lines += [f"- {d} {size} {t}t {PEERS.get(s, 'sklearn-din')}:\n\n  ```\n  "
                  + err.strip().replace("\n", "\n  ") + "\n  ```" for d, size, t, s, err in errors]
    lines += ["", "## Issue 18's targets (ratios from this one run)", ""]
    lines += markdown_table(["target", "result", "measured"], verdicts(report))
    fit = report["extra"].get("fit_memory")
    if fit:
        lines += ["", f"Fit memory: one epoch of `fit` ({fit['size']} sizes) on "
                  f"{fit.get('n_train', 0):,} rows of a synthetic-short log in a process already "
                  "holding them (the high-water mark reset after loading; peak = VmHWM, see "
                  "`fit_memory`); int arrays = the training DataFrame's int32 block plus the "
                  "int8 labels. `benchmarks/fit_memory.py` measures it alone."
                  + (f" Failed: {fit['error'][-300:]}" if "error" in fit else "")]
    if args["quick"]:
        lines += ["", "**--quick smoke run: tiny data, the numbers are not measurements.**"]
    return "\n".join(lines) + "\n"


def cell(result: dict | None, key: str, speedup: float | None = None) -> str:
    if result is None:
        return "not run"
    if "error" in result:
        return "failed (below)"
    return f"{result[key]:,.0f}" + (f" ({speedup:.1f}x)" if speedup is not None else "")


def auc_cell(result: dict | None, n_test: int) -> str:
    if result is None or "error" in result:
        return "n/a"
    return f"{result['test_auc']:.4f} (+/- {auc_se(result['test_auc'], n_test // 2, n_test - n_test // 2):.4f})"  # noqa: E501


# ================================================================================ command line
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke run (< 2 min): tiny data, 1 epoch, tutorial sizes, 1 thread, "
                        "sklearn-din once, one profile")
    p.add_argument("--threads", default=None, help="comma list of torch thread counts "
                   "(default 1,2; quick 1)")
    p.add_argument("--sizes", default=None, help="comma list of tutorial,paper (quick: tutorial)")
    p.add_argument("--datasets", default=",".join(DATASETS), help="comma list")
    p.add_argument("--skip", default="", help="comma list of peers (rechub,deepctr,fuxictr) "
                   "or 'peers' to time sklearn-din alone")
    p.add_argument("--n-train", type=int, default=None,
                   help="training rows of the side-by-side runs (default 6,000; quick 300)")
    p.add_argument("--epochs", type=int, default=None, help="default 2; quick 1")
    p.add_argument("--fit-rows", type=int, default=None,
                   help="training rows of sklearn-din's fit-memory run and clicks of the "
                        "history-building log (default 1,000,000; quick 3,000; 0: neither)")
    p.add_argument("--fit-size", default="tutorial", choices=list(SIZES))
    p.add_argument("--build-repeats", type=int, default=None, help="default 2; quick 1")
    p.add_argument("--no-profile", action="store_true")
    p.add_argument("--data-dir", type=Path, default=DATA,
                   help="shared data sets (env SKLEARN_DIN_DATA)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--worker-timeout", type=float, default=None, help="seconds per system run")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    p.add_argument("--render-from", type=Path, default=None, metavar="JSON",
                   help="only re-write speed.md (into --out-dir) from an earlier speed.json")
    add_worker_arguments(p)
    args = p.parse_args(argv)
    quick = args.quick
    args.threads = [int(t) for t in (args.threads or ("1" if quick else "1,2")).split(",")]
    args.sizes = (args.sizes or ("tutorial" if quick else "tutorial,paper")).split(",")
    args.datasets = args.datasets.split(",")
    args.skip = [s for s in args.skip.split(",") if s]
    args.peers = [] if "peers" in args.skip else [p for p in PEERS if p not in args.skip]
    for value, default in (("n_train", (300, 6_000)), ("epochs", (1, 2)),
                           ("fit_rows", (3_000, 1_000_000)), ("build_repeats", (1, 2))):
        if getattr(args, value) is None:
            setattr(args, value, default[0] if quick else default[1])
    for bad, allowed, name in ((args.sizes, SIZES, "--sizes"), (args.datasets, DATASETS,
                                                                 "--datasets")):
        if set(bad) - set(allowed):
            p.error(f"{name}: unknown {sorted(set(bad) - set(allowed))}; "
                    f"choose from {list(allowed)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if answer_worker(args, worker):
        return 0
    if args.render_from is not None:
        report = json.loads(args.render_from.read_text())
    else:
        command = "benchmarks/.venv/bin/python benchmarks/speed.py " + " ".join(
            sys.argv[1:] if argv is None else argv)
        report = run(args, command.strip())
    markdown = render(report)
    report["targets"] = verdicts(report)
    print(markdown)
    write_report(args.out_dir, "speed", markdown, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
