"""A numeric column on a real table: DINClassifier's ``standardize_numeric`` (its default, True)
against the column as it is, and against no numeric column.

The table is MovieLens latest-small's ratings joined to its movies, as a user would build it:
``userId, movieId, genres, timestamp`` and the movie's ``year`` (from its title; the 13
movies without one get 1990). Every rating is an impression and a rating >= 4 the click.
``sklearn_din.datasets.leave_last_out_split`` keeps each user's last rating for test; the
pipeline is ``SequenceFeatureTransformer(history_cols=("movieId", "genres"))`` then
``DINClassifier(random_state=seed)`` with everything else at its default. Test rows are
scored once per fit; nothing here chose a setting.

    python benchmarks/numeric_columns.py --variants raw --seeds 0 1 2
    python benchmarks/numeric_columns.py --report

Runs are appended to ``results/numeric_columns.jsonl`` (a recorded run is not repeated).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import pandas as pd
import torch
from harness import DATA, RESULTS, machine_info, machine_line, mark_end, markdown_table, mean_std
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline

from sklearn_din import DINClassifier, SequenceFeatureTransformer
from sklearn_din.datasets import leave_last_out_split
from sklearn_din.metrics import gauc_score

torch.set_num_threads(1)
RUNS = RESULTS / "numeric_columns.jsonl"
# name -> (keep the year column, DINClassifier's standardize_numeric)
VARIANTS = {
    "standardized": (True, True),
    "raw": (True, False),
    "no_year": (False, True),
}
LABELS = {
    "standardized": "`year`, `standardize_numeric=True` (default)",
    "raw": "`year` as it is, `standardize_numeric=False`",
    "no_year": "no `year` column",
}


def table() -> pd.DataFrame:
    folder = DATA / "movielens-latest-small"
    ratings = pd.read_csv(folder / "ratings.csv")
    movies = pd.read_csv(folder / "movies.csv")
    log = ratings.merge(movies, on="movieId")
    log["clicked"] = (log["rating"] >= 4).astype(int)
    log["year"] = log["title"].str.extract(r"\((\d{4})\)\s*$")[0].astype(float).fillna(1990)
    return log.drop(columns=["rating", "title"])


def run(log: pd.DataFrame, variant: str, seed: int) -> dict:
    keep_year, standardize = VARIANTS[variant]
    rows = log if keep_year else log.drop(columns="year")
    train, _, test = leave_last_out_split(rows, user_col="userId", time_col="timestamp")
    model = make_pipeline(
        SequenceFeatureTransformer(user_col="userId", item_col="movieId", time_col="timestamp",
                                   history_cols=("movieId", "genres")),
        DINClassifier(standardize_numeric=standardize, verbose=0, random_state=seed),
    )
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(train.drop(columns="clicked"), train["clicked"])
    seconds = time.perf_counter() - start
    p = model.predict_proba(test.drop(columns="clicked"))[:, 1]
    return {"variant": variant, "seed": seed,
            "auc": float(roc_auc_score(test["clicked"], p)),
            "gauc": float(gauc_score(test["clicked"], p, groups=test["userId"])),
            "epochs": len(model[-1].history), "fit_s": round(seconds, 1),
            "warnings": sorted({str(w.message).split(";")[0] for w in caught
                                if "numeric column" in str(w.message)}),
            "rows_train": len(train), "rows_test": len(test), "machine": mark_end(machine_info())}


def report(records: list[dict]) -> str:
    lines = ["# A numeric column on a real table (`standardize_numeric`)", "",
             "Command: `python benchmarks/numeric_columns.py --variants V --seeds 0 1 2` "
             "(then `--report`)", "", machine_line(records[-1]["machine"]), "",
             __doc__.split("\n\n")[1].replace("\n", " "), "",
             f"Rows train / test: {records[0]['rows_train']:,} / {records[0]['rows_test']:,}.", ""]
    rows = []
    for variant in VARIANTS:
        runs = sorted((r for r in records if r["variant"] == variant), key=lambda r: r["seed"])
        if not runs:
            continue
        warned = sorted({w for r in runs for w in r["warnings"]})
        rows.append([LABELS[variant], mean_std([r["auc"] for r in runs]),
                     mean_std([r["gauc"] for r in runs]),
                     ", ".join(f"{r['auc']:.4f}" for r in runs),
                     ", ".join(str(r["seed"]) for r in runs),
                     ", ".join(str(r["epochs"]) for r in runs),
                     f"{np.mean([r['fit_s'] for r in runs]):.0f}",
                     "; ".join(warned) or "none"])
    lines += markdown_table(["model", "test AUC", "test GAUC", "AUC per seed", "seeds",
                             "epochs", "fit s", "fit's warning"], rows)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--report", action="store_true", help="only write the report")
    args = parser.parse_args(argv)
    records = [json.loads(line) for line in RUNS.read_text().splitlines()] if RUNS.exists() else []
    if not args.report:
        done = {(r["variant"], r["seed"]) for r in records}
        log = table()
        for variant in args.variants:
            for seed in args.seeds:
                if (variant, seed) in done:
                    continue
                record = run(log, variant, seed)
                print(json.dumps({k: v for k, v in record.items() if k != "machine"}), flush=True)
                with open(RUNS, "a") as f:
                    f.write(json.dumps(record) + "\n")
                records.append(record)
    if records:
        (RESULTS / "numeric_columns.md").write_text(report(records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
