"""The network's training step, A/B: a reference implementation vs this checkout's, one run.

A focused micro-benchmark of :class:`sklearn_din.DeepInterestNetwork`'s training step
(forward, DINClassifier's loss with its default mini-batch aware penalty, backward, Adam),
without pandas, skorch or batching, so that a change to the network's speed shows up
undiluted. Both implementations are built from the same seed, get the same batches and
are timed in alternation (A B B A ...), so a change in the machine's load hits both; the
table gives medians and their ratio. Their parameters after the run are compared as
well: both must have trained the same model (within float tolerance).

- Reference (A): ``sklearn_din/_network.py`` at ``--baseline-ref`` (default ``main``),
  read with ``git show``; candidate (B): the checkout's ``sklearn_din``.
- Sizes: tutorial (attention and MLP (256, 128)) and paper (attention (80, 40), MLP
  (200, 80)); embedding 8, history 50, batch 1024, the classifier's default network
  (softmax attention, pooled product, Dice), item and category features.
- Histories: short (geometric lengths, mean about 16) and long (35% full, the rest
  uniform over 10..49: mean about 37 of 50). Rows are independent: shuffled training
  batches rarely hold two rows that share a history.
- FLOPs counted as ``benchmarks/speed.py`` counts them (``train_flops``: only real
  history positions, the attention's first layer on its full 4D input, backward = 2x
  forward), against the machine's fp32 matmul rate measured the same way
  (``matmul_gflops``, square 2048, same thread count) before and after.

Run::

    python3 benchmarks/train_step.py                      # ~3 minutes on 2 cores
    python3 benchmarks/train_step.py --reps 3 --threads 1 # quicker

Writes ``benchmarks/results/train_step.md`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from harness import faulted_mb  # noqa: E402
from speed import BATCH_SIZE, EMBED_DIM, LR, MAX_LEN, SIZES, matmul_gflops  # noqa: E402
from speed import train_flops as speed_train_flops  # noqa: E402

from sklearn_din import _network as candidate_network  # noqa: E402

N_ITEMS, N_CATEGORIES = 20_000, 500
EMBEDDING_L2 = 0.5  # DINClassifier's default
BATCHES_PER_CONFIG = 4
TARGET_FRACTION = 0.5  # issue 18: the train step >= 50% of the matmul rate
# Process-wide allocator settings that change the step's page faults; recorded with a run.
ALLOCATOR_ENV = ("GLIBC_TUNABLES", "THP_MEM_ALLOC_ENABLE", "OMP_NUM_THREADS")


def baseline_network(ref: str):
    """``sklearn_din/_network.py`` as it is at git ``ref``, imported as its own module."""
    source = subprocess.run(
        ["git", "show", f"{ref}:sklearn_din/_network.py"], cwd=HERE.parent, check=True,
        capture_output=True, text=True,
    ).stdout
    spec = importlib.util.spec_from_loader(f"network_at_{ref}", loader=None)
    module = importlib.util.module_from_spec(spec)
    # Its relative imports (the kernels' loader) resolve to this checkout's package: the
    # compiled Dice kernels are shared, the Python that calls them is ``ref``'s.
    module.__package__ = "sklearn_din"
    exec(compile(source, f"{ref}:sklearn_din/_network.py", "exec"), module.__dict__)
    return module


def history_lengths(kind: str, n: int, generator: torch.Generator) -> torch.Tensor:
    if kind == "short":
        u = torch.rand(n, generator=generator).clamp_min(1e-12)
        lengths = torch.ceil(torch.log(u) / torch.log(torch.tensor(1 - 1 / 16.0)))
        return lengths.clamp(1, MAX_LEN).long()
    full = torch.rand(n, generator=generator) < 0.35
    partial = torch.randint(10, MAX_LEN, (n,), generator=generator)
    return torch.where(full, torch.full_like(partial, MAX_LEN), partial)


def make_batch(kind: str, generator: torch.Generator) -> dict:
    """One training batch as the batch iterator gives it (history cut to its longest)."""
    n = BATCH_SIZE
    lengths = history_lengths(kind, n, generator)
    items = torch.randint(2, N_ITEMS, (n, MAX_LEN), generator=generator)
    categories = torch.randint(2, N_CATEGORIES, (n, MAX_LEN), generator=generator)
    history = torch.stack([items, categories], dim=1)
    history = history * (torch.arange(MAX_LEN) < lengths[:, None])[:, None, :]
    longest = int(lengths.max())
    return {
        "candidate": torch.stack([torch.randint(2, N_ITEMS, (n,), generator=generator),
                                  torch.randint(2, N_CATEGORIES, (n,), generator=generator)], 1),
        "history": history[:, :, :longest].contiguous(),
        "history_length": lengths,
        "sparse": torch.zeros((n, 0), dtype=torch.long),
        "dense": torch.zeros((n, 0)),
        "y": torch.randint(0, 2, (n,), generator=generator).float(),
    }


class Trainer:
    """One implementation's network and optimizer, stepping as DINClassifier does."""

    def __init__(self, module, size: str, seed: int) -> None:
        torch.manual_seed(seed)
        self.net = module.DeepInterestNetwork(
            [N_ITEMS, N_CATEGORIES], embed_dim=EMBED_DIM, attention_normalization="softmax",
            pooled_product=True, **SIZES[size],
        )
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=LR)

    def step(self, batch: dict) -> None:
        inputs = {k: v for k, v in batch.items() if k != "y"}
        self.optimizer.zero_grad()
        logits = self.net(**inputs)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, batch["y"])
        loss = loss + EMBEDDING_L2 * self.net.embedding_penalty(**inputs)
        loss.backward()
        self.optimizer.step()


def max_state_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    return max(float((sa[k].double() - sb[k].double()).abs().max()) for k in sa if sa[k].numel())


def run_config(baseline, size: str, kind: str, threads: int, reps: int, seed: int) -> dict:
    torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(seed)
    batches = [make_batch(kind, generator) for _ in range(BATCHES_PER_CONFIG)]
    trainers = {"A": Trainer(baseline, size, seed), "B": Trainer(candidate_network, size, seed)}
    for name in ("A", "B"):  # warm-up: one pass over the batches
        for batch in batches:
            trainers[name].step(batch)
    times, faults = {"A": [], "B": []}, {"A": [], "B": []}
    for rep in range(reps):
        order = ("A", "B") if rep % 2 == 0 else ("B", "A")
        for name in order:
            faults_before = faulted_mb()
            start = time.perf_counter()
            for batch in batches:
                trainers[name].step(batch)
            times[name].append((time.perf_counter() - start) / len(batches))
            faults[name].append((faulted_mb() - faults_before) / len(batches))
    hist_len_sum = sum(int(b["history_length"].sum()) for b in batches) / len(batches)
    flops = speed_train_flops(size, hist_len_sum, BATCH_SIZE)
    median = {k: statistics.median(v) for k, v in times.items()}
    return {
        "size": size, "histories": kind, "threads": threads,
        "mean_history": hist_len_sum / BATCH_SIZE,
        "a_ms": median["A"] * 1e3, "b_ms": median["B"] * 1e3,
        "ratio": median["A"] / median["B"],
        "a_gflops": flops / median["A"] / 1e9, "b_gflops": flops / median["B"] / 1e9,
        "a_faulted_mb": statistics.median(faults["A"]),
        "b_faulted_mb": statistics.median(faults["B"]),
        "state_difference": max_state_difference(trainers["A"].net, trainers["B"].net),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-ref", default="main")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--histories", nargs="+", default=["short", "long"],
                        choices=["short", "long"])
    parser.add_argument("--reps", type=int, default=5,
                        help="alternating repetitions per implementation (each: 4 steps)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "train_step.md")
    parser.add_argument("--append", action="store_true",
                        help="add this run's table to --out instead of replacing it")
    args = parser.parse_args(argv)
    baseline = baseline_network(args.baseline_ref)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE.parent,
                          capture_output=True, text=True).stdout.strip()
    matmul = {t: [matmul_gflops(t, 2048, 5)] for t in args.threads}
    rows = []
    for threads in args.threads:
        for size in args.sizes:
            for kind in args.histories:
                row = run_config(baseline, size, kind, threads, args.reps, args.seed)
                rows.append(row)
                print(f"{size:8} {kind:5} {threads}t  A {row['a_ms']:7.1f} ms  "
                      f"B {row['b_ms']:7.1f} ms  x{row['ratio']:.2f}  "
                      f"{row['a_gflops']:.1f} -> {row['b_gflops']:.1f} GFLOP/s", flush=True)
    for t in args.threads:
        matmul[t].append(matmul_gflops(t, 2048, 5))
    env = " ".join(f"{k}={os.environ[k]}" for k in ALLOCATOR_ENV if k in os.environ)
    lines = [
        "## Run" if args.append else "# Training step: reference vs this checkout",
        "",
        f"Command: `{env + ' ' if env else ''}python3 "
        f"{' '.join(['benchmarks/train_step.py', *sys.argv[1:]])}`  ",
        f"Reference (A): `sklearn_din/_network.py` at `{args.baseline_ref}`; candidate (B): "
        f"the checkout at `{head}` (plus uncommitted changes, if any).  ",
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"torch {torch.__version__}; {args.reps} alternating repetitions of "
        f"{BATCHES_PER_CONFIG} steps per implementation, medians.",
        "",
        "Matmul rate (fp32 square 2048, before / after): "
        + "; ".join(f"{t} thread{'s' if t > 1 else ''} {m[0]:.1f} / {m[1]:.1f} GFLOP/s"
                    for t, m in matmul.items()) + ". The percentages use the higher figure.",
        "Page-faulted MB/step: minor page faults during the timed steps (getrusage), i.e. "
        "fresh memory the allocator had to take from the kernel; glibc serves tensors over "
        "its mmap threshold (32 MiB at most) from fresh pages every time.",
        "",
        "| sizes | histories (mean of 50) | threads | A ms/step | B ms/step | B speed-up | "
        "A GFLOP/s (% matmul) | B GFLOP/s (% matmul) | B >= 50%? | page-faulted MB/step A / B | "
        "max param diff A-B |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        peak = max(matmul[r["threads"]])
        lines.append(
            f"| {r['size']} | {r['histories']} ({r['mean_history']:.1f}) | {r['threads']} | "
            f"{r['a_ms']:.1f} | {r['b_ms']:.1f} | {r['ratio']:.2f}x | "
            f"{r['a_gflops']:.1f} ({r['a_gflops'] / peak:.0%}) | "
            f"{r['b_gflops']:.1f} ({r['b_gflops'] / peak:.0%}) | "
            f"{'PASS' if r['b_gflops'] >= TARGET_FRACTION * peak else 'MISS'} | "
            f"{r['a_faulted_mb']:.0f} / {r['b_faulted_mb']:.0f} | {r['state_difference']:.1e} |")
    by_threads = {(r["size"], r["histories"]): {} for r in rows}
    for r in rows:
        by_threads[(r["size"], r["histories"])][r["threads"]] = r
    if 1 in args.threads and 2 in args.threads:
        lines += ["", "2 threads vs 1 (throughput ratio; issue 18's target: >= 1.7x):", ""]
        for (size, kind), r in by_threads.items():
            lines.append(f"- {size}, {kind}: A {r[1]['a_ms'] / r[2]['a_ms']:.2f}x, "
                         f"B {r[1]['b_ms'] / r[2]['b_ms']:.2f}x")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.append and args.out.exists():
        text = args.out.read_text() + "\n" + text
    args.out.write_text(text)


if __name__ == "__main__":
    main()
