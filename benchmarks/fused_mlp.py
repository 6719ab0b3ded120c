"""Predictions with and without the fused inference MLP (``_fused_mlp.py``), A/B in one run.

At inference on the CPU the attention unit's MLP (first activation, its other layers and
the score) and the output MLP run as one compiled pass over tiles of rows
(``_mlp_kernels.cpp``) instead of torch's matrix products and activations. Here the same
fitted classifier predicts the same rows with the kernel and with it switched off
(``FusedMLP.ops`` returning None, so the modules run), in alternation:

* ``decision_function`` on speed.py's synthetic rows (short and long histories), at the
  tutorial's and the paper's sizes, 1 and 2 threads: rows per second;
* the request forward of ``score_candidates`` (``forward_shared_history``; one user with a
  full history of 50 and C = 200 and 1,000 candidates), 1 thread: p50 / p99 latency.

Each model is fitted for one epoch (speed does not depend on what the weights learnt).
Reported beside the times: the largest difference between the two paths' outputs.

Usage::

    python3 benchmarks/fused_mlp.py            # about 4 minutes
    python3 benchmarks/fused_mlp.py --reps 1 --threads 1

Writes benchmarks/results/fused_mlp.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import torch  # noqa: E402
from harness import machine_info, machine_line, mark_end  # noqa: E402
from speed import SYNTHETIC_HISTORIES, classifier, synthetic_rows  # noqa: E402

from sklearn_din import _fused_mlp, _kernels  # noqa: E402

FUSED_OPS = _fused_mlp.FusedMLP.ops


def switched(fused: bool) -> None:
    """The fused kernel on, or off (the modules run, as without the compiled library)."""
    _fused_mlp.FusedMLP.ops = FUSED_OPS if fused else (lambda self, *tensors: None)


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def prediction_rows(model, rows, threads: int, reps: int) -> tuple[dict, float]:
    """Median seconds of decision_function on the training rows, per path; max |diff|."""
    torch.set_num_threads(threads)
    seconds = {True: [], False: []}
    outputs = {}
    for _ in range(reps):
        for fused in (False, True):
            switched(fused)
            outputs[fused], s = timed(model.decision_function, rows)
            seconds[fused].append(s)
    switched(True)
    diff = float(np.abs(outputs[True] - outputs[False]).max())
    return {k: statistics.median(v) for k, v in seconds.items()}, diff


def request_latency(model, rows, n_candidates: int, calls: int) -> tuple[dict, float]:
    """p50 / p99 ms of the request forward on one user with a full history, per path."""
    torch.set_num_threads(1)
    network = model.module_.eval()
    arrays = model.layout_.to_arrays(rows, model.history_vocab_sizes_, model.sparse_vocab_sizes_)
    user = int(np.argmax(arrays["history_length"]))  # a row with the longest history
    length = int(arrays["history_length"][user])
    candidate = np.unique(arrays["candidate"], axis=0)[:n_candidates]
    request = {"candidate": torch.as_tensor(candidate, dtype=torch.long),
               "history": torch.as_tensor(arrays["history"][user][:, :length],
                                          dtype=torch.long),
               "sparse": torch.as_tensor(np.repeat(arrays["sparse"][user: user + 1],
                                                   len(candidate), 0), dtype=torch.long),
               "dense": torch.as_tensor(np.repeat(arrays["dense"][user: user + 1],
                                                  len(candidate), 0))}
    times = {True: [], False: []}
    out = {}
    with torch.no_grad():
        for call in range(calls + 20):
            for fused in (False, True):
                switched(fused)
                out[fused], s = timed(lambda: network.forward_shared_history(**request))
                if call >= 20:
                    times[fused].append(s * 1e3)
    switched(True)
    diff = float((out[True] - out[False]).abs().max())
    return {k: (float(np.percentile(v, 50)), float(np.percentile(v, 99)))
            for k, v in times.items()}, diff


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-rows", type=int, default=16_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--sizes", nargs="+", default=["tutorial", "paper"])
    parser.add_argument("--out", type=Path, default=HERE / "results" / "fused_mlp.md")
    args = parser.parse_args(argv)
    info = machine_info()
    _kernels.prepare()  # built and loaded before any timing
    data = synthetic_rows(list(SYNTHETIC_HISTORIES), args.train_rows, HERE)
    batch_lines, request_lines = [], []
    for size in args.sizes:
        for kind, rows in data.items():
            torch.set_num_threads(2)
            model = classifier(size, 1, 0).fit(rows["train"], rows["y_train"])
            for threads in args.threads:
                seconds, diff = prediction_rows(model, rows["train"], threads, args.reps)
                n = len(rows["train"])
                line = (f"| {size} | {kind} ({rows['train']['hist_len'].mean():.1f}) | "
                        f"{threads} | {n / seconds[False]:,.0f} | {n / seconds[True]:,.0f} | "
                        f"{seconds[False] / seconds[True]:.2f}x | {diff:.1e} |")
                print(line, flush=True)
                batch_lines.append(line)
            if kind != "long":
                continue
            for n_candidates in (200, 1000):
                latency, diff = request_latency(model, rows["train"], n_candidates, args.calls)
                line = (f"| {size} | {n_candidates:,} | {latency[False][0]:.2f} | "
                        f"{latency[False][1]:.2f} | {latency[True][0]:.2f} | "
                        f"{latency[True][1]:.2f} | {latency[False][0] / latency[True][0]:.2f}x "
                        f"| {diff:.1e} |")
                print(line, flush=True)
                request_lines.append(line)
    command = "python3 benchmarks/fused_mlp.py" + (
        " " + " ".join(sys.argv[1:]) if argv is None and sys.argv[1:] else "")
    text = "\n".join([
        "# Predictions with and without the fused inference MLP",
        "",
        f"Command: `{command}`  ",
        machine_line(mark_end(info)) + "  ",
        f"About {args.train_rows:,} rows a data set (speed.py's synthetic logs and sizes), each "
        "model fitted for one epoch. The same model, the same rows, the kernel on and off in "
        f"alternation; {args.reps} repetitions, median seconds. Max diff: the largest "
        "difference between the two paths' logits.",
        "",
        "## decision_function",
        "",
        "| sizes | histories (mean of 50) | threads | rows/s, modules | rows/s, fused | "
        "speed-up | max diff |",
        "|---|---|---:|---:|---:|---:|---:|",
        *batch_lines,
        "",
        "## One request: forward_shared_history, a full history of 50, 1 thread",
        "",
        f"{args.calls} calls a path, alternating call by call.",
        "",
        "| sizes | candidates | modules p50 ms | p99 ms | fused p50 ms | p99 ms | "
        "speed-up p50 | max diff |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *request_lines,
        "",
    ])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
