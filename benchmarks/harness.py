"""What every benchmark report needs: the machine it ran on, and markdown tables."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import subprocess
from pathlib import Path

import torch

import sklearn_din

ROOT = Path(__file__).resolve().parents[1]


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


def machine_line(info: dict) -> str:
    """One sentence for a report's header."""
    return (f"Date {info['date']}; sklearn-din {info['sklearn_din']} at git commit "
            f"{info['git_commit']}{' (+ uncommitted changes)' if info.get('sklearn_din_uncommitted_changes') else ''}; "  # noqa: E501
            f"torch {info['torch']}, {info['torch_threads']} thread(s); python {info['python']}; "
            f"{info['cpu']}, {info['cpu_count']} cores (load average at start "
            f"{info['loadavg_start'][0]}, at end {os.getloadavg()[0]:.2f}).")


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
