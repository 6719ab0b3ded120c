"""What every benchmark needs: the machine it ran on, the data's home, fresh worker processes,
timing helpers, and markdown tables."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import torch

import sklearn_din

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# The shared data sets live next to the checkout, never in it (SKLEARN_DIN_DATA overrides).
DATA = Path(os.environ.get("SKLEARN_DIN_DATA", ROOT.parent / "shared" / "data"))


def faulted_mb() -> float:
    """MB of fresh pages this process has faulted in so far (minor page faults, getrusage):
    memory the allocator had to take from the kernel. Differences time a stretch of work."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt * resource.getpagesize() / 2**20


def machine_info() -> dict:
    """CPU, versions, thread count, git commit and load: what a reader needs to trust a figure."""
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit, dirty = "?", None
    with contextlib.suppress(Exception):
        def git(*args: str) -> str:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  check=True, timeout=30).stdout.strip()
        commit = git("rev-parse", "--short", "HEAD")
        dirty = bool(git("status", "--porcelain", "--", "sklearn_din"))
    return {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "git_commit": commit,
        "sklearn_din_uncommitted_changes": dirty,
        "sklearn_din": sklearn_din.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }


def mark_end(info: dict) -> dict:
    """Record in ``info`` the load average as the run ends: the one ``machine_line`` reports
    (a report rendered later, from a saved run, must not print the load of that moment)."""
    info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    return info


def commit_label(info: dict) -> str:
    """The git commit a run measured, marked when the package had uncommitted changes."""
    dirty = " (+ uncommitted changes)" if info.get("sklearn_din_uncommitted_changes") else ""
    return f"{info['git_commit']}{dirty}"


def machine_line(info: dict) -> str:
    """One sentence for a report's header; the load at the end only where ``mark_end``
    recorded it (older runs' files: ``load_average_at_end``)."""
    end = info.get("loadavg_end") or info.get("load_average_at_end")
    end = f", at end {end[0]:.2f}" if end else ", at end not recorded"
    return (f"Date {info['date']}; sklearn-din {info['sklearn_din']} at git commit "
            f"{commit_label(info)}; "
            f"torch {info['torch']}, {info['torch_threads']} thread(s); python {info['python']}; "
            f"{info['cpu']}, {info['cpu_count']} cores (load average at start "
            f"{info['loadavg_start'][0]}{end}).")


def markdown_table(header: list[str], rows: list[list[object]]) -> list[str]:
    """A markdown table's lines."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def mean_std(values: list[float], digits: int = 4) -> str:
    """``mean ± sample std`` (ddof=1) of a metric over seeds."""
    import numpy as np

    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return f"{values.mean():.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def fmt(value: object, spec: str = ",.0f") -> str:
    """A number for a table; ``n/a`` for None and non-finite values, strings unchanged."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return value if isinstance(value, str) else format(value, spec)


def auc_se(auc: float, n_pos: int, n_neg: int) -> float:
    """Hanley & McNeil (1982) standard error of an AUC."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)
    return float(math.sqrt(max(var, 0.0) / max(n_pos * n_neg, 1)))


def package_versions(*names: str) -> dict[str, str]:
    """Installed versions of the named distributions (``missing`` when not installed)."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def source_digest() -> str:
    """Short hash of sklearn_din's source: shows whether the code changed during a run (every
    worker process imports the package afresh from the working tree)."""
    digest = hashlib.sha1()
    for path in sorted(Path(sklearn_din.__file__).parent.rglob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    """The hidden ``--worker SPEC --worker-out OUT`` options :func:`run_worker` passes."""
    parser.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", type=Path, default=None, help=argparse.SUPPRESS)


def answer_worker(args: argparse.Namespace, worker: Callable[[dict], dict]) -> bool:
    """In a process :func:`run_worker` started: run ``worker`` on its spec, write the JSON
    result where the parent reads it, and return True; False in any other process."""
    if args.worker is None:
        return False
    args.worker_out.write_text(json.dumps(worker(json.loads(args.worker.read_text()))))
    return True


def run_worker(script: Path, spec: dict, workdir: Path, *, threads: int,
               timeout: float | None = None, env: dict | None = None) -> dict:
    """Run ``script --worker SPEC --worker-out OUT`` in a fresh process with ``threads`` BLAS/OpenMP
    threads (and ``env`` added to its environment); its JSON result plus ``wall_s``, or
    ``{"error": ...}`` with the end of its output."""
    spec_path, out_path = workdir / f"spec_{spec['tag']}.json", workdir / f"out_{spec['tag']}.json"
    spec_path.write_text(json.dumps(spec))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "OPENBLAS_NUM_THREADS": str(threads), "TQDM_DISABLE": "1", "PYTHONUNBUFFERED": "1",
           **(env or {})}
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, str(script), "--worker", str(spec_path),
                               "--worker-out", str(out_path)], env=env, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s", "wall_s": time.perf_counter() - start}
    wall = time.perf_counter() - start
    if proc.returncode != 0 or not out_path.exists():
        return {"error": f"exit {proc.returncode}: {(proc.stderr or proc.stdout)[-3000:]}",
                "wall_s": wall}
    return {**json.loads(out_path.read_text()), "wall_s": wall}


def write_report(out_dir: Path, stem: str, markdown: str, report: dict) -> None:
    """``<stem>.md`` and ``<stem>.json`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.md").write_text(markdown)
    (out_dir / f"{stem}.json").write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {out_dir / (stem + '.md')} and {out_dir / (stem + '.json')}")
