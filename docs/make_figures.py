"""Regenerate the figures of the documentation (docs/img/*.png).

Run from the repository root, with matplotlib installed::

    python docs/make_figures.py

It fits small models on a generated log (about a minute on one CPU thread) and
writes ``attention.png``, ``training_curves.png`` and ``calibration.png`` next to
this script, in ``docs/img/``. The figures are committed: the documentation
build does not run this script.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from skorch.callbacks import EarlyStopping  # noqa: E402
from skorch.dataset import ValidSplit  # noqa: E402

from sklearn_din import DINClassifier, SequenceFeatureTransformer  # noqa: E402
from sklearn_din.datasets import (  # noqa: E402
    leave_last_out_split,
    make_interactions,
    sample_negatives,
)
from sklearn_din.plotting import (  # noqa: E402
    plot_attention,
    plot_calibration,
    plot_training_curves,
)

OUT = Path(__file__).resolve().parent / "img"
SEED = 0


def save(ax: object, name: str) -> None:
    figure = np.ravel(ax)[0].figure
    figure.savefig(OUT / name, dpi=110, metadata={"Software": None})
    plt.close(figure)
    print(f"wrote {OUT / name}")


def candidates(log: pd.DataFrame, test: pd.DataFrame, features: SequenceFeatureTransformer,
               n_extra: int = 3) -> pd.DataFrame:
    """One test user's click and negative, plus items from other categories at the same time."""
    X_test = test.drop(columns="label")
    lengths = features.transform(X_test)["hist_len"]
    clicks = X_test[(test["label"] == 1) & lengths.between(8, 12)]
    row = clicks.iloc[0]
    user_rows = X_test[(X_test["user_id"] == row["user_id"]) & (X_test["time"] == row["time"])]
    history = features.transform(user_rows.head(1))
    seen = set(features.decode("cate_id", history.filter(like="hist_cate_id_").to_numpy()[0]))
    # Items of a category in the user's history and of categories the user never clicked.
    items = log.drop_duplicates("item_id")
    shown = set(user_rows["cate_id"])
    in_history = items[items["cate_id"].isin(seen - shown)].head(1)
    elsewhere = items[~items["cate_id"].isin(seen | shown)].drop_duplicates("cate_id")
    extra = pd.concat([in_history, elsewhere.head(n_extra - len(in_history))])
    extra = extra.assign(user_id=row["user_id"], time=row["time"])[list(X_test.columns)]
    return pd.concat([user_rows, extra], ignore_index=True)


def main() -> None:
    torch.set_num_threads(1)
    OUT.mkdir(exist_ok=True)
    log = make_interactions(n_users=1500, n_items=300, n_categories=20, random_state=SEED)
    rows = sample_negatives(log, random_state=SEED)
    train, valid, test = leave_last_out_split(rows)
    X_train, y_train = train.drop(columns="label"), train["label"]

    # Training curves: an internal validation split and early stopping on valid_auc.
    model = make_pipeline(
        SequenceFeatureTransformer(max_len=20),
        DINClassifier(
            max_epochs=12, lr=3e-3, batch_size=512, train_split=ValidSplit(10),
            callbacks=[EarlyStopping(monitor="valid_auc", lower_is_better=False, patience=3)],
            verbose=0, random_state=SEED,
        ),
    ).fit(X_train, y_train)
    save(plot_training_curves(model), "training_curves.png")

    # Calibration and ROC on each user's last event.
    X_test, y_test = test.drop(columns="label"), test["label"]
    save(plot_calibration(model, X_test, y_test, groups=X_test["user_id"]), "calibration.png")

    # Attention: one user at one moment, several candidate items.
    features = model.named_steps["sequencefeaturetransformer"]
    X = candidates(log, test, features)
    save(plot_attention(model, X, label_cols=("item_id", "cate_id")), "attention.png")


if __name__ == "__main__":
    main()
