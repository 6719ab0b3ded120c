"""Memory benchmark: peak RSS of predict_proba (streamed) and of the transformer on large logs.

Every case runs in a fresh subprocess, one at a time, with one torch thread. Each child
measures its peak with ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` and takes as baseline
its current RSS (``VmRSS``) just before the measured call. Before that baseline the child
resets its high-water mark (``echo 5 > /proc/self/clear_refs``, Linux >= 4.0), so that the
peak of building the inputs cannot hide the peak of the call; the tables say whether the
reset worked.

1. ``predict_proba`` streaming. A child fits a small DINClassifier (1 epoch on ~50k
   rows of ``make_interactions`` + ``sample_negatives`` through
   ``SequenceFeatureTransformer(max_len=50)``), saves it with ``save_model`` and keeps the
   transformed int32 rows. Each predict child loads the model, builds an n-row input
   frame by repeating those rows (one int32 block, ``DataFrame(block, copy=False)``: the
   layout the transformer returns), then calls ``predict_proba`` once. Reported: peak
   minus the baseline (input frame already built and held), against the (n, 2) float64
   output. One more child calls ``decision_function`` on the largest frame, to separate
   the streaming loop from ``predict_proba``'s own float64 arrays.
2. The transformer on large logs. Each child generates a log with ``make_interactions``
   (``n_users = rows // 20``: about ``rows`` rows, cut to at most ``rows``), then runs
   ``SequenceFeatureTransformer(max_len=50).fit(log)`` and ``.transform(log)``, with the
   high-water mark reset between the two, and reports each peak, the log's and the
   output's sizes, and the times.

Usage::

    python benchmarks/memory.py --quick   # small sizes: ~40 s CPU (1.5 min on 2 busy cores)
    python benchmarks/memory.py           # ~9 minutes on 2 busy cores; largest child ~5.3 GB

Writes benchmarks/results/memory.md and memory.json (--quick: memory-quick.md/.json).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MB = 1 << 20

FULL = {"fit_rows": 50_000, "predict_rows": [500_000, 2_000_000, 5_000_000],
        "log_rows": [1_000_000, 3_000_000, 10_000_000]}
QUICK = {"fit_rows": 10_000, "predict_rows": [70_000, 140_000, 210_000],
         "log_rows": [100_000, 200_000, 400_000]}


# ----------------------------------------------------------------------------- in the child
def _status() -> dict[str, int]:
    """VmRSS and VmHWM of this process, in bytes."""
    values = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                values[key] = int(value.split()[0]) * 1024
    return values


def _rss() -> int:
    return _status()["VmRSS"]


def _maxrss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def _reset_peak() -> bool:
    """Reset the kernel's high-water mark to the current RSS; False where not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return _maxrss() <= _rss() + 4 * MB


def _settle() -> tuple[int, bool]:
    """Collect garbage, reset the high-water mark; the baseline RSS and whether it reset."""
    import gc

    gc.collect()
    reset = _reset_peak()
    return _rss(), reset


def _child_setup() -> None:
    import torch

    torch.set_num_threads(1)


def child_fit(spec: dict) -> dict:
    """Fit the small model once; save it and its transformed rows for the predict children."""
    _child_setup()
    import numpy as np

    from sklearn_din import DINClassifier, SequenceFeatureTransformer, save_model
    from sklearn_din.datasets import make_interactions, sample_negatives

    # ~20 clicks per user, one negative each: ~40 rows per user.
    log = make_interactions(n_users=spec["fit_rows"] // 40, random_state=spec["seed"])
    rows = sample_negatives(log, random_state=spec["seed"])
    X, y = rows.drop(columns="label"), rows["label"].to_numpy()
    transformer = SequenceFeatureTransformer(max_len=50).fit(X, y)
    Xt = transformer.transform(X)
    if not all(t == np.int32 for t in Xt.dtypes):
        raise TypeError(f"expected int32 columns only, got {set(Xt.dtypes)}")
    start = time.perf_counter()
    model = DINClassifier(max_epochs=1, verbose=0, random_state=spec["seed"]).fit(Xt, y)
    fit_s = time.perf_counter() - start
    work = Path(spec["work"])
    save_model(model, work / "model.npz")
    np.save(work / "rows.npy", Xt.to_numpy())
    (work / "columns.json").write_text(json.dumps([str(c) for c in Xt.columns]))
    return {"fit_rows": len(Xt), "n_columns": Xt.shape[1], "fit_s": fit_s,
            "mean_hist_len": float(Xt["hist_len"].mean())}


def child_predict(spec: dict) -> dict:
    """One call of predict_proba (or decision_function) on an n-row repeated frame."""
    _child_setup()
    import numpy as np
    import pandas as pd

    from sklearn_din import load_model
    from sklearn_din._classifier import PREDICT_CHUNK_ROWS

    work, n = Path(spec["work"]), spec["rows"]
    model = load_model(work / "model.npz")
    rows = np.load(work / "rows.npy")
    columns = json.loads((work / "columns.json").read_text())
    rss_model = _rss()
    # The n-row input: the fitted rows repeated into one preallocated int32 block (no
    # temporary copy), wrapped without copying, as SequenceFeatureTransformer returns it.
    block = np.empty((n, rows.shape[1]), dtype=np.int32)
    for lo in range(0, n, len(rows)):
        hi = min(lo + len(rows), n)
        block[lo:hi] = rows[: hi - lo]
    X = pd.DataFrame(block, columns=columns, copy=False)
    if not np.shares_memory(X.to_numpy(), block):
        raise RuntimeError("the DataFrame copied the block")
    del block
    frame_bytes = int(X.memory_usage(index=True, deep=True).sum())

    # Warm-up: the process's first call on one chunk pays torch's one-time set-up; measured
    # apart, so that the n-row call shows what depends on n.
    method = getattr(model, spec["method"])
    warm_rows = min(n, PREDICT_CHUNK_ROWS)
    before_warm, _ = _settle()
    method(X.iloc[:warm_rows])
    warm_extra = _maxrss() - before_warm

    baseline, reset = _settle()
    start = time.perf_counter()
    out = method(X)
    seconds = time.perf_counter() - start
    peak = _maxrss()
    if len(out) != n or not np.isfinite(out).all():
        raise RuntimeError("bad output")
    return {"method": spec["method"], "rows": n, "frame_bytes": frame_bytes,
            "output_bytes": int(out.nbytes), "rss_model": rss_model,
            "warm_rows": warm_rows, "warm_extra": warm_extra,
            "baseline": baseline, "peak": peak, "rss_after": _rss(), "peak_reset": reset,
            "seconds": seconds, "chunk_rows": PREDICT_CHUNK_ROWS}


def child_transform(spec: dict) -> dict:
    """fit then transform of SequenceFeatureTransformer(max_len=50) on a generated log."""
    _child_setup()
    import numpy as np

    from sklearn_din import SequenceFeatureTransformer
    from sklearn_din.datasets import make_interactions

    n = spec["rows"]
    rss_imports = _rss()
    start = time.perf_counter()
    # As benchmarks/transform_speed.py: about `rows` clicks (cut to at most `rows`).
    log = make_interactions(n_users=max(n // 20, 10), n_items=max(n // 100, 100),
                            n_categories=50, random_state=spec["seed"])
    log = log.iloc[:n].reset_index(drop=True)
    generate_s = time.perf_counter() - start
    log_bytes = int(log.memory_usage(index=True, deep=True).sum())

    baseline, reset_fit = _settle()
    start = time.perf_counter()
    transformer = SequenceFeatureTransformer(max_len=50).fit(log)
    fit_s = time.perf_counter() - start
    peak_fit = _maxrss()
    store = transformer.behaviour_store_
    store_bytes = store.nbytes

    rss_fitted, reset_transform = _settle()
    start = time.perf_counter()
    out = transformer.transform(log)
    transform_s = time.perf_counter() - start
    peak_transform = _maxrss()
    output_bytes = int(out.memory_usage(index=True, deep=True).sum())
    n = len(log)  # make_interactions gives about, not exactly, the rows asked for
    if out.shape != (n, 104) or not all(t == np.int32 for t in out.dtypes):
        raise RuntimeError(f"unexpected output {out.shape}")
    return {"rows": n, "rows_asked": spec["rows"], "users": int(log["user_id"].nunique()),
            "mean_hist_len": float(out["hist_len"].mean()),
            "log_bytes": log_bytes, "output_bytes": output_bytes,
            "output_block_bytes": n * 104 * 4, "store_bytes": store_bytes,
            "rss_imports": rss_imports, "baseline": baseline, "peak_fit": peak_fit,
            "rss_fitted": rss_fitted, "peak_transform": peak_transform,
            "rss_after": _rss(), "peak_reset": reset_fit and reset_transform,
            "generate_s": generate_s, "fit_s": fit_s, "transform_s": transform_s}


CHILDREN = {"fit": child_fit, "predict": child_predict, "transform": child_transform}


# ---------------------------------------------------------------------------- in the parent
def run_child(kind: str, spec: dict, work: Path) -> dict:
    result_path = work / "result.json"
    result_path.unlink(missing_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", kind, json.dumps(spec), str(result_path)],
        capture_output=True, text=True, env=env,
    )
    if proc.returncode != 0 or not result_path.exists():
        sys.stderr.write(proc.stdout[-5000:] + proc.stderr[-5000:])
        raise RuntimeError(f"child {kind} {spec} failed with code {proc.returncode}")
    result = json.loads(result_path.read_text())
    result["child_wall_s"] = time.perf_counter() - start
    return result


def _fit_line(x: list[float], y: list[float]) -> tuple[float, float]:
    """Least-squares slope and intercept."""
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxx = sum((a - mx) ** 2 for a in x)
    slope = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / sxx
    return slope, my - slope * mx


def _mb(value: float) -> str:
    return f"{value / MB:,.0f}"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def predict_section(fit: dict, runs: list[dict]) -> tuple[str, dict]:
    proba = [r for r in runs if r["method"] == "predict_proba"]
    header = ["method", "rows", "input frame MB", "first call (1 chunk) extra MB",
              "RSS before call MB", "peak RSS MB",
              "extra = peak - before MB", "(n, 2) output MB", "extra - output MB",
              "extra - 32 B/row MB", "s", "rows/s"]
    rows = []
    for r in runs:
        extra = r["peak"] - r["baseline"]
        rows.append([
            f"`{r['method']}`", f"{r['rows']:,}", _mb(r["frame_bytes"]), _mb(r["warm_extra"]),
            _mb(r["baseline"]),
            _mb(r["peak"]), _mb(extra), _mb(16 * r["rows"]), _mb(extra - 16 * r["rows"]),
            _mb(extra - 32 * r["rows"]), f"{r['seconds']:.1f}",
            f"{r['rows'] / r['seconds']:,.0f}"])
    slope, intercept = _fit_line([r["rows"] for r in proba],
                                 [r["peak"] - r["baseline"] for r in proba])
    beyond = [r["peak"] - r["baseline"] - 16 * r["rows"] for r in proba]
    flat = [r["peak"] - r["baseline"] - 32 * r["rows"] for r in proba]
    summary = {"slope_bytes_per_row": slope, "intercept_bytes": intercept,
               "extra_minus_output_bytes": beyond, "extra_minus_32n_bytes": flat}
    decision = [r for r in runs if r["method"] == "decision_function"]
    text = [
        "## 1. `predict_proba` on n rows: streamed in chunks of "
        f"{proba[0]['chunk_rows']:,} rows\n",
        f"Model: `DINClassifier(max_epochs=1, random_state=0)` (defaults otherwise: embed 8, "
        f"attention (80, 40), MLP (200, 80), Dice) fit on {fit['fit_rows']:,} rows "
        f"({fit['fit_s']:.1f} s), saved with `save_model` and loaded with `load_model` in each "
        f"child. Input: those {fit['fit_rows']:,} transformed rows ({fit['n_columns']} int32 "
        f"columns, mean history {fit['mean_hist_len']:.1f} of 50) repeated to n rows in one "
        "int32 block wrapped by `DataFrame(..., copy=False)`, built before the baseline (the "
        "caller holds it). Each child first calls the method once on the first "
        f"{proba[0]['warm_rows']:,} rows (`first call`: torch's one-time set-up included), "
        "then once on all n rows: `extra` = peak RSS during that call minus RSS just before "
        "it.\n",
        _md_table(header, rows) + "\n",
        f"Least-squares line over the `predict_proba` rows: extra = {_mb(intercept)} MB + "
        f"{slope:.1f} B x rows. extra - output ranges {_mb(min(beyond))} .. "
        f"{_mb(max(beyond))} MB, extra - 32 B x rows {_mb(min(flat))} .. {_mb(max(flat))} MB "
        "(`predict_proba` holds p, 1 - p and the stacked (n, 2) result at once: 32 B/row).",
    ]
    if decision:
        d = decision[0]
        text.append(
            f" `decision_function` on {d['rows']:,} rows needs "
            f"{_mb(d['peak'] - d['baseline'])} MB extra, of which {_mb(8 * d['rows'])} MB is "
            "its float64 output (8 B/row).")
    summary["decision_function"] = decision
    return "\n".join(text) + "\n", summary


def transform_section(runs: list[dict]) -> tuple[str, dict]:
    header = ["log rows", "users", "mean hist", "log MB", "output MB (rows x 104 x 4)",
              "store MB", "RSS before log MB", "RSS with log MB", "fit peak MB",
              "transform peak MB", "peak - RSS before log MB", "log + output MB",
              "c_fit = (fit peak - before - log) / rows, B",
              "c = (peak - before - log - output) / rows, B",
              "generate s", "fit s", "transform s", "fit + transform rows/s"]
    rows, per_row, per_row_fit = [], [], []
    for r in runs:
        peak = max(r["peak_fit"], r["peak_transform"])
        above = peak - r["rss_imports"]
        c = (above - r["log_bytes"] - r["output_block_bytes"]) / r["rows"]
        c_fit = (r["peak_fit"] - r["rss_imports"] - r["log_bytes"]) / r["rows"]
        per_row.append(c)
        per_row_fit.append(c_fit)
        rows.append([
            f"{r['rows']:,}", f"{r['users']:,}", f"{r['mean_hist_len']:.1f}",
            _mb(r["log_bytes"]), _mb(r["output_block_bytes"]), _mb(r["store_bytes"]),
            _mb(r["rss_imports"]), _mb(r["baseline"]), _mb(r["peak_fit"]),
            _mb(r["peak_transform"]), _mb(above),
            _mb(r["log_bytes"] + r["output_block_bytes"]), f"{c_fit:.0f}", f"{c:.0f}",
            f"{r['generate_s']:.1f}", f"{r['fit_s']:.1f}", f"{r['transform_s']:.1f}",
            f"{r['rows'] / (r['fit_s'] + r['transform_s']):,.0f}"])
    n = [r["rows"] for r in runs]
    above = [max(r["peak_fit"], r["peak_transform"]) - r["rss_imports"] - r["log_bytes"]
             - r["output_block_bytes"] for r in runs]
    slope, intercept = _fit_line(n, above)
    c_max = max(per_row)
    summary = {"c_bytes_per_row": per_row, "c_fit_bytes_per_row": per_row_fit, "c_max": c_max,
               "slope_bytes_per_row": slope, "intercept_bytes": intercept}
    imports = max(r["rss_imports"] for r in runs)
    text = [
        "## 2. `SequenceFeatureTransformer(max_len=50).fit(log)` then `.transform(log)`\n",
        "Log: `make_interactions(n_users=rows // 20, n_items=rows // 100, n_categories=50)` "
        "cut to at most `rows` (4 int64 columns), generated in the child; fit without y "
        "(every row is a behaviour), then transform the same log. `RSS before log` is the "
        f"child after its imports (Python, numpy, pandas, torch: ~{_mb(imports)} MB); "
        "the high-water mark is reset after the log is built and again between fit and "
        "transform, so `fit peak` and `transform peak` are the two calls' own peaks "
        "(absolute RSS). `RSS with log` - `RSS before log` exceeds `log` by what the "
        "generator's freed temporaries left in the allocator, so c errs high. `store` = the "
        "fitted BehaviourStore's arrays; output = the transform's int32 block.\n",
        _md_table(header, rows) + "\n",
        f"Bound: peak - RSS before log <= log + output + c x rows with c = {c_max:.0f} B/row "
        f"(largest of {', '.join(f'{c:.0f}' for c in per_row)}); least-squares line over the "
        f"sizes: log + output + {slope:.1f} B x rows + {_mb(intercept)} MB.",
    ]
    return "\n".join(text) + "\n", summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, < 1 minute")
    parser.add_argument("--out", type=Path, default=None,
                        help="Markdown report (default benchmarks/results/memory.md; "
                             "--quick: memory-quick.md); a .json with the raw numbers beside it")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", nargs=3, metavar=("KIND", "SPEC", "RESULT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        kind, spec, result_path = args.child
        result = CHILDREN[kind](json.loads(spec))
        Path(result_path).write_text(json.dumps(result))
        return 0

    sizes = QUICK if args.quick else FULL
    out = args.out or HERE / "results" / ("memory-quick.md" if args.quick else "memory.md")
    began = time.perf_counter()
    started = datetime.datetime.now().isoformat(timespec="seconds")

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - began:6.0f}s] {message}", flush=True)

    with tempfile.TemporaryDirectory(prefix="sklearn-din-memory-") as tmp:
        work = Path(tmp)
        base = {"work": str(work), "seed": args.seed}
        fit = run_child("fit", {**base, "fit_rows": sizes["fit_rows"]}, work)
        log(f"fit: {fit['fit_rows']:,} rows in {fit['fit_s']:.1f} s")
        predict_runs = []
        jobs = [("predict_proba", n) for n in sizes["predict_rows"]]
        if not args.quick:
            jobs.append(("decision_function", sizes["predict_rows"][-1]))
        for method, n in jobs:
            r = run_child("predict", {**base, "rows": n, "method": method}, work)
            predict_runs.append(r)
            log(f"{method} {n:,} rows: baseline {_mb(r['baseline'])} MB, peak "
                f"{_mb(r['peak'])} MB, extra {_mb(r['peak'] - r['baseline'])} MB, "
                f"{r['seconds']:.1f} s")
        transform_runs = []
        for n in sizes["log_rows"]:
            r = run_child("transform", {**base, "rows": n}, work)
            transform_runs.append(r)
            log(f"transformer {n:,} rows: log {_mb(r['log_bytes'])} MB, output "
                f"{_mb(r['output_block_bytes'])} MB, peaks fit {_mb(r['peak_fit'])} / "
                f"transform {_mb(r['peak_transform'])} MB, fit {r['fit_s']:.1f} s, "
                f"transform {r['transform_s']:.1f} s")

    import numpy as np
    import pandas as pd
    import torch

    predict_md, predict_summary = predict_section(fit, predict_runs)
    transform_md, transform_summary = transform_section(transform_runs)
    resets = all(r["peak_reset"] for r in predict_runs + transform_runs)
    runtime = time.perf_counter() - began
    command = "python benchmarks/memory.py" + (" --quick" if args.quick else "")
    report = "\n".join([
        "# Memory: streamed prediction and the transformer on large logs\n",
        f"Command: `{command}` (runtime {runtime / 60:.1f} min)\n",
        f"Date {started}, {platform.machine()} with {len(os.sched_getaffinity(0))} cores "
        "(shared), Python "
        f"{platform.python_version()}, numpy {np.__version__}, pandas {pd.__version__}, "
        f"torch {torch.__version__}, 1 torch thread. Each case in a fresh subprocess, one at a "
        "time. Peak = `getrusage(RUSAGE_SELF).ru_maxrss`; baseline = `VmRSS` just before the "
        "measured call, after resetting the high-water mark via `/proc/self/clear_refs` "
        f"({'worked in every child' if resets else 'FAILED in some child: peaks may include input building'}). "  # noqa: E501
        "MB = 2^20 bytes.\n",
        predict_md,
        transform_md,
    ])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    payload = {"command": command, "started": started, "runtime_s": runtime, "sizes": sizes,
               "fit": fit, "predict": predict_runs, "predict_summary": predict_summary,
               "transform": transform_runs, "transform_summary": transform_summary,
               "peak_reset_everywhere": resets}
    out.with_suffix(".json").write_text(json.dumps(payload, indent=1))
    print(report)
    log(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
