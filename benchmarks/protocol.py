"""The accuracy benchmarks' data protocol: real logs, the DIN paper's negatives, a time split.

Every accuracy script reads its data through :func:`load_split`, so that the ablations (which
choose the package's defaults, on validation rows) and the accuracy benchmark (which reports
test rows) see exactly the same rows.

Protocol (the DIN paper's Amazon protocol, on every log):

* every event of the log is a click (MovieLens: a rating >= 4; its other ratings are dropped);
* one negative per click, drawn uniformly from the items that user never clicked
  (:func:`sklearn_din.datasets.sample_negatives`, data seed 0);
* per user, sorted by time, the last ``k`` events (distinct times, so a click and its negative
  stay together) -> test, the ``k`` before -> validation, the rest -> training. ``k = 1`` on the
  Amazon logs (users have 5-10 reviews), ``k = 5`` on MovieLens (610 users: one event each
  would give a test set of 1,220 rows, an AUC standard error of about 0.013).

Data sets are read from ``../shared/data/`` (never copied into the repository).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sklearn_din.datasets import sample_negatives

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
LOG_COLUMNS = ["user_id", "item_id", "time", "cate_id"]


def _amazon(folder: str, file: str = "interactions.csv") -> pd.DataFrame:
    return pd.read_csv(DATA / folder / file)[LOG_COLUMNS]


def _movielens() -> pd.DataFrame:
    folder = DATA / "movielens-latest-small"
    ratings = pd.read_csv(folder / "ratings.csv")
    movies = pd.read_csv(folder / "movies.csv")
    genre = movies.set_index("movieId")["genres"].str.split("|").str[0]
    clicks = ratings[ratings["rating"] >= 4]
    return pd.DataFrame({
        "user_id": clicks["userId"].to_numpy(),
        "item_id": clicks["movieId"].to_numpy(),
        "time": clicks["timestamp"].to_numpy(),
        "cate_id": clicks["movieId"].map(genre).to_numpy(),
    })


# name -> (loader, events per user held out for validation and for test, description)
DATASETS = {
    "beauty": (lambda: _amazon("amazon-beauty"), 1, "Amazon Beauty 5-core"),
    "video_games": (lambda: _amazon("amazon-video-games"), 1, "Amazon Video Games 5-core"),
    "movielens": (_movielens, 5, "MovieLens latest-small (rating >= 4 = click)"),
    "electronics": (
        lambda: _amazon("amazon-electronics-sample", "amazon_electronics_sample.csv"),
        1, "the torch-rechub tutorial's 100-row Amazon Electronics sample (smoke test)",
    ),
}


@dataclass(frozen=True)
class Split:
    """One data set's rows: training, validation and test, each with a 0/1 ``label``."""

    name: str
    description: str
    clicks: int
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame

    @property
    def development(self) -> pd.DataFrame:
        """Training + validation rows: what a final model is fit on."""
        return pd.concat([self.train, self.valid])


def last_events_split(rows: pd.DataFrame, k: int) -> tuple[pd.DataFrame, ...]:
    """Per user: the last ``k`` distinct times -> test, the ``k`` before -> validation.

    As :func:`sklearn_din.datasets.leave_last_out_split` (which is ``k = 1``): a user keeps at
    least one event in training, and gives validation events only if some remain after that.
    """
    by_user = rows.groupby("user_id")["time"]
    rank = by_user.rank(method="dense", ascending=False)
    n_events = by_user.transform("nunique")
    test = (rank <= k) & (n_events > k)
    valid = (rank > k) & (rank <= 2 * k) & (n_events > 2 * k)
    return rows[~test & ~valid], rows[valid], rows[test]


def load_split(name: str, *, n_users: int | None = None, seed: int = 0) -> Split:
    """The rows of data set ``name`` by the protocol above (optionally a user subsample)."""
    loader, k, description = DATASETS[name]
    log = loader()
    if n_users is not None and n_users < log["user_id"].nunique():
        users = np.random.default_rng(seed).choice(
            np.sort(log["user_id"].unique()), n_users, replace=False
        )
        log = log[log["user_id"].isin(users)]
    rows = sample_negatives(log, random_state=seed)
    train, valid, test = last_events_split(rows, k)
    return Split(name, description, len(log), train, valid, test)


def xy(rows: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Features and labels of a split's rows."""
    return rows.drop(columns="label"), rows["label"].to_numpy()
