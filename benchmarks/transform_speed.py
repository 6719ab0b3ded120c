"""History building: SequenceFeatureTransformer vs torch-rechub's create_seq_features.

Both build, for every row of the same log, the user's earlier behaviours (item and
category, history length 50). Run in the benchmark environment (peers installed):

    bash benchmarks/setup_env.sh
    benchmarks/.venv/bin/python benchmarks/transform_speed.py            # 1M rows
    benchmarks/.venv/bin/python benchmarks/transform_speed.py --rows 100000

Prints a table and writes benchmarks/results/transform_speed.md. The systems run in
alternation, ``--repeats`` times each; the median is reported and the ratio to
sklearn-din is computed within this one run.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import os
import platform
import pstats
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import _PeakRSS, time_rechub_create_seq_features  # noqa: E402

from sklearn_din import SequenceFeatureTransformer  # noqa: E402
from sklearn_din._memory import empty_array  # noqa: E402
from sklearn_din.datasets import make_interactions  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _log(rows: int, seed: int) -> pd.DataFrame:
    # make_interactions draws a geometric number of clicks per user (mean 20): pick the
    # number of users that gives about `rows` clicks, then cut to exactly `rows`.
    log = make_interactions(n_users=max(rows // 20, 10), n_items=max(rows // 100, 100),
                            n_categories=50, random_state=seed)
    return log.iloc[:rows].reset_index(drop=True)


def _time_ours(log: pd.DataFrame, max_len: int) -> tuple[float, float, tuple]:
    with _PeakRSS() as rss:
        start = time.perf_counter()
        out = SequenceFeatureTransformer(max_len=max_len).fit_transform(log)
        seconds = time.perf_counter() - start
    return seconds, rss.mb, out.shape


def _first_touch(shape: tuple, allocate) -> float:
    """Seconds to allocate and fill a fresh int32 block of ``shape`` once."""
    start = time.perf_counter()
    block = allocate(shape, np.int32)
    block.fill(0)
    seconds = time.perf_counter() - start
    del block
    return seconds


def _memory_section(log: pd.DataFrame, max_len: int, shape: tuple, theirs_s: float) -> str:
    """What the first touch of fresh memory costs here, and our time without it.

    This machine is a VM whose memory the host hands back on demand: memory a process
    frees goes back to the host within seconds, and the next first write to it is slow.
    Each fill is timed after a pause that lets freed memory go back; the last
    fit_transform right after the last fill, on the memory that fill freed.
    """
    time.sleep(5)  # memory freed by the runs above goes back to the host
    advised = _first_touch(shape, np.empty)
    time.sleep(5)
    ordinary = _first_touch(shape, empty_array)
    reused, _, _ = _time_ours(log, max_len)  # the block just freed is written again
    return (
        "## What first touches of memory cost here\n\n"
        "This machine is a VM: memory a process frees goes back to the host within seconds, "
        "and the next first write to it is slow. Both systems ran in these conditions above. "
        "numpy advises huge pages for every allocation of 4 MiB or more (Linux); the "
        "transformer allocates its output in ordinary pages (`sklearn_din._memory`). "
        "Measured after the runs (5 s pause before each fill; the last row right after the "
        "second fill):\n\n"
        "| what | s |\n|---|---:|\n"
        f"| filling a fresh int32 block of our output's shape {shape} once, `np.empty` "
        f"(huge-page advice) | {advised:.2f} |\n"
        f"| the same in ordinary pages (`empty_array`, what transform uses) | {ordinary:.2f} |\n"
        f"| sklearn-din fit_transform right after, reusing that memory | {reused:.2f} "
        f"({theirs_s / reused:.1f}x the median create_seq_features above) |\n"
    )


def _profile_ours(log: pd.DataFrame, max_len: int, top: int = 8) -> str:
    """Where fit_transform's time goes: cProfile's functions with the most own time.

    After a pause, like the timed runs: on fresh memory, whose first writes (page faults)
    count in the own time of the function whose assignment makes them.
    """
    time.sleep(5)  # memory freed by the runs before goes back to the host
    profiler = cProfile.Profile()
    profiler.enable()
    SequenceFeatureTransformer(max_len=max_len).fit_transform(log)
    profiler.disable()
    stats = pstats.Stats(profiler).stats
    total = sum(entry[2] for entry in stats.values())
    rows = sorted(stats.items(), key=lambda kv: -kv[1][2])[:top]
    lines = [
        "## Where sklearn-din's time goes",
        "",
        f"cProfile over one more fit_transform after a 5 s pause ({total:.2f} s of own time in "
        "total, profiler overhead included): the functions with the most own time. numpy's C "
        "routines appear under their method names; the first writes to fresh memory (page "
        "faults) count in the function whose assignment makes them: `transform`'s own time "
        "holds the first writes to its output block.",
        "",
        "| function | own s | share |",
        "|---|---:|---:|",
    ]
    for (filename, line, name), entry in rows:
        where = f"{Path(filename).name}:{line} {name}" if line else name
        lines.append(f"| `{where}` | {entry[2]:.2f} | {entry[2] / total:.0%} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "transform_speed.md")
    args = parser.parse_args(argv)

    load_start = os.getloadavg()
    log = _log(args.rows, args.seed)
    hist_len = log.groupby("user_id").cumcount().clip(upper=args.max_len)
    print(f"log: {len(log):,} rows, {log['user_id'].nunique():,} users, "
          f"mean history {hist_len.mean():.1f} of {args.max_len}", flush=True)

    ours, theirs, ours_rss, theirs_rss, shape = [], [], [], [], None
    for repeat in range(args.repeats):
        seconds, mb, shape = _time_ours(log, args.max_len)
        ours.append(seconds)
        ours_rss.append(mb)
        with _PeakRSS() as rss:
            theirs.append(time_rechub_create_seq_features(log, max_len=args.max_len))
        theirs_rss.append(rss.mb)
        print(f"repeat {repeat + 1}: sklearn-din {ours[-1]:.2f}s, "
              f"torch-rechub {theirs[-1]:.2f}s", flush=True)

    ours_s, theirs_s = statistics.median(ours), statistics.median(theirs)
    table = pd.DataFrame([
        {"system": "sklearn-din SequenceFeatureTransformer.fit_transform",
         "median s": round(ours_s, 2), "rows/s": f"{len(log) / ours_s:,.0f}",
         "peak RSS MB (process)": round(max(ours_rss)), "speed-up vs torch-rechub":
         f"{theirs_s / ours_s:.1f}x"},
        {"system": "torch-rechub 0.9.0 create_seq_features",
         "median s": round(theirs_s, 2), "rows/s": f"{len(log) / theirs_s:,.0f}",
         "peak RSS MB (process)": round(max(theirs_rss)), "speed-up vs torch-rechub": "1.0x"},
    ])
    print(table.to_string(index=False))
    target = theirs_s / ours_s >= 20
    verdict = (f"Target (>= 20x faster than create_seq_features): "
               f"{'PASS' if target else 'MISS'} ({theirs_s / ours_s:.1f}x)")
    if os.environ.get("GLIBC_TUNABLES"):
        verdict += " under GLIBC_TUNABLES, not the default allocator"
    print(verdict)

    memory_md = _memory_section(log, args.max_len, shape, theirs_s)
    print(memory_md)
    profile_md = _profile_ours(log, args.max_len)
    print(profile_md)
    load = os.getloadavg()

    import torch

    tunables = os.environ.get("GLIBC_TUNABLES")
    env = f"GLIBC_TUNABLES={tunables} " if tunables else ""
    kept = ("\n\nWith GLIBC_TUNABLES' allocator settings the process keeps memory it frees: "
            "from repeat 2 on each system reuses what the runs before it freed (repeat 1 shows "
            "a run without that)." if tunables else "")
    repeats = ", ".join(f"{a:.2f} s / {b:.2f} s" for a, b in zip(ours, theirs, strict=True))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        "# History building: 1 log, both systems, alternating runs\n\n"
        f"Command: `{env}benchmarks/.venv/bin/python benchmarks/transform_speed.py "
        f"--rows {args.rows} --repeats {args.repeats}`\n\n"
        f"Date {datetime.date.today()}, {platform.machine()} with "
        f"{len(__import__('os').sched_getaffinity(0))} cores, Python "
        f"{platform.python_version()}, numpy {np.__version__}, pandas {pd.__version__}, "
        f"torch {torch.__version__}. Single process, no parallelism in either system; load "
        f"average at start {load_start[0]:.1f}, at end {load[0]:.1f} (the machine is shared).\n\n"
        f"Log: {len(log):,} rows (make_interactions, seed {args.seed}), "
        f"{log['user_id'].nunique():,} users, mean history {hist_len.mean():.1f} of "
        f"{args.max_len}; our output shape {shape}.\n\n"
        + table.to_markdown(index=False) + "\n\n"
        f"Each repeat (sklearn-din / torch-rechub): {repeats}.{kept}\n\n" + verdict + "\n\n"
        "torch-rechub's create_seq_features also splits and samples negatives, and (field "
        "notes) puts every test row into training and keeps each user's oldest events; the "
        "timing compares the whole call, which is what its tutorial runs.\n\n"
        + memory_md + "\n" + profile_md
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
