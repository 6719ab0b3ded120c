"""A log several times larger than a memory cap is fitted and scored by streaming, for real.

The test writes a log of about 600,000 CTR rows as parquet files. A child process then
caps its own address space (``RLIMIT_AS``) at what it uses after start-up plus
``CAP_MB``, and runs the larger-than-memory recipe: ``SequenceFeatureTransformer
.partial_fit`` on each chunk, ``fit_stream`` for one epoch, ``predict_proba`` chunk by
chunk. A second child, under the same cap, tries the in-memory workflow on the same
files (``pd.concat`` + ``Pipeline.fit``) and must run out of memory: that proves the cap
binds, so the streaming child's success means something.

Run as a script, this file is the child: ``python test_stream_memory.py MODE DIR CAP_MB``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CAP_MB = 120
MAX_LEN = 80
BATCH_ROWS = 20_000  # rows per parquet file and per chunk read back
MEMORY_ERROR_EXIT = 3
MB = 1 << 20


# ------------------------------------------------------------------------- the child
def _status(key: str) -> int:
    """A ``/proc/self/status`` value (VmSize, VmRSS, ...) in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def _model() -> object:
    from sklearn_din import DINClassifier

    # Small and fast: the test is about memory, and one epoch must take seconds.
    return DINClassifier(max_epochs=1, embed_dim=4, attention_units=(8,), hidden_units=(16,),
                         activation="relu", batch_size=2048, lr=0.01, verbose=0,
                         random_state=0)


def _stream(paths: list[str]) -> dict:
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline

    from sklearn_din import SequenceFeatureTransformer, fit_stream
    from sklearn_din.datasets import iter_parquet

    transformer = SequenceFeatureTransformer(max_len=MAX_LEN)
    for chunk in iter_parquet(paths, batch_rows=BATCH_ROWS):
        transformer.partial_fit(chunk.drop(columns="label"), chunk["label"])
    model = fit_stream(make_pipeline(transformer, _model()), paths)
    scores, labels = [], []
    for chunk in iter_parquet(paths, batch_rows=BATCH_ROWS):
        scores.append(model.predict_proba(chunk.drop(columns="label"))[:, 1])
        labels.append(chunk["label"].to_numpy())
    labels, scores = np.concatenate(labels), np.concatenate(scores)
    return {"rows": len(labels), "train_auc": float(roc_auc_score(labels, scores)),
            "epochs": len(model[-1].history_), "behaviours": transformer.n_behaviours_}


def _in_memory(paths: list[str]) -> dict:
    import pandas as pd
    from sklearn.pipeline import make_pipeline

    from sklearn_din import SequenceFeatureTransformer

    rows = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    model = make_pipeline(SequenceFeatureTransformer(max_len=MAX_LEN), _model())
    model.fit(rows.drop(columns="label"), rows["label"])
    return {"rows": len(rows)}


def child(mode: str, data_dir: str, cap_mb: int) -> int:
    import resource

    import pyarrow as pa
    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    paths = sorted(str(p) for p in Path(data_dir).glob("*.parquet"))
    # Warm up on a few rows: imports, thread pools and one-time initialisations are the
    # process's start-up, not the data's cost, and happen before the cap is measured.
    _stream(paths[:1]) if mode == "stream" else _in_memory(paths[:1])
    import gc

    gc.collect()
    # RLIMIT_AS caps the address space: every allocation past it fails with MemoryError
    # (numpy, pyarrow) or a RuntimeError (torch), whatever the allocator.
    limit = _status("VmSize") + cap_mb * MB
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    try:  # reset the high-water mark, so VmHWM is this run's peak (Linux >= 4.0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    rss_before = _status("VmRSS")
    try:
        result = _stream(paths) if mode == "stream" else _in_memory(paths)
    except MemoryError as exc:
        print(f"MemoryError: {type(exc).__name__}: {exc}", flush=True)
        return MEMORY_ERROR_EXIT
    except RuntimeError as exc:
        if "can't allocate memory" not in str(exc):
            raise
        print(f"MemoryError (torch): {exc}", flush=True)
        return MEMORY_ERROR_EXIT
    result.update(rss_before=rss_before, peak_rss=_status("VmHWM"), vm_peak=_status("VmPeak"),
                  limit=limit)
    print(json.dumps(result), flush=True)
    return 0


# ------------------------------------------------------------------------- the test
def _run_child(mode: str, data_dir: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               # One malloc arena and the system allocator for arrow: no per-thread
               # reservations of address space that the cap would count as data.
               MALLOC_ARENA_MAX="1", ARROW_DEFAULT_MEMORY_POOL="system",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, __file__, mode, str(data_dir), str(CAP_MB)],
                          capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def parquet_log(tmp_path_factory) -> tuple[Path, int]:
    pytest.importorskip("pyarrow")
    from sklearn_din.datasets import make_interactions, sample_negatives

    log = make_interactions(n_users=50_000, n_items=5_000, n_categories=50, mean_events=6,
                            random_state=0)
    rows = sample_negatives(log, random_state=0)
    directory = tmp_path_factory.mktemp("stream_log")
    for i, start in enumerate(range(0, len(rows), BATCH_ROWS)):
        rows.iloc[start : start + BATCH_ROWS].to_parquet(directory / f"part-{i:03d}.parquet")
    return directory, len(rows)


def test_stream_fits_a_log_several_times_larger_than_the_memory_cap(parquet_log):
    directory, n_rows = parquet_log
    # In memory the workflow holds the log (5 int64 columns) and the feature matrix
    # (user, item, category, two history blocks, hist_len: int32).
    in_memory_bytes = n_rows * (5 * 8 + (3 + 2 * MAX_LEN + 1) * 4)
    assert in_memory_bytes > 3 * CAP_MB * MB

    streamed = _run_child("stream", directory)
    assert streamed.returncode == 0, streamed.stdout[-3000:] + streamed.stderr[-3000:]
    result = json.loads(streamed.stdout.strip().splitlines()[-1])
    assert result["rows"] == n_rows and result["epochs"] == 1
    assert result["vm_peak"] <= result["limit"]
    assert result["peak_rss"] - result["rss_before"] < CAP_MB * MB
    assert result["train_auc"] > 0.6  # one epoch learnt the planted signal

    in_memory = _run_child("memory", directory)
    assert in_memory.returncode == MEMORY_ERROR_EXIT, (
        "the in-memory workflow did not run out of memory under the cap, so the cap does "
        "not bind: " + in_memory.stdout[-2000:] + in_memory.stderr[-3000:]
    )


if __name__ == "__main__":
    sys.exit(child(sys.argv[1], sys.argv[2], int(sys.argv[3])))
