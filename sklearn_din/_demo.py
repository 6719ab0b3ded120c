"""The demo: from an interaction log to an evaluated DIN, with scikit-learn tools only."""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.compose import ColumnTransformer
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline

from ._classifier import DINClassifier, NoHistoryWarning
from ._transformer import SequenceFeatureTransformer
from ._version import __version__
from .datasets import (
    leave_last_out_split,
    make_interactions,
    read_interactions,
    sample_negatives,
)
from .metrics import gauc_score


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sklearn_din",
        description=(
            "Fit DIN on an interaction log and compare it with its strongest honest baselines, "
            "all with the same defaults: an item-only model (no history; the item and its "
            "category embedded) and pooled history (the paper's base model, sum and mean "
            "pooling). By default the log "
            "is generated (make_interactions); --csv reads one with the columns "
            "user_id,item_id,time,cate_id (the torch-rechub tutorial's)."
        ),
    )
    parser.add_argument("--csv", help="interaction log to read instead of generating one")
    parser.add_argument("--users", type=int, default=3000, help="users to generate (default 3000)")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply the generated log's size (default 1)"
    )
    parser.add_argument(
        "--epochs", type=int, default=None,
        help="train exactly this many epochs (default: the package's early stopping)",
    )
    parser.add_argument("--max-len", type=int, default=None,
                        help="history length (default: the transformer's, 50)")
    parser.add_argument("--embed-dim", type=int, default=None,
                        help="embedding width (default: the classifier's)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps (default cpu)")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch CPU threads (default 1: these small models gain little from more, and on "
             "a busy machine more threads can be many times slower)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no epoch tables")
    parser.add_argument("--version", action="version", version=f"sklearn-din {__version__}")
    return parser


def _step(message: str) -> float:
    print(f"-> {message}", flush=True)
    return time.perf_counter()


# name -> how the history is used: the models differ in one step or one parameter only.
MODELS = {
    "item only (no history)": "none",
    "pooled history, sum (base model)": "sum",
    "pooled history, mean (base model)": "mean",
    "DIN (attention)": "attention",
}
ID_COLS = ["user_id", "item_id", "cate_id"]


def _pipeline(history: str, args: argparse.Namespace) -> Pipeline:
    """One of the demo's models: the package defaults, with only what the options set."""
    options = {"max_len": args.max_len} if args.max_len else {}
    steps: list = [("sequences", SequenceFeatureTransformer(**options))]
    params: dict = {"device": args.device, "verbose": 0 if args.quiet else 1,
                    "random_state": args.seed}
    if args.epochs is not None:
        params.update(max_epochs=args.epochs, early_stopping=False)
    if args.embed_dim is not None:
        params["embed_dim"] = args.embed_dim
    if history == "none":
        # The item-only baseline keeps the ids and embeds them, as strong as it can be:
        # ids fed to the MLP as numbers would flatter DIN.
        keep = ColumnTransformer([("ids", "passthrough", ID_COLS)],
                                 verbose_feature_names_out=False)
        steps.append(("drop_history", keep.set_output(transform="pandas")))
        params["categorical_cols"] = tuple(ID_COLS[1:])
    elif history != "attention":
        params["pooling"] = history
    steps.append(("din", DINClassifier(**params)))
    return Pipeline(steps)


def _show_attention(model: Pipeline, test: pd.DataFrame, n_users: int = 3) -> None:
    sequences: SequenceFeatureTransformer = model.named_steps["sequences"]
    din: DINClassifier = model.named_steps["din"]
    rows = test[test["label"] == 1].drop(columns="label")
    features = sequences.transform(rows)
    rows = rows[features["hist_len"].to_numpy() >= 3].head(n_users)
    if rows.empty:
        print("   (no test user has 3 or more earlier clicks)")
        return
    features = sequences.transform(rows)
    weights = din.attention_weights(features)
    items = sequences.vocabularies_["item_id"]
    cates = sequences.vocabularies_["cate_id"]

    def decode(vocab: np.ndarray, code: int) -> object:
        return vocab[code - 2] if code >= 2 else "?"

    for i, (_, row) in enumerate(rows.iterrows()):
        length = int(features["hist_len"].iloc[i])
        print(
            f"   user {row['user_id']}: candidate item {row['item_id']} "
            f"(category {row['cate_id']}), {length} earlier clicks; heaviest:"
        )
        top = np.argsort(-weights[i, :length], kind="stable")[:4]
        for k in top:
            item = decode(items, int(features[f"hist_item_id_{k}"].iloc[i]))
            cate = decode(cates, int(features[f"hist_cate_id_{k}"].iloc[i]))
            same = "  <- same category" if cate == row["cate_id"] else ""
            print(f"     {k + 1:>3} clicks ago  item {item!s:>8}  category {cate!s:>5}  "
                  f"weight {weights[i, k]:+.3f}{same}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns the process exit status."""
    args = _parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"sklearn-din demo (torch threads: {torch.get_num_threads()}, device: {args.device})")

    t = _step("reading the log" if args.csv else "generating the log (make_interactions)")
    if args.csv:
        try:
            log = read_interactions(args.csv)
        except ValueError as error:
            raise SystemExit(f"--csv: {error}") from None
    else:
        log = make_interactions(n_users=int(args.users * args.scale),
                                n_items=int(1000 * max(args.scale, 1)),
                                random_state=args.seed)
    rows = sample_negatives(log, random_state=args.seed)
    train, valid, test = leave_last_out_split(rows)
    train = pd.concat([train, valid])  # no model selection here: validation joins training
    print(f"   {len(log):,} clicks by {log['user_id'].nunique():,} users on "
          f"{log['item_id'].nunique():,} items -> {len(rows):,} CTR rows "
          f"(one sampled negative per click); train {len(train):,}, test {len(test):,} "
          f"(each user's last click), {time.perf_counter() - t:.1f}s")

    results = []
    fitted = {}
    for name, history in MODELS.items():
        t = _step(f"fitting Pipeline([SequenceFeatureTransformer, DINClassifier]): {name}")
        model = _pipeline(history, args)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NoHistoryWarning)
            model.fit(train.drop(columns="label"), train["label"])
        fit_seconds = time.perf_counter() - t
        score = model.predict_proba(test.drop(columns="label"))[:, 1]
        epochs = len(model.named_steps["din"].history)
        results.append({
            "model": name,
            "fit s": round(fit_seconds, 1),
            "epochs": epochs,
            "train rows/s": round(len(train) * epochs / fit_seconds),
            "test AUC": round(roc_auc_score(test["label"], score), 4),
            "test GAUC": round(gauc_score(test["label"], score, groups=test["user_id"]), 4),
        })
        fitted[history] = model

    print("\nResults (test = each user's last click and its sampled negative):")
    print(pd.DataFrame(results).to_string(index=False))
    if len(test) < 200:
        print("   (fewer than 200 test rows: these AUCs are noise, not evidence)")
    print("\nWhat DIN attended to for one candidate, for a few test users:")
    _show_attention(fitted["attention"], test)
    return 0
