"""Where DIN's margin over pooling lives: validation AUC by history length (issue 13).

Fits the package defaults (DIN, and the same model with ``pooling="mean"`` and ``"sum"``)
on the training rows of ``protocol.py``'s split and scores its validation rows (test rows
are never read), then splits the validation rows by the length of their history. In the
protocol a click and its sampled negative share one history, so every length bucket holds
whole pairs and its AUC is well defined.

    python benchmarks/accuracy_by_length.py                  # 3 data sets, seeds 0 1 2
    python benchmarks/accuracy_by_length.py --datasets beauty --seeds 0
    python benchmarks/accuracy_by_length.py --datasets movielens --update  # rerun one log

Writes results/accuracy_by_length.md and .json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import (  # noqa: E402
    commit_label,
    machine_info,
    machine_line,
    mark_end,
    markdown_table,
)
from protocol import DATASETS, load_split, xy  # noqa: E402

from sklearn_din import DINClassifier, SequenceFeatureTransformer  # noqa: E402

torch.set_num_threads(1)

MODELS = {"DIN": {}, "mean": {"pooling": "mean"}, "sum": {"pooling": "sum"}}
# Upper ends of the history-length buckets (inclusive); the last bucket is everything longer.
EDGES = (0, 1, 2, 4, 8, 16, 32)


def buckets(lengths: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(label, row mask) per history-length bucket that holds any row."""
    out, lo = [], 0
    for hi in (*EDGES, None):
        mask = lengths >= lo if hi is None else (lengths >= lo) & (lengths <= hi)
        label = f">= {lo}" if hi is None else (str(hi) if hi == lo else f"{lo}-{hi}")
        if mask.any():
            out.append((label, mask))
        lo = (hi or 0) + 1
    return out


def run(name: str, seeds: list[int]) -> dict:
    split = load_split(name)
    Xtr, ytr = xy(split.train)
    Xva, yva = xy(split.valid)
    transformer = SequenceFeatureTransformer().fit(Xtr, ytr)
    Ftr, Fva = transformer.transform(Xtr), transformer.transform(Xva)
    lengths = Fva["hist_len"].to_numpy()
    scores, seconds = {m: [] for m in MODELS}, {m: [] for m in MODELS}
    for model, params in MODELS.items():
        for seed in seeds:
            start = time.perf_counter()
            clf = DINClassifier(verbose=0, random_state=seed, **params).fit(Ftr, ytr)
            seconds[model].append(time.perf_counter() - start)
            scores[model].append(clf.predict_proba(Fva)[:, 1])
            print(f"{name} {model} seed {seed}: "
                  f"{roc_auc_score(yva, scores[model][-1]):.4f}", flush=True)
    rows = []
    for label, mask in [("all", np.ones(len(yva), bool)), *buckets(lengths)]:
        auc = {m: [roc_auc_score(yva[mask], p[mask]) for p in scores[m]] for m in MODELS}
        rows.append({"history length": label, "rows": int(mask.sum()),
                     **{m: float(np.mean(a)) for m, a in auc.items()},
                     "DIN per seed": [float(a) for a in auc["DIN"]],
                     "mean per seed": [float(a) for a in auc["mean"]]})
    return {"dataset": name, "description": split.description, "seeds": seeds,
            "fit_s": {m: float(np.mean(s)) for m, s in seconds.items()}, "rows": rows}


def table(result: dict) -> str:
    lines = []
    for row in result["rows"]:
        pooled = max(row["mean"], row["sum"])
        per_seed = ", ".join(f"{100 * (d - m):+.2f}" for d, m in
                             zip(row["DIN per seed"], row["mean per seed"], strict=True))
        lines.append([row["history length"], f"{row['rows']:,}", f"{row['DIN']:.4f}",
                      f"{row['mean']:.4f}", f"{row['sum']:.4f}",
                      f"{100 * (row['DIN'] - pooled):+.2f}",
                      f"{100 * (row['DIN'] - row['mean']):+.2f} ({per_seed})"])
    return "\n".join(markdown_table(
        ["history length", "validation rows", "DIN AUC", "mean AUC", "sum AUC",
         "DIN - better pooled (points)", "DIN - mean, per seed"], lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="*", default=["beauty", "video_games", "movielens"],
                        choices=list(DATASETS))
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--out", default=str(HERE / "results" / "accuracy_by_length.md"))
    parser.add_argument("--update", action="store_true",
                        help="rerun only --datasets; keep the other logs' results of --out")
    args = parser.parse_args(argv)
    out = Path(args.out)
    info = machine_info()
    results = [{**run(name, args.seeds), "machine": info} for name in args.datasets]
    mark_end(info)
    if args.update and out.with_suffix(".json").exists():
        earlier = json.loads(out.with_suffix(".json").read_text())
        rerun = {r["dataset"] for r in results}
        kept = [{"machine": earlier["machine"], **r} for r in earlier["results"]
                if r["dataset"] not in rerun]  # an older file's results share its machine
        order = list(DATASETS)
        results = sorted(kept + results, key=lambda r: order.index(r["dataset"]))
    command = "python benchmarks/accuracy_by_length.py " + " ".join(sys.argv[1:])
    parts = [
        "# Where DIN's margin lives: validation AUC by history length (issue 13)", "",
        f"Command: `{command.strip()}`", "", machine_line(info), "",
        "The package defaults (DIN, and the same classifier with `pooling=\"mean\"` / "
        "`\"sum\"`), fit on `protocol.py`'s training rows and scored on its validation rows, "
        f"mean over seeds {args.seeds}; the rows are then split by their history length "
        "(a click and its negative share one history, so each bucket holds whole pairs).", "",
    ]
    for result in results:
        fit = ", ".join(f"{m} {s:.0f} s" for m, s in result["fit_s"].items())
        measured = result["machine"]
        parts += [f"## {result['description']}", "",
                  f"Measured at git commit {commit_label(measured)} on "
                  f"{measured['date'][:16]}. Mean fit time: {fit}.", "",
                  table(result), ""]
    out.write_text("\n".join(parts))
    out.with_suffix(".json").write_text(json.dumps({"machine": info, "results": results},
                                                   indent=1))
    print("\n".join(parts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
