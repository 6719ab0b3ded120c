"""sklearn_din.plotting: each function draws what it promises, headless (Agg)."""

import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from skorch.dataset import ValidSplit

from sklearn_din import (
    DINClassifier,
    SequenceFeatureTransformer,
    explain_attention,
    load_model,
    save_model,
)
from sklearn_din.datasets import make_interactions, sample_negatives

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402

from sklearn_din.plotting import (  # noqa: E402
    plot_attention,
    plot_calibration,
    plot_training_curves,
)

torch.set_num_threads(1)
MAX_LEN = 6


def _classifier(**params):
    params = {"embed_dim": 4, "attention_units": (8,), "hidden_units": (8,), "max_epochs": 1,
              "batch_size": 256, "verbose": 0, "random_state": 0, **params}
    return DINClassifier(**params)


@dataclass(frozen=True)
class Fitted:
    X: pd.DataFrame
    y: pd.Series
    model: Pipeline  # SequenceFeatureTransformer + DINClassifier, no validation split
    validated: Pipeline  # the same with train_split=ValidSplit(4)


@pytest.fixture(scope="module")
def fitted() -> Fitted:
    log = make_interactions(n_users=40, n_items=30, n_categories=5, mean_events=8, random_state=0)
    rows = sample_negatives(log, random_state=0)
    X, y = rows.drop(columns="label"), rows["label"]
    model = make_pipeline(SequenceFeatureTransformer(max_len=MAX_LEN), _classifier()).fit(X, y)
    validated = make_pipeline(
        SequenceFeatureTransformer(max_len=MAX_LEN),
        _classifier(train_split=ValidSplit(4), max_epochs=2),
    ).fit(X, y)
    return Fitted(X, y, model, validated)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _one_moment(fitted: Fitted) -> pd.DataFrame:
    """A click and its negative (same user, same time) with a full history."""
    features = fitted.model[0].transform(fitted.X)
    full = fitted.X[(features["hist_len"] == MAX_LEN).to_numpy() & (fitted.y == 1).to_numpy()]
    row = full.iloc[-1]
    same = (fitted.X["user_id"] == row["user_id"]) & (fitted.X["time"] == row["time"])
    return fitted.X[same]


def _labels(ticks) -> list[str]:
    return [t.get_text() for t in ticks]


# ----------------------------------------------------------------------------- attention
def test_attention_heatmap_columns_are_the_decoded_history(fitted):
    X = _one_moment(fitted)
    ax = plot_attention(fitted.model, X)
    assert isinstance(ax, Axes)
    assert len(ax.images) == 1
    assert len(ax.figure.axes) == 2  # the heatmap and its colorbar
    expected = explain_attention(fitted.model, X)
    first = expected[expected["row"] == X.index[0]].sort_values("position")
    assert _labels(ax.get_xticklabels()) == [str(v) for v in first["item_id"]]
    assert len(ax.get_yticklabels()) == len(X)
    assert _labels(ax.get_yticklabels())[0].startswith(f"{X['item_id'].iloc[0]}  p=")
    assert ax.get_title() == f"Attention over the history of user {X['user_id'].iloc[0]}"
    weights = ax.images[0].get_array()
    assert weights.shape == (len(X), MAX_LEN)
    np.testing.assert_allclose(weights[0], first["weight"].to_numpy())


def test_attention_aligns_rows_of_different_times_on_shared_behaviours(fitted):
    features = fitted.model[0].transform(fitted.X)
    user = fitted.X["user_id"].iloc[-1]
    X = fitted.X[fitted.X["user_id"] == user].tail(6)
    ax = plot_attention(fitted.model, X, annotate=False)
    weights = ax.images[0].get_array()
    # Each row has as many weights as real history positions; the rest is masked (grey).
    counts = (~np.ma.getmaskarray(weights)).sum(axis=1)
    np.testing.assert_array_equal(counts, features.loc[X.index, "hist_len"].to_numpy())
    # Columns are distinct behaviours, most recent first.
    explanation = explain_attention(fitted.model, X)
    assert weights.shape[1] == len(explanation.drop_duplicates(["time", "item_id", "cate_id"]))
    assert len(ax.texts) == 0


def test_attention_label_cols_and_annotations(fitted):
    X = _one_moment(fitted)
    ax = plot_attention(fitted.model, X, label_cols=("item_id", "cate_id"))
    explanation = explain_attention(fitted.model, X)
    first = explanation[explanation["row"] == X.index[0]].sort_values("position")
    assert _labels(ax.get_xticklabels()) == [
        f"{i} / {c}" for i, c in zip(first["item_id"], first["cate_id"], strict=True)
    ]
    assert "item_id / cate_id" in ax.get_xlabel()
    assert len(ax.texts) == len(X) * MAX_LEN  # small heatmap: every weight is written


def test_attention_draws_on_the_given_axes(fitted):
    _, given = plt.subplots()
    assert plot_attention(fitted.model, _one_moment(fitted), ax=given) is given


def test_attention_unwraps_a_frozen_transformer(fitted):
    X = _one_moment(fitted)
    frozen = Pipeline([("history", FrozenEstimator(fitted.model[0])),
                       ("din", fitted.model[-1])])
    labels = _labels(plot_attention(frozen, X).get_xticklabels())
    assert labels == _labels(plot_attention(fitted.model, X).get_xticklabels())


@pytest.mark.parametrize(("params", "label"), [
    # Regression: the flat parameter used to decide the label although module__* built
    # the network ("raw" for a softmax network).
    ({"attention_normalization": None, "module__attention_normalization": "softmax"},
     "attention weight (softmax)"),
    ({"module__attention_normalization": None}, "attention score (raw)"),
    ({"pooling": "attention", "module__pooling": "mean"}, "mean weight"),
])
def test_attention_colorbar_describes_the_network_as_built(fitted, params, label):
    model = make_pipeline(FrozenEstimator(fitted.model[0]), _classifier(**params))
    model.fit(fitted.X, fitted.y)
    expected = params.get("module__attention_normalization", "pooling")
    built = model[-1].module_
    assert expected == "pooling" or built.attention_normalization == expected
    ax = plot_attention(model, _one_moment(fitted))
    assert ax.figure.axes[-1].get_ylabel() == label


def test_attention_of_a_bare_classifier_shows_codes(fitted):
    X = _one_moment(fitted)
    features = fitted.model[0].transform(X)
    ax = plot_attention(fitted.model[-1], features)
    codes = features[[f"hist_item_id_{k}" for k in range(MAX_LEN)]].iloc[0]
    assert _labels(ax.get_xticklabels()) == [str(v) for v in codes]
    # Histories that differ cannot be aligned without behaviour times.
    user = fitted.X["user_id"].iloc[-1]
    several = fitted.model[0].transform(fitted.X[fitted.X["user_id"] == user].tail(6))
    assert several["hist_item_id_0"].nunique() > 1
    with pytest.raises(ValueError, match="different histories"):
        plot_attention(fitted.model[-1], several)


def test_attention_refuses_several_users_and_empty_histories(fitted):
    two_users = fitted.X.drop_duplicates("user_id").head(2)
    with pytest.raises(ValueError, match="of one user"):
        plot_attention(fitted.model, two_users)
    features = fitted.model[0].transform(fitted.X)
    first_event = fitted.X[(features["hist_len"] == 0).to_numpy()]
    user_rows = first_event[first_event["user_id"] == first_event["user_id"].iloc[0]]
    with pytest.raises(ValueError, match="none of the rows has a history"):
        plot_attention(fitted.model, user_rows)
    with pytest.raises(ValueError, match="label_cols"):
        plot_attention(fitted.model, _one_moment(fitted), label_cols=("time",))


# ----------------------------------------------------------------------- training curves
def test_training_curves_without_validation(fitted):
    ax = plot_training_curves(fitted.model)
    assert isinstance(ax, Axes)
    assert [line.get_label() for line in ax.get_lines()] == ["train_loss"]
    history = fitted.model[-1].history
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), history[:, "train_loss"])
    assert len(ax.figure.axes) == 1  # no valid_auc axis
    assert ax.get_title() == "Training curves"


def test_training_curves_with_validation(fitted):
    ax = plot_training_curves(fitted.validated[-1])  # the bare classifier works too
    assert [line.get_label() for line in ax.get_lines()] == ["train_loss", "valid_loss"]
    assert len(ax.get_lines()[0].get_xdata()) == 2  # two epochs
    twin = [other for other in ax.figure.axes if other is not ax]
    assert len(twin) == 1
    assert [line.get_label() for line in twin[0].get_lines()] == ["valid_auc"]
    assert len(ax.get_legend().get_texts()) == 3


def test_training_curves_mark_where_the_refit_begins(fitted):
    model = _classifier(max_epochs=2, early_stopping=True, refit=True).fit(
        fitted.model[0].transform(fitted.X), fitted.y)
    assert model.refit_epochs_ >= 1
    ax = plot_training_curves(model)
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["train_loss", "valid_loss", "refit on all rows"]
    first_refit = len(model.history) - model.refit_epochs_ + 1
    assert ax.get_lines()[-1].get_xdata()[0] == first_refit - 0.5
    assert len(ax.get_lines()[0].get_xdata()) == len(model.history)  # every epoch's loss


def test_training_curves_survive_save_and_load(fitted, tmp_path):
    path = tmp_path / "model.npz"
    save_model(fitted.model, path)
    ax = plot_training_curves(load_model(path))
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(),
                               fitted.model[-1].history[:, "train_loss"])


def test_training_curves_refuse_unfitted_and_foreign_models(fitted):
    with pytest.raises(ValueError, match="fit it first"):
        plot_training_curves(_classifier())
    logistic = make_pipeline(LogisticRegression()).fit([[0.0], [1.0]], [0, 1])
    with pytest.raises(TypeError, match="skorch net"):
        plot_training_curves(logistic)


# --------------------------------------------------------------------------- calibration
def test_calibration_draws_roc_and_reliability(fitted):
    axes = plot_calibration(fitted.model, fitted.X, fitted.y, groups=fitted.X["user_id"])
    assert axes.shape == (2,)
    assert all(isinstance(ax, Axes) for ax in axes)
    roc, reliability = axes
    assert len(roc.get_lines()) == 2  # the curve and the chance level
    assert roc.get_title().startswith("ROC curve (GAUC = ")
    assert len(reliability.get_lines()) == 2  # the curve and perfect calibration
    assert reliability.get_title() == "Reliability curve (10 uniform bins)"
    assert any("Brier" in t.get_text() for t in reliability.get_legend().get_texts())


def test_calibration_uses_given_axes_and_checks_labels(fitted):
    _, given = plt.subplots(2, 1)
    axes = plot_calibration(fitted.model, fitted.X, fitted.y, n_bins=5, strategy="quantile",
                            ax=given)
    assert axes[0] is given[0] and axes[1] is given[1]
    assert axes[0].get_title() == "ROC curve"
    with pytest.raises(ValueError, match="single class"):
        plot_calibration(fitted.model, fitted.X, np.ones(len(fitted.X), dtype=int))
    with pytest.raises(ValueError, match="not in the model's classes_"):
        plot_calibration(fitted.model, fitted.X, np.full(len(fitted.X), 7))
    with pytest.raises(ValueError, match="two Axes"):
        plot_calibration(fitted.model, fitted.X, fitted.y, ax=given[0])


# ------------------------------------------------------------------------ optional import
def test_missing_matplotlib_says_how_to_install(fitted, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r'pip install "sklearn-din\[plot\]"'):
        plot_training_curves(fitted.model)
