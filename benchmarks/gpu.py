"""sklearn-din on an NVIDIA GPU: training and prediction speed, fp32 vs bf16 autocast, and a
GPU-vs-CPU prediction check (what it does, step by step: the header of benchmarks/gpu.sh).

Run through ``bash benchmarks/gpu.sh`` (it makes skorch importable without network access and
puts the checkout on PYTHONPATH), or directly: ``python3 benchmarks/gpu.py --out PATH.md``.
"""

import argparse
import copy
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sklearn_din import DINClassifier, SequenceFeatureTransformer
from sklearn_din._batching import TensorBatchIterator
from sklearn_din.datasets import leave_last_out_split, make_interactions, sample_negatives

SIZES = {
    "tutorial": {"attention_units": (256, 128), "hidden_units": (256, 128)},
    "paper": {"attention_units": (80, 40), "hidden_units": (200, 80)},
}
EMBED_DIM, MAX_LEN, LR = 8, 50, 1e-3

parser = argparse.ArgumentParser(prog="benchmarks/gpu.sh")
parser.add_argument("--out", type=Path, required=True)
parser.add_argument("--device", default="cuda")
parser.add_argument("--quick", action="store_true", help="tiny data, for a CPU smoke test")
parser.add_argument("--rows", type=int, default=None, help="training rows (default 1,000,000)")
parser.add_argument("--epochs", type=int, default=None, help="epochs per fit (default 3)")
parser.add_argument("--batches", default="1024,8192")
parser.add_argument("--sizes", default="tutorial,paper")
parser.add_argument("--check-rows", type=int, default=5000, help="rows of the GPU-vs-CPU check")
parser.add_argument("--budget-s", type=float, default=480.0,
                    help="skip the remaining configurations once this much time has passed")
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()
args.rows = args.rows or (4_000 if args.quick else 1_000_000)
args.epochs = args.epochs or (2 if args.quick else 3)
batches = [int(b) for b in args.batches.split(",") if b]
sizes = [s for s in args.sizes.split(",") if s]
T0 = time.perf_counter()
device = torch.device(args.device)
is_cuda = device.type == "cuda"
if is_cuda and not torch.cuda.is_available():
    sys.exit("gpu.sh: --device cuda but torch.cuda.is_available() is False "
             f"(torch {torch.__version__}, built for CUDA {torch.version.cuda})")
torch.set_num_threads(max(1, min(8, os.cpu_count() or 1)))


def sync():
    if is_cuda:
        torch.cuda.synchronize(device)


def elapsed():
    return time.perf_counter() - T0


def git_rev():
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "sklearn_din"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + (" (sklearn_din modified)" if dirty else "") if rev else "unknown"
    except Exception:
        return "unknown"


def fmt(x, spec=",.0f"):
    missing = x is None or (isinstance(x, float) and not math.isfinite(x))
    return "n/a" if missing else format(x, spec)


def train_flops(size, hist_len_sum, n_rows):
    """Analytic non-padding FLOPs of one training pass (as benchmarks/speed.py counts them)."""
    item_dim = 2 * EMBED_DIM
    att = [4 * item_dim, *SIZES[size]["attention_units"], 1]
    mlp = [2 * item_dim + EMBED_DIM, *SIZES[size]["hidden_units"], 1]
    per_pos = sum(2 * a * b for a, b in zip(att, att[1:], strict=False))
    per_row = sum(2 * a * b for a, b in zip(mlp, mlp[1:], strict=False))
    return 3.0 * (per_pos * hist_len_sum + per_row * n_rows)


# ---------------------------------------------------------------- machine
if is_cuda:
    props = torch.cuda.get_device_properties(device)
    device_name = (f"{props.name}, {props.total_memory / 2**30:.0f} GiB, "
                   f"{props.multi_processor_count} SMs")
else:
    device_name = (f"CPU ({platform.processor() or platform.machine()}), "
                   f"{torch.get_num_threads()} threads")
info = {
    "date": datetime.datetime.now().isoformat(timespec="seconds"),
    "device": device_name,
    "torch": torch.__version__,
    "cuda": torch.version.cuda,
    "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
    "python": platform.python_version(),
    "pandas": pd.__version__,
    "git": git_rev(),
}
print(f"{info['device']}; torch {info['torch']} (CUDA {info['cuda']}), git {info['git']}")

matmul = {}
try:
    n = 512 if args.quick else 8192
    for dtype in (torch.float32, torch.bfloat16):
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        a @ b
        sync()
        reps = 3 if args.quick else 10
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync()
        seconds = time.perf_counter() - start
        matmul[str(dtype).replace("torch.", "")] = 2 * n**3 * reps / seconds / 1e12
    del a, b
    print("matmul TFLOP/s: " + ", ".join(f"{k} {v:.1f}" for k, v in matmul.items()))
except Exception as exc:
    print(f"matmul measurement failed: {exc}")

# ---------------------------------------------------------------- data
start = time.perf_counter()
n_users = int(args.rows / 36 * 1.05) + 20
log = make_interactions(n_users=n_users, n_items=max(2_000, n_users // 3), n_categories=50,
                        random_state=args.seed)
rows = sample_negatives(log, random_state=args.seed)
train, valid, test = leave_last_out_split(rows)
features = SequenceFeatureTransformer(max_len=MAX_LEN)
features.fit(train.drop(columns="label"), train["label"])
X = features.transform(train.drop(columns="label")).iloc[: args.rows]
y = train["label"].to_numpy()[: args.rows]
features.partial_fit(valid.drop(columns="label"), valid["label"])
X_test = features.transform(test.drop(columns="label"))
y_test = test["label"].to_numpy()
hist_len_sum = int(X["hist_len"].sum())
data_s = time.perf_counter() - start
print(f"data: {len(X):,} training rows (mean history {X['hist_len'].mean():.1f} of {MAX_LEN}), "
      f"{len(X_test):,} test rows, built on the CPU in {data_s:.1f}s")


def make_clf(size, batch, epochs):
    # Whole histories, as the CPU figures of speed.py (the same work per row).
    return DINClassifier(embed_dim=EMBED_DIM, **SIZES[size], batch_size=batch, max_epochs=epochs,
                         lr=LR, device=args.device, verbose=0, train_split=None,
                         behaviour_dropout=0.0, random_state=args.seed)


def manual_epoch(module, inputs, target, batch, autocast_dtype, max_steps=None):
    """One pass of a hand-written training loop; returns (seconds, rows). Warm-up steps first."""
    module.train()
    optimizer = torch.optim.Adam(module.parameters(), lr=LR)
    criterion = torch.nn.BCEWithLogitsLoss()
    generator = torch.Generator().manual_seed(args.seed)
    batches = TensorBatchIterator(inputs, target, batch_size=batch, shuffle=True,
                                  generator=generator, device=device)

    def step(xb, yb):
        optimizer.zero_grad(set_to_none=True)
        if autocast_dtype is None:
            logits = module(**xb)
        else:
            with torch.autocast(device_type=device.type, dtype=autocast_dtype):
                logits = module(**xb)
        loss = criterion(logits.float(), yb)
        loss.backward()
        optimizer.step()
        return loss

    for i, (xb, yb) in enumerate(batches):  # warm-up: kernels, autotuning, allocator
        step(xb, yb)
        if i >= 4:
            break
    sync()
    n_rows, start = 0, time.perf_counter()
    for i, (xb, yb) in enumerate(batches):
        loss = step(xb, yb)
        n_rows += len(yb)
        if max_steps is not None and i + 1 >= max_steps:
            break
    sync()
    seconds = time.perf_counter() - start
    if not torch.isfinite(loss).item():
        raise FloatingPointError(f"loss is {loss.item()}")
    return seconds, n_rows


# ---------------------------------------------------------------- runs
results, notes = [], []
check = None
inputs_cache = None
for size in sizes:
    for batch in batches:
        if elapsed() > args.budget_s:
            notes.append(f"skipped {size} / batch {batch}: time budget {args.budget_s:.0f}s spent")
            print(notes[-1])
            continue
        entry = {"size": size, "batch": batch}
        try:
            clf = make_clf(size, batch, args.epochs)
            start = time.perf_counter()
            clf.fit(X, y)
            sync()
            entry["fit_wall_s"] = time.perf_counter() - start
            durs = [float(d) for d in clf.history[:, "dur"]]
            steady = durs[1:] if len(durs) > 1 else durs
            entry["epoch_s"] = durs
            entry["train_rows_per_s"] = len(X) / float(np.median(steady))
            entry["train_tflops_nonpadding"] = (
                train_flops(size, hist_len_sum, len(X)) / float(np.median(steady)) / 1e12)
            if inputs_cache is None:  # the network's input arrays, built once
                inputs_cache = clf.layout_.to_arrays(X, clf.history_vocab_sizes_,
                                                     clf.sparse_vocab_sizes_)
            clf.predict_proba(X_test.iloc[:2048])  # warm-up
            sync()
            start = time.perf_counter()
            proba_train = clf.predict_proba(X)[:, 1]
            sync()
            entry["predict_rows_per_s"] = len(X) / (time.perf_counter() - start)
            start = time.perf_counter()
            clf.predict_proba(inputs_cache)  # a dict of arrays skips validation and building
            sync()
            entry["predict_arrays_rows_per_s"] = len(X) / (time.perf_counter() - start)
            proba_test = clf.predict_proba(X_test)[:, 1]
            from sklearn.metrics import roc_auc_score
            entry["test_auc"] = float(roc_auc_score(y_test, proba_test))
            del proba_train
            if check is None and size == sizes[0]:
                # GPU fit -> module copied to the CPU -> same probabilities?
                rows_ = X_test.iloc[: args.check_rows]
                p_dev = clf.predict_proba(rows_)[:, 1]
                cpu_clf = copy.deepcopy(clf)
                cpu_clf.module_.to("cpu")
                cpu_clf.device = "cpu"
                p_cpu = cpu_clf.predict_proba(rows_)[:, 1]
                diff = float(np.max(np.abs(p_dev - p_cpu)))
                check = {"size": size, "batch": batch, "rows": len(rows_), "max_abs_diff": diff,
                         "passed": bool(diff <= 1e-4)}
                print(f"GPU-vs-CPU predict_proba on {len(rows_):,} rows: max |diff| {diff:.2e} "
                      f"-> {'PASS' if check['passed'] else 'FAIL'} (tolerance 1e-4)")
                del cpu_clf
            # fp32 vs bf16 autocast: hand-written loop over the same module and data.
            target = (y == clf.classes_[1]).astype(np.float32)
            for label, dtype in (("manual_fp32", None), ("manual_bf16", torch.bfloat16)):
                try:
                    module = copy.deepcopy(clf.module_)
                    seconds, n = manual_epoch(module, inputs_cache, target, batch, dtype)
                    entry[f"{label}_rows_per_s"] = n / seconds
                    entry[f"{label}_tflops_nonpadding"] = (
                        train_flops(size, hist_len_sum, len(X)) * n / len(X) / seconds / 1e12)
                    del module
                except Exception as exc:
                    entry[f"{label}_error"] = f"{type(exc).__name__}: {exc}"
                    print(f"  {label} failed: {entry[label + '_error']}")
            del clf
            if is_cuda:
                entry["max_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
                torch.cuda.reset_peak_memory_stats(device)
                torch.cuda.empty_cache()
        except Exception as exc:
            entry["error"] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        results.append(entry)
        print(f"  {size:>8} batch {batch:>5}: fit {fmt(entry.get('train_rows_per_s'))} rows/s, "
              f"manual fp32 {fmt(entry.get('manual_fp32_rows_per_s'))}, manual bf16 "
              f"{fmt(entry.get('manual_bf16_rows_per_s'))}, predict "
              f"{fmt(entry.get('predict_rows_per_s'))} rows/s, AUC "
              f"{fmt(entry.get('test_auc'), '.4f')} ({elapsed():.0f}s)")

# ---------------------------------------------------------------- report
lines = [
    "# sklearn-din on a GPU: training and prediction speed",
    "",
    f"Command: `bash benchmarks/gpu.sh {' '.join(sys.argv[3:])}`; {info['date']}; device "
    f"**{info['device']}**; torch {info['torch']} (CUDA {info['cuda']}, TF32 matmul "
    f"{'on' if info['tf32_matmul'] else 'off'}); Python {info['python']}; git {info['git']}. "
    f"Total runtime {elapsed():.0f}s.",
    "",
    f"Data: synthetic CTR set, {len(X):,} training rows (make_interactions + one sampled negative "
    f"per click + leave_last_out_split + SequenceFeatureTransformer(max_len={MAX_LEN}); mean "
    f"history {X['hist_len'].mean():.1f} of {MAX_LEN}), {len(X_test):,} test rows. Embedding "
    f"{EMBED_DIM}, Adam lr {LR}, {args.epochs} epochs per fit.",
    "",
]
if matmul:
    lines += ["Dense matmul on this device: " + ", ".join(
        f"{k} {v:.1f} TFLOP/s" for k, v in matmul.items()) + ".", ""]
lines += [
    "| sizes | batch | fit train rows/s (fp32) | manual loop fp32 rows/s | manual loop bf16 "
    "autocast rows/s | bf16 / fp32 | predict rows/s (DataFrame) | predict rows/s (arrays) | "
    "test AUC | non-padding TFLOP/s (fit) | peak GPU memory GiB |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
]
for e in results:
    if "error" in e:
        lines.append(f"| {e['size']} | {e['batch']} | failed: {e['error'][:150]} |||||||||")
        continue
    f32, b16 = e.get("manual_fp32_rows_per_s"), e.get("manual_bf16_rows_per_s")
    ratio = b16 / f32 if f32 and b16 else None
    b16_cell = fmt(b16) if b16 else "failed: " + e.get("manual_bf16_error", "?")[:120]
    lines.append(
        f"| {e['size']} | {e['batch']} | {fmt(e['train_rows_per_s'])} | {fmt(f32)} | {b16_cell} | "
        f"{fmt(ratio, '.2f')} | {fmt(e['predict_rows_per_s'])} | "
        f"{fmt(e['predict_arrays_rows_per_s'])} | {e['test_auc']:.4f} | "
        f"{e['train_tflops_nonpadding']:.2f} | {fmt(e.get('max_memory_gib'), '.2f')} |")
lines += [
    "",
    "Fit train rows/s: `DINClassifier(device=...).fit`, median epoch after the first (skorch's "
    "`history[:, 'dur']`). DINClassifier has no autocast option, so fp32 vs bf16 is a "
    "hand-written loop over a copy of the fitted module and the same data (sklearn-din's "
    "`TensorBatchIterator`, Adam, BCE-with-logits on float32 logits): one epoch after 5 warm-up "
    "steps, with and without `torch.autocast(dtype=torch.bfloat16)`. Predict rows/s: "
    "`predict_proba` on the training DataFrame (input validation and array building on the "
    "CPU included) and on the pre-built dict of input arrays (the network alone). "
    "Non-padding TFLOP/s: the analytic count of benchmarks/speed.py "
    "(attention MLP on the 4D input per real history position, output MLP per row, x3).",
    "",
]
if check is not None:
    lines += [
        f"GPU-vs-CPU check ({check['size']} sizes, batch {check['batch']}): fit on "
        f"{args.device}, module copied to the CPU, `predict_proba` on {check['rows']:,} test rows: "
        f"max |difference| {check['max_abs_diff']:.2e} -> "
        f"**{'PASS' if check['passed'] else 'FAIL'}** "
        "(tolerance 1e-4).",
        "",
    ]
else:
    lines += ["GPU-vs-CPU check: not run (the first configuration failed or was skipped).", ""]
lines += [f"- {n}" for n in notes]
markdown = "\n".join(lines) + "\n"
print()
print(markdown)
args.out.parent.mkdir(parents=True, exist_ok=True)
args.out.write_text(markdown)
args.out.with_suffix(".json").write_text(json.dumps(
    {"info": info, "matmul_tflops": matmul, "results": results, "check": check, "notes": notes,
     "rows": len(X), "test_rows": len(X_test), "data_s": data_s, "runtime_s": elapsed()},
    indent=2, default=str))
print(f"wrote {args.out} and {args.out.with_suffix('.json')}")
failed = [e for e in results if "error" in e]
sys.exit(1 if failed or (check is not None and not check["passed"]) else 0)
