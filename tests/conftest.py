"""Shared fixtures: one small planted-signal CTR data set, built once per session."""

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch

from sklearn_din import SequenceFeatureTransformer
from sklearn_din.datasets import leave_last_out_split, make_interactions, sample_negatives

# Two cores, other processes busy: one intra-op thread is much faster for small steps.
torch.set_num_threads(1)

MAX_LEN = 20


@dataclass(frozen=True)
class CTRData:
    """Raw rows and the transformer's output for a leave-last-out split."""

    train_rows: pd.DataFrame  # raw rows with "label" (training part)
    test_rows: pd.DataFrame  # raw rows with "label" (each user's last event)
    transformer: SequenceFeatureTransformer
    X_train: pd.DataFrame
    y_train: np.ndarray
    X_test: pd.DataFrame
    y_test: np.ndarray


@pytest.fixture(scope="session")
def ctr_data() -> CTRData:
    """About 6,000 training and 600 test rows, histories of at most 20 behaviours."""
    log = make_interactions(n_users=300, n_items=200, n_categories=20, mean_events=12,
                            random_state=0)
    rows = sample_negatives(log, random_state=0)
    train, _, test = leave_last_out_split(rows)
    transformer = SequenceFeatureTransformer(max_len=MAX_LEN)
    X_train = transformer.fit_transform(train.drop(columns="label"), train["label"])
    X_test = transformer.transform(test.drop(columns="label"))
    return CTRData(
        train_rows=train,
        test_rows=test,
        transformer=transformer,
        X_train=X_train,
        y_train=train["label"].to_numpy(),
        X_test=X_test,
        y_test=test["label"].to_numpy(),
    )


@pytest.fixture(scope="session")
def tiny_log() -> tuple[pd.DataFrame, np.ndarray]:
    """Raw rows (X without the label, y) of 40 users: about 1,600 rows, for plumbing tests."""
    rows = sample_negatives(make_interactions(n_users=40, n_items=60, random_state=0),
                            random_state=0)
    return rows.drop(columns="label"), rows["label"].to_numpy()


@pytest.fixture(scope="session")
def small_frame() -> tuple[pd.DataFrame, np.ndarray]:
    """The transformer's output (max_len=6) and the labels of about 3,000 rows: quick fits."""
    rows = sample_negatives(make_interactions(n_users=80, n_items=60, random_state=2),
                            random_state=2)
    X = SequenceFeatureTransformer(max_len=6).fit_transform(rows.drop(columns="label"),
                                                            rows["label"])
    return X, rows["label"].to_numpy()
