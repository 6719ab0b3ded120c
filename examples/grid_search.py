"""Tune DINClassifier with GridSearchCV, splitting by user, then test the refit model.

Every DINClassifier hyperparameter is a constructor parameter, so scikit-learn's
model selection works unchanged: a Pipeline, a parameter grid with
``dinclassifier__embed_dim``, ``dinclassifier__hidden_units`` and
``dinclassifier__lr``, ``scoring="roc_auc"``, and a splitter that keeps each
user's rows together (``GroupKFold`` with ``groups=`` the user column, passed to
``fit``). The refit best model is then scored on a leave-last-out test split:
each user's last event, which the search never saw.

Why not plain KFold? An interaction log is not a set of independent rows.
KFold scatters each user's rows over both sides of every split, so the model is
trained on rows that come *after* the rows it is validated on: the user's
embedding is fitted to that user's future, and the histories of those later
training rows contain the very clicks the validation rows ask about (the
validation click is ``hist_item_id_0`` of the user's next training row). The
validation score then rewards memorising the future, which no deployed model
can do, and model selection drifts towards models that memorise best.
GroupKFold puts each user entirely on one side, so nothing about a validation
user, past or future, is in training.

Why the transformer is fitted once, outside the search: SequenceFeatureTransformer
builds each row's history from the clicks it stored in fit. Inside the
Pipeline, each fold would fit it on the training users only, and every
held-out user would arrive with an *empty* history (the script prints the
proof), so the search would tune a model that never sees a history. Here it is
fitted on the development clicks (train + validation rows, label 1) and wrapped
in :class:`sklearn.frozen.FrozenEstimator`, so ``fit`` leaves it as it is. That
is not a leak: each row's history holds only its own user's clicks strictly
earlier than the row, which is exactly what the model would see at that moment
in production; the test rows are not used (their items, if new, map to "unknown").

Usage::

    python examples/grid_search.py            # generated log, ~2 minutes on 2 cores
    python examples/grid_search.py --small    # a few seconds
    python examples/grid_search.py --csv interactions.csv  # user_id,item_id,time,cate_id
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
import torch
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import (
    GridSearchCV,
    GroupKFold,
    KFold,
    ParameterGrid,
    cross_val_score,
)
from sklearn.pipeline import make_pipeline

from sklearn_din import DINClassifier, SequenceFeatureTransformer
from sklearn_din.datasets import (
    leave_last_out_split,
    make_interactions,
    read_interactions,
    sample_negatives,
)

COLUMNS = ["user_id", "item_id", "time", "cate_id"]

WHY_GROUPS = """\
Why GroupKFold and not KFold: KFold puts each user's rows on both sides of the split, so
the model trains on rows that come AFTER the rows it is validated on. The user's
embedding learns that user's future, and the histories of the later training rows contain
the very clicks the validation rows ask about. The score rewards memorising the future;
GroupKFold(groups=user) keeps every user on one side."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="GridSearchCV over DINClassifier with user-grouped folds.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--csv", metavar="PATH", default=None,
                        help="CSV with columns user_id,item_id,time,cate_id; "
                             "default: a generated log")
    parser.add_argument("--small", action="store_true",
                        help="tiny log, grid and folds (a few seconds; used by the tests)")
    parser.add_argument("--n-users", type=int, default=None,
                        help="users of the generated log (default 500, 100 with --small)")
    parser.add_argument("--folds", type=int, default=None,
                        help="GroupKFold splits (default 3, 2 with --small)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs per fit (default 3, 1 with --small)")
    parser.add_argument("--max-len", type=int, default=20, help="history length kept")
    parser.add_argument("--no-kfold", action="store_true",
                        help="skip the comparison with a plain KFold estimate")
    parser.add_argument("--jobs", type=int, default=1,
                        help="GridSearchCV n_jobs: fits in parallel processes")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default 1: on a busy machine, more threads can be "
                             "much slower)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data, folds and models")
    args = parser.parse_args(argv)
    small = args.small
    args.n_users = args.n_users or (100 if small else 500)
    args.folds = args.folds or (2 if small else 3)
    args.epochs = args.epochs or (1 if small else 3)
    args.threads = args.threads or 1
    return args


def load_log(args: argparse.Namespace) -> tuple[pd.DataFrame, str]:
    if args.csv:
        return read_interactions(args.csv, COLUMNS), args.csv
    if args.small:
        sizes = dict(n_users=args.n_users, n_items=80, n_categories=8, mean_events=10)
    else:
        sizes = dict(n_users=args.n_users, n_items=300, n_categories=30)
    described = ", ".join(f"{k}={v}" for k, v in sizes.items())
    return make_interactions(**sizes, random_state=args.seed), f"make_interactions({described})"


def param_grid(small: bool) -> dict[str, list]:
    if small:
        return {
            "dinclassifier__embed_dim": [4, 8],
            "dinclassifier__hidden_units": [(16,)],
            "dinclassifier__lr": [3e-3, 1e-2],
        }
    return {
        "dinclassifier__embed_dim": [8, 16],
        "dinclassifier__hidden_units": [(64,), (200, 80)],
        "dinclassifier__lr": [1e-3, 1e-2, 1e-1],
    }


def results_table(search: GridSearchCV) -> str:
    res = pd.DataFrame(search.cv_results_)
    table = pd.DataFrame({
        "embed_dim": res["param_dinclassifier__embed_dim"],
        "hidden_units": res["param_dinclassifier__hidden_units"].map(str),
        "lr": res["param_dinclassifier__lr"],
        "mean AUC": res["mean_test_score"].round(4),
        "std": res["std_test_score"].round(4),
        "rank": res["rank_test_score"],
        "fit s": res["mean_fit_time"].round(1),
    })
    return table.sort_values("rank").to_string(index=False)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)

    log, source = load_log(args)
    rows = sample_negatives(log, random_state=args.seed)
    train, valid, test = leave_last_out_split(rows)
    dev = pd.concat([train, valid]).sort_index()  # everything but each user's last event
    X_dev, y_dev = dev.drop(columns="label"), dev["label"]
    X_test, y_test = test.drop(columns="label"), test["label"]
    groups = X_dev["user_id"]
    print(f"data: {source}: {len(log):,} clicks, {log['user_id'].nunique():,} users")
    print(f"rows: {len(dev):,} development rows (searched with GroupKFold), "
          f"{len(test):,} test rows (each user's last event)")

    # The behaviour store: fitted once on the development clicks, frozen for the search.
    features = SequenceFeatureTransformer(max_len=args.max_len).fit(X_dev, y_dev)
    splitter = GroupKFold(n_splits=args.folds)
    fold_train, fold_valid = next(splitter.split(X_dev, y_dev, groups))
    in_fold = SequenceFeatureTransformer(max_len=args.max_len).fit(
        X_dev.iloc[fold_train], y_dev.iloc[fold_train]
    )
    print("mean history length of held-out users: "
          f"{in_fold.transform(X_dev.iloc[fold_valid])['hist_len'].mean():.1f} with the "
          "transformer fitted inside the fold, "
          f"{features.transform(X_dev.iloc[fold_valid])['hist_len'].mean():.1f} with it "
          "fitted once and frozen")
    print()

    model = make_pipeline(
        FrozenEstimator(features),
        DINClassifier(max_epochs=args.epochs, batch_size=256, verbose=0,
                      random_state=args.seed),
    )
    grid = param_grid(args.small)
    search = GridSearchCV(model, grid, scoring="roc_auc", cv=splitter, refit=True,
                          n_jobs=args.jobs)
    n_fits = args.folds * len(ParameterGrid(grid))
    start = time.perf_counter()
    search.fit(X_dev, y_dev, groups=groups)
    seconds = time.perf_counter() - start
    print(f"GridSearchCV: {n_fits} fits + refit in {seconds:.0f} s "
          f"(GroupKFold, {args.folds} folds by user_id, scoring='roc_auc')")
    print(results_table(search))
    best = {k.removeprefix("dinclassifier__"): v for k, v in search.best_params_.items()}
    print(f"best: {best}  CV AUC {search.best_score_:.4f}")
    for name, values in grid.items():
        numbers = sorted(v for v in values if isinstance(v, int | float))
        chosen = search.best_params_[name]
        if len(numbers) > 2 and chosen in (numbers[0], numbers[-1]):
            print(f"  note: best {name.removeprefix('dinclassifier__')}={chosen} is at the edge "
                  "of its grid; widen the grid before trusting it.")
    print()

    test_auc = roc_auc_score(y_test, search.predict_proba(X_test)[:, 1])
    print(f"test AUC of the refit best model: {test_auc:.4f} "
          f"({len(test):,} rows, leave-last-out)")
    print("  (CV scores users the model never saw, at all their events; the test scores "
          "known users'\n  last events, with the longest histories, after training on every "
          "user: expect it higher.)")

    print()
    print(WHY_GROUPS)
    if not args.no_kfold:
        best_model = search.best_estimator_
        kfold = KFold(n_splits=args.folds, shuffle=True, random_state=args.seed)
        kfold_auc = cross_val_score(best_model, X_dev, y_dev, cv=kfold, scoring="roc_auc")
        print(f"Best parameters, CV AUC with plain KFold: {kfold_auc.mean():.4f} "
              f"(GroupKFold: {search.best_score_:.4f}; held-out test: {test_auc:.4f}).\n"
              "Part of the KFold-GroupKFold gap is the leak, part the user embeddings that "
              "GroupKFold\nleaves untrained for its held-out users.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
