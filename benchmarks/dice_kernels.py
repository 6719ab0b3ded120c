"""Dice alone, A/B: torch's ops (``SKLEARN_DIN_KERNELS=torch``) vs the compiled kernels.

The shapes are the activations Dice sees in this repository's benchmarks: the attention
MLP's first layer over a batch's real history positions (batch 1024; short histories of
mean 16 and long ones of mean 38 positions; tutorial width 256, paper width 80), the output
MLP's first layer (1024 rows), and a serving request's block of candidate-position pairs
(``LocalActivationUnit.block_pairs``, 2048) and a whole 200 x 50 request. Both paths run on
the same tensors in one process, in alternation (A B B A ...), so that the machine's load
hits both; the table gives medians and their ratio, and the largest difference between the
two paths' outputs and gradients.

- train: a fresh forward with batch statistics (``Dice.train()``) and its backward, input
  and alpha gradients, as one training step computes them.
- infer: ``Dice.eval()`` under ``torch.no_grad()``, as prediction and serving compute it.

Run::

    python3 benchmarks/dice_kernels.py          # about 2 minutes on 2 cores

Writes ``benchmarks/results/dice_kernels.md`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from harness import machine_info, machine_line, mark_end, markdown_table  # noqa: E402

from sklearn_din import Dice, _kernels  # noqa: E402

SHAPES = [  # (what, rows, width)
    ("attention, short histories, tutorial", 1024 * 16, 256),
    ("attention, short histories, paper", 1024 * 16, 80),
    ("attention, long histories, tutorial", 1024 * 38, 256),
    ("attention, long histories, paper", 1024 * 38, 80),
    ("output MLP, paper", 1024, 200),
    ("serving block, paper", 2048, 80),
    ("serving request, paper (200 x 50)", 10_000, 80),
]
PATHS = ("torch", "compiled")


def dice(width: int, training: bool) -> Dice:
    torch.manual_seed(0)
    module = Dice(width).train(training)
    with torch.no_grad():
        module.alpha.uniform_(-0.5, 0.5)
        module.running_mean.uniform_(-1, 1)
    return module


def run(path: str, module: Dice, mode: str, x: torch.Tensor, dout: torch.Tensor):
    os.environ[_kernels.ENVIRONMENT_VARIABLE] = path
    if mode == "infer":
        with torch.no_grad():
            return (module(x),)
    module.alpha.grad = None
    leaf = x.detach().requires_grad_()
    out = module(leaf)
    out.backward(dout)
    return out.detach(), leaf.grad, module.alpha.grad


def measure(rows: int, width: int, mode: str, threads: int, repeats: int) -> dict:
    torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(rows + width)
    x = torch.randn(rows, width, generator=generator) * 2
    dout = torch.randn(rows, width, generator=generator)
    # One module per path, built alike (the timed calls exclude building them); the first
    # calls (also the warm-up) are compared.
    modules = {p: dice(width, training=mode == "train") for p in PATHS}
    results = {p: run(p, modules[p], mode, x, dout) for p in PATHS}
    difference = max(float((a - b).abs().max()) for a, b in zip(*results.values(), strict=True))
    seconds = {p: [] for p in PATHS}
    for r in range(repeats):
        for path in PATHS if r % 2 == 0 else PATHS[::-1]:
            start = time.perf_counter()
            run(path, modules[path], mode, x, dout)
            seconds[path].append(time.perf_counter() - start)
    median = {p: statistics.median(s) * 1e3 for p, s in seconds.items()}
    return {"torch_ms": median["torch"], "compiled_ms": median["compiled"],
            "speedup": median["torch"] / median["compiled"], "max_difference": difference}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "dice_kernels.md")
    args = parser.parse_args(argv)
    _kernels.load()  # built (or loaded) before any timing
    info = {**machine_info(), "torch_threads": args.threads.replace(",", " and ")}
    rows = []
    for threads in (int(t) for t in args.threads.split(",")):
        for what, n, width in SHAPES:
            for mode in ("train", "infer"):
                m = measure(n, width, mode, threads, args.repeats)
                rows.append([what, f"{n:,} x {width}", threads, mode, f"{m['torch_ms']:.2f}",
                             f"{m['compiled_ms']:.2f}", f"{m['speedup']:.2f}x",
                             f"{m['max_difference']:.1e}"])
                print(" | ".join(map(str, rows[-1])), flush=True)
    command = "python3 benchmarks/dice_kernels.py " + shlex.join(
        sys.argv[1:] if argv is None else argv)
    lines = ["# Dice alone: torch's ops vs the compiled kernels", "",
             f"Command: `{command.strip()}`", "", machine_line(mark_end(info)), "",
             f"Capability built: {_kernels.capability()}. {args.repeats} alternating "
             "repetitions per path, medians. train = forward with batch statistics and its "
             "backward; infer = eval mode without autograd. Max difference: between the two "
             "paths' outputs and gradients (first calls, fresh modules).", ""]
    lines += markdown_table(["activation", "rows x width", "threads", "mode", "torch ms",
                             "compiled ms", "speed-up", "max difference"], rows)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
