"""Whole fits with and without the block cache (``_kernels.block_cache``), A/B in one run.

The classifier trains and predicts inside ``_kernels.block_cache()`` on the CPU: torch's
freed blocks of 8 MiB or more are kept for the next tensors of their size instead of
going back to the kernel, whose fresh pages each step's largest activations would
otherwise fault in anew (glibc unmaps every block over its mmap threshold, 32 MiB at
most, when it is freed). Here the same fit runs with the cache and with the cache
replaced by a no-op, in alternation, on the rows ``speed.py`` trains on (its synthetic
logs, short and long histories; its sizes; batch 1024; 2 epochs; early stopping off),
at 1 and 2 threads. Reported: median epoch seconds over every epoch of every repeat,
the minor page faults of a fit (fresh memory taken from the kernel, in MB), and whether
both fits predict the test rows identically (the cache hands out memory, nothing else).

Usage::

    python3 benchmarks/block_cache.py            # about 5 minutes
    python3 benchmarks/block_cache.py --reps 1 --threads 1

Writes benchmarks/results/block_cache.md.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import torch  # noqa: E402
from harness import faulted_mb, machine_info, machine_line, mark_end  # noqa: E402
from speed import SYNTHETIC_HISTORIES, classifier, synthetic_rows  # noqa: E402

from sklearn_din import _kernels  # noqa: E402


def timed_fit(rows: dict, size: str, epochs: int, cached: bool) -> dict:
    """One fit (and a prediction of the test rows) with the cache or without it."""
    real = _kernels.block_cache
    _kernels.block_cache = real if cached else contextlib.nullcontext
    try:
        before, start = faulted_mb(), time.perf_counter()
        model = classifier(size, epochs, 0).fit(rows["train"], rows["y_train"])
        fit_s, faulted = time.perf_counter() - start, faulted_mb() - before
        proba = model.predict_proba(rows["test"])[:, 1]
    finally:
        _kernels.block_cache = real
    return {"epochs_s": [float(s) for s in model.history[:, "dur"]], "fit_s": fit_s,
            "faulted_mb": faulted, "proba": proba}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-rows", type=int, default=16_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--sizes", nargs="+", default=["tutorial", "paper"])
    parser.add_argument("--histories", nargs="+", default=["short", "long"],
                        choices=list(SYNTHETIC_HISTORIES))
    parser.add_argument("--out", type=Path, default=HERE / "results" / "block_cache.md")
    args = parser.parse_args(argv)
    info = machine_info()
    _kernels.prepare()  # built and loaded before any timing
    data = synthetic_rows(args.histories, args.train_rows, HERE)
    lines = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for size in args.sizes:
            for kind in args.histories:
                runs = {True: [], False: []}
                for _ in range(args.reps):
                    for cached in (False, True):
                        runs[cached].append(timed_fit(data[kind], size, args.epochs, cached))
                same = all(np.array_equal(a["proba"], b["proba"])
                           for a, b in zip(runs[True], runs[False], strict=True))
                epoch = {c: statistics.median(s for r in runs[c] for s in r["epochs_s"])
                         for c in runs}
                faulted = {c: statistics.median(r["faulted_mb"] for r in runs[c]) for c in runs}
                line = (f"| {size} | {kind} ({data[kind]['train']['hist_len'].mean():.1f}) | "
                        f"{threads} | {epoch[False]:.2f} | {epoch[True]:.2f} | "
                        f"{epoch[False] / epoch[True]:.2f}x | {faulted[False]:,.0f} | "
                        f"{faulted[True]:,.0f} | {'yes' if same else 'NO'} |")
                print(line, flush=True)
                lines.append(line)
    command = "python3 benchmarks/block_cache.py" + (
        " " + " ".join(sys.argv[1:]) if argv is None and sys.argv[1:] else "")
    text = "\n".join([
        "# Whole fits with and without the block cache",
        "",
        f"Command: `{command}`  ",
        machine_line(mark_end(info)) + "  ",
        f"{args.train_rows:,} training rows a data set (speed.py's synthetic logs), batch 1024, "
        f"{args.epochs} epochs, early stopping off; {args.reps} alternating repetitions (no "
        "cache, then the cache). Epoch s: median over every epoch of every repetition. "
        "Page-faulted MB: minor page faults of a whole fit (getrusage), the fresh memory it "
        "took from the kernel; median over the repetitions.",
        "",
        "| sizes | histories (mean of 50) | threads | epoch s, no cache | epoch s, cache | "
        "speed-up | page-faulted MB a fit, no cache | with the cache | same predictions |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
        *lines,
        "",
    ])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
