"""DIN dropped into an existing tabular workflow: ColumnTransformer, CV, calibration, joblib.

Interaction logs rarely come alone: an item has a price, a user an age, a row a
device. This script adds a numeric ``price`` column (derived deterministically
from ``item_id``, so every row of an item has the same price) and shows that
DINClassifier behaves like any other scikit-learn classifier around it:

1. ``SequenceFeatureTransformer`` turns the log into ids and histories and
   passes ``price`` through unchanged;
2. a ``ColumnTransformer`` scales ``price`` with ``StandardScaler`` and passes
   the id and history columns through (``remainder="passthrough"``,
   ``verbose_feature_names_out=False`` and ``set_output(transform="pandas")`` keep
   the column names DINClassifier reads: ``hist_<f>_<k>``, ``user_id``, ...);
3. ``DINClassifier`` embeds the ids, attends over the history and feeds the
   scaled price to its MLP as a dense feature.

The Pipeline is cross-validated with ``cross_val_score`` over ``GroupKFold``
folds by user (``scoring="roc_auc"``), wrapped in ``CalibratedClassifierCV`` (the
Brier score on the test split is printed before and after), saved with joblib,
reloaded, and checked to predict exactly the same probabilities. The uncalibrated
pipeline is also saved with ``save_model``, which needs no pickle: the
ColumnTransformer goes through skops (``pip install "sklearn-din[skops]"``).

Two details specific to interaction data:

- ``sample_negatives`` copies the positive row's columns into its negatives
  unless told that a column describes the item: pass
  ``item_attribute_cols=("cate_id", "price")`` so each negative carries its
  own item's price, not the clicked item's.
- The transformer is fitted once on the development clicks and wrapped in
  ``FrozenEstimator`` (see ``grid_search.py``): fitted inside a user-grouped
  fold it would know only the training users' clicks, and every held-out user
  would get an empty history.

The price here is noise by construction (a hash of the item id); the point is
the plumbing, not the feature. Calibration is done twice: with
``CalibratedClassifierCV(cv=<3 user-grouped folds>)``, which refits the
pipeline on each fold and calibrates on held-out users, and with
``CalibratedClassifierCV(FrozenEstimator(model))`` fitted on the validation
split (each user's second-to-last event), which calibrates the already fitted
model on the kind of rows it will score: known users' next events.

Usage::

    python examples/tabular_workflow.py            # generated log, ~1 minute
    python examples/tabular_workflow.py --small    # a few seconds
    python examples/tabular_workflow.py --csv interactions.csv  # user_id,item_id,time,cate_id
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import torch
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.model_selection import GroupKFold, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_din import DINClassifier, SequenceFeatureTransformer, load_model, save_model
from sklearn_din.datasets import (
    leave_last_out_split,
    make_interactions,
    read_interactions,
    sample_negatives,
)

COLUMNS = ["user_id", "item_id", "time", "cate_id"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="DINClassifier in a tabular scikit-learn workflow.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--csv", metavar="PATH", default=None,
                        help="CSV with columns user_id,item_id,time,cate_id; "
                             "default: a generated log")
    parser.add_argument("--small", action="store_true",
                        help="tiny log and model (a few seconds; used by the tests)")
    parser.add_argument("--n-users", type=int, default=None,
                        help="users of the generated log (default 1000, 100 with --small)")
    parser.add_argument("--folds", type=int, default=3,
                        help="user-grouped folds for cross_val_score and calibration")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs per fit (default 3, 1 with --small)")
    parser.add_argument("--max-len", type=int, default=20, help="history length kept")
    parser.add_argument("--calibration", choices=["sigmoid", "isotonic"], default="sigmoid",
                        help="CalibratedClassifierCV method")
    parser.add_argument("--save", metavar="PATH", default=None,
                        help="where to save the calibrated pipeline (default: a temporary file)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default 1: on a busy machine, more threads can be "
                             "much slower)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data and models")
    args = parser.parse_args(argv)
    args.n_users = args.n_users or (100 if args.small else 1000)
    args.epochs = args.epochs or (1 if args.small else 3)
    args.threads = args.threads or 1
    return args


def load_log(args: argparse.Namespace) -> tuple[pd.DataFrame, str]:
    if args.csv:
        return read_interactions(args.csv, COLUMNS), args.csv
    if args.small:
        sizes = dict(n_users=args.n_users, n_items=80, n_categories=8, mean_events=10)
    else:
        sizes = dict(n_users=args.n_users, n_items=400, n_categories=30)
    described = ", ".join(f"{k}={v}" for k, v in sizes.items())
    return make_interactions(**sizes, random_state=args.seed), f"make_interactions({described})"


def item_price(item_ids: pd.Series) -> np.ndarray:
    """A price per item, from a hash of its id: deterministic, 5 to about 270."""
    unit = pd.util.hash_pandas_object(item_ids, index=False).to_numpy() % 10_000 / 10_000
    return np.round(5.0 * np.exp(4.0 * unit), 2)


def make_model(store: SequenceFeatureTransformer, args: argparse.Namespace) -> Pipeline:
    columns = ColumnTransformer(
        [("price", StandardScaler(), ["price"])],
        remainder="passthrough",
        verbose_feature_names_out=False,
    ).set_output(transform="pandas")
    din = DINClassifier(
        hidden_units=(32,) if args.small else (200, 80),
        max_epochs=args.epochs,
        lr=3e-3,
        batch_size=256 if args.small else 512,
        verbose=0,
        random_state=args.seed,
    )
    return Pipeline([("history", FrozenEstimator(store)), ("columns", columns), ("din", din)])


def report(name: str, y: pd.Series, proba: np.ndarray) -> str:
    return (f"{name:<34} {roc_auc_score(y, proba):>8.4f} {brier_score_loss(y, proba):>8.4f} "
            f"{proba.mean():>7.3f}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)

    log, source = load_log(args)
    log = log.assign(price=item_price(log["item_id"]))
    rows = sample_negatives(log, item_attribute_cols=("cate_id", "price"), random_state=args.seed)
    train, valid, test = leave_last_out_split(rows)
    X_train, y_train = train.drop(columns="label"), train["label"]
    X_valid, y_valid = valid.drop(columns="label"), valid["label"]
    X_test, y_test = test.drop(columns="label"), test["label"]
    print(f"data: {source}: {len(log):,} clicks; columns {list(X_train.columns)}")
    print(f"rows: train {len(train):,} / valid {len(valid):,} / test {len(test):,} "
          "(leave_last_out_split)")

    # The behaviour store knows every development click; fit does not touch it again.
    dev = pd.concat([train, valid])
    store = SequenceFeatureTransformer(max_len=args.max_len).fit(
        dev.drop(columns="label"), dev["label"]
    )
    model = make_model(store, args)
    # 1. Cross-validation with folds grouped by user.
    groups = X_train["user_id"]
    folds = list(GroupKFold(n_splits=args.folds).split(X_train, y_train, groups))
    start = time.perf_counter()
    scores = cross_val_score(model, X_train, y_train, cv=folds, scoring="roc_auc")
    print(f"cross_val_score (GroupKFold by user, {args.folds} folds): AUC "
          f"{scores.mean():.4f} +/- {scores.std():.4f}  [{time.perf_counter() - start:.0f} s]")

    # 2. Fit on the training split; calibrate two ways; score the test split.
    model.fit(X_train, y_train)
    features = model[:-1].transform(X_test.head(3))
    print(f"DINClassifier input: {features.shape[1]} columns; price scaled (first test rows: "
          f"{np.round(features['price'].to_numpy(), 2).tolist()}); ids and histories passed "
          f"through ({features['hist_item_id_0'].dtype})")
    by_folds = CalibratedClassifierCV(model, method=args.calibration, cv=folds)
    by_folds.fit(X_train, y_train)
    on_valid = CalibratedClassifierCV(FrozenEstimator(model), method=args.calibration)
    on_valid.fit(X_valid, y_valid)
    print()
    print(f"test split: {len(test):,} rows, click rate {y_test.mean():.3f}")
    print(f"{'model':<34} {'AUC':>8} {'Brier':>8} {'mean p':>7}")
    proba = model.predict_proba(X_test)[:, 1]
    print(report("uncalibrated pipeline", y_test, proba))
    print(report(f"CalibratedClassifierCV(cv={args.folds} grp)", y_test,
                 by_folds.predict_proba(X_test)[:, 1]))
    calibrated = on_valid.predict_proba(X_test)[:, 1]
    print(report("calibrated on the valid split", y_test, calibrated))
    briers = {
        "uncalibrated": brier_score_loss(y_test, proba),
        "grouped folds": brier_score_loss(y_test, by_folds.predict_proba(X_test)[:, 1]),
        "valid split": brier_score_loss(y_test, calibrated),
    }
    best = min(briers, key=briers.get)
    print(f"lowest Brier: {best}. A network trained with log loss is often close to "
          "calibrated already;\nthe grouped-fold variant refits on 2/3 of the users and "
          "calibrates on users it never saw,\nwhile the test scores known users' next "
          "events, which the valid split resembles.")

    # 3. Save, reload, compare.
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.save or Path(tmp) / "din_pipeline.joblib")
        joblib.dump(on_valid, path)
        size = path.stat().st_size
        reloaded = joblib.load(path)
        again = reloaded.predict_proba(X_test)[:, 1]
    same = np.array_equal(again, calibrated)
    print()
    print(f"joblib: saved {size / 1e6:.1f} MB to {path if args.save else 'a temporary file'}, "
          f"reloaded: predictions identical: {same}")
    # The uncalibrated pipeline, ColumnTransformer included, also saves without pickle.
    with tempfile.TemporaryDirectory() as tmp:
        save_model(model, Path(tmp) / "din_pipeline.npz")
        no_pickle = load_model(Path(tmp) / "din_pipeline.npz").predict_proba(X_test)[:, 1]
    same_no_pickle = np.array_equal(no_pickle, proba)
    print(f"save_model (no pickle; the ColumnTransformer through skops): reloaded: "
          f"predictions identical: {same_no_pickle}")
    return 0 if same and same_no_pickle else 1


if __name__ == "__main__":
    raise SystemExit(main())
