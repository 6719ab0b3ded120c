"""Plots of fitted DIN models: attention heatmaps, training curves, ROC and calibration.

matplotlib is an optional dependency (``pip install "sklearn-din[plot]"``): it is
imported inside each function, so ``import sklearn_din.plotting`` always works and
a missing matplotlib is reported only when a plot is asked for.

Every function draws on the ``ax`` it is given, or on a new figure (made with
``matplotlib.pyplot``, so notebooks display it) when ``ax`` is None, and returns
the Axes it drew on.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline
from skorch import NeuralNet

from ._classifier import DINClassifier
from ._explain import explain_attention
from ._model_parts import model_parts

__all__ = ["plot_attention", "plot_calibration", "plot_training_curves"]

_INSTALL_HINT = 'sklearn_din.plotting needs matplotlib: pip install "sklearn-din[plot]"'
# Above this many cells, plot_attention does not write each weight into its cell.
_MAX_ANNOTATED_CELLS = 200


def _pyplot() -> Any:
    """``matplotlib.pyplot``, or an ImportError that says how to install it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc
    return plt


def _series(history: Any, key: str) -> np.ndarray | None:
    """One value per epoch of ``key`` (NaN where an epoch lacks it); None if no epoch has it."""
    if not any(key in epoch for epoch in history):
        return None
    values = [epoch.get(key, np.nan) for epoch in history]
    return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)


def _join(values: object) -> str:
    return " / ".join(str(v) for v in values)


def plot_attention(
    model: Pipeline | DINClassifier,
    X: pd.DataFrame,
    *,
    label_cols: tuple[str, ...] | list[str] | None = None,
    annotate: bool | None = None,
    ax: Any = None,
) -> Any:
    """Heatmap of the attention each candidate row gives to one user's past behaviours.

    Rows of the heatmap are the rows of ``X`` (candidates for one user, e.g. a
    click and its sampled negatives, or several items you want to compare);
    columns are the user's past behaviours, most recent first, labelled with
    their decoded item ids. A cell is the weight (from :func:`explain_attention`)
    that the row's prediction gives to that behaviour; a grey cell is a
    behaviour that is not in that row's history (it happened at or after the
    row's time, or is older than ``max_len`` behaviours).

    Parameters
    ----------
    model : Pipeline ending in DINClassifier, or DINClassifier
        A fitted model. When the pipeline starts with a
        :class:`~sklearn_din.SequenceFeatureTransformer` (possibly inside a
        ``FrozenEstimator``), ids are decoded to their raw values and rows with
        different times are aligned on the behaviours they share. With a bare
        classifier the labels are integer codes, and all rows must have the
        same history.
    X : DataFrame
        Rows of one user, as ``model.predict_proba`` takes them. Keep it to a
        handful of rows: each is one line of the heatmap.
    label_cols : sequence of str, default=None
        History features shown in the tick labels, joined by " / "; None shows
        the item column only (e.g. ``("item_id", "cate_id")`` shows both).
    annotate : bool, default=None
        Write each weight into its cell; None does so when the heatmap has at
        most 200 cells.
    ax : matplotlib Axes, default=None
        Axes to draw on; None makes a new figure sized to the heatmap.

    Returns
    -------
    ax : matplotlib Axes
        Holds one image (``ax.images[0]``; its array is the weight matrix, masked
        where a behaviour is not in a row's history) and a colorbar in the same
        figure. The x tick labels are the behaviours' item ids, the y tick labels
        each candidate's item id and predicted probability.

    Raises
    ------
    ImportError
        matplotlib is not installed.
    ValueError
        ``X`` holds rows of more than one user, no row has a history, or (bare
        classifier) the rows' histories differ.

    See Also
    --------
    sklearn_din.explain_attention : The same weights as a tidy DataFrame.

    Notes
    -----
    With ``attention_normalization=None`` the weights are the
    paper's raw activation scores: they can be negative and need not sum to 1,
    so the colour scale is diverging and centred on 0. With ``"softmax"`` each
    row's weights sum to at most 1 (less with the attention sink) and the scale runs
    from 0.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn_din import DINClassifier, SequenceFeatureTransformer
    >>> from sklearn_din.datasets import make_interactions, sample_negatives
    >>> from sklearn_din.plotting import plot_attention
    >>> rows = sample_negatives(make_interactions(n_users=50, random_state=0), random_state=0)
    >>> X, y = rows.drop(columns="label"), rows["label"]
    >>> model = make_pipeline(SequenceFeatureTransformer(max_len=5),
    ...                       DINClassifier(max_epochs=1, verbose=0, random_state=0)).fit(X, y)
    >>> last = X[X["user_id"] == X["user_id"].iloc[-1]].tail(2)  # a click and its negative
    >>> ax = plot_attention(model, last)
    >>> ax.get_title()
    'Attention over the history of user 25'
    >>> len(ax.get_xticklabels())
    5
    """
    plt = _pyplot()
    from matplotlib import colormaps

    if not isinstance(X, pd.DataFrame):
        raise TypeError(f"plot_attention: X must be a DataFrame, got {type(X).__name__}.")
    if len(X) == 0:
        raise ValueError("plot_attention: X has no rows.")
    parts = model_parts(model)
    model, transformer = parts.model, parts.transformer
    classifier = parts.require_classifier("plot_attention")
    X = X.reset_index(drop=True)

    user_col = transformer.user_col if transformer is not None else getattr(
        classifier, "user_col", None)
    user = None
    if user_col is not None and user_col in X.columns:
        users = X[user_col].unique()
        if len(users) > 1:
            raise ValueError(
                f"plot_attention: X holds rows of {len(users)} users ({users[:5].tolist()}); "
                "pass the rows of one user (e.g. X[X['user_id'] == u])."
            )
        user = users[0]

    explanation = explain_attention(model, X)
    if explanation.empty:
        raise ValueError("plot_attention: none of the rows has a history; nothing to plot.")
    features = list(classifier.layout_.history_features)
    item = transformer.item_col if transformer is not None else features[0]
    label_cols = [item] if label_cols is None else list(label_cols)
    unknown = [c for c in label_cols if c not in features]
    if unknown:
        raise ValueError(f"plot_attention: label_cols {unknown} are not history features "
                         f"{features}.")

    # One column per distinct behaviour. With times (a transformer), a behaviour is
    # (time, features) and rows of different times line up on the ones they share;
    # without, it is (position, features), which needs identical histories.
    by_time = "time" in explanation.columns
    key = ["time" if by_time else "position", *features]
    explanation = explanation.assign(
        repeat=explanation.groupby(["row", *key], sort=False, dropna=False).cumcount()
    )
    key.append("repeat")
    behaviours = explanation[key].drop_duplicates(ignore_index=True)
    if by_time:
        behaviours = behaviours.sort_values("time", ascending=False, kind="stable")
    else:
        behaviours = behaviours.sort_values("position", kind="stable")
        if behaviours["position"].duplicated().any():
            raise ValueError(
                "plot_attention: the rows have different histories and, without a "
                "SequenceFeatureTransformer in the pipeline, their behaviours cannot be "
                "aligned; pass rows that share one history (one user at one moment)."
            )
    behaviours = behaviours.reset_index(drop=True)
    behaviours["column"] = np.arange(len(behaviours))
    cells = explanation.merge(behaviours, on=key, how="left", validate="many_to_one")

    weights = np.full((len(X), len(behaviours)), np.nan)
    weights[cells["row"].to_numpy(dtype=int), cells["column"].to_numpy()] = cells["weight"]
    matrix = np.ma.masked_invalid(weights)

    scores = np.asarray(model.predict_proba(X))[:, 1]
    x_labels = [_join(values) for values in behaviours[label_cols].itertuples(index=False)]
    row_cols = [c for c in label_cols if c in X.columns]
    y_labels = [
        (_join(X.loc[i, row_cols]) + "  " if row_cols else f"row {i}  ") + f"p={scores[i]:.2f}"
        for i in range(len(X))
    ]

    real = weights[np.isfinite(weights)]
    settings = classifier._network_settings()  # module__* values as the network was built
    softmax = settings["attention_normalization"] == "softmax"
    if real.min() >= 0:
        cmap, vmin, vmax = "Blues", 0.0, max(float(real.max()), 1e-12)
    else:
        bound = max(float(np.abs(real).max()), 1e-12)
        cmap, vmin, vmax = "RdBu_r", -bound, bound
    cmap = colormaps[cmap].with_extremes(bad="0.9")

    if ax is None:
        width = min(16.0, max(6.0, 0.45 * len(behaviours) + 3.5))
        height = min(12.0, max(2.8, 0.45 * len(X) + 2.2))
        _, ax = plt.subplots(figsize=(width, height), layout="constrained")
    image = ax.imshow(matrix, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto",
                      interpolation="nearest")
    ax.set_xticks(np.arange(len(behaviours)), labels=x_labels, rotation=90)
    ax.set_yticks(np.arange(len(X)), labels=y_labels)
    ax.tick_params(length=0)
    label_name = " / ".join(label_cols)
    ax.set_xlabel(f"past behaviours ({label_name}), most recent first")
    ax.set_ylabel(f"candidate ({label_name})")
    ax.set_title("Attention over the history" + ("" if user is None else f" of user {user}"))
    pooling = settings["pooling"]
    # Sum and mean pooling have no scores to normalise: their weights are what they are.
    bar_label = (f"{pooling} weight" if pooling != "attention" else
                 "attention weight (softmax)" if softmax else "attention score (raw)")
    ax.figure.colorbar(image, ax=ax, label=bar_label)

    if annotate is None:
        annotate = weights.size <= _MAX_ANNOTATED_CELLS
    if annotate:
        for (i, j), value in np.ndenumerate(weights):
            if np.isfinite(value):
                shade = image.norm(value)
                dark = shade > 0.65 if vmin == 0 else abs(shade - 0.5) > 0.3
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if dark else "black")
    return ax


def plot_training_curves(model: Pipeline | DINClassifier, *, ax: Any = None) -> Any:
    """Loss (and validation AUC) per epoch from a fitted classifier's skorch history.

    Draws ``train_loss`` and, when the classifier was fit with a ``train_split``,
    ``valid_loss`` on ``ax``, and ``valid_auc`` on a second y axis (``ax.twinx()``)
    on the right.

    Parameters
    ----------
    model : DINClassifier, or Pipeline ending in one
        A fitted model; a ``GridSearchCV`` (its ``best_estimator_``) or a
        ``FrozenEstimator`` is unwrapped too. Any skorch net with a history works.
    ax : matplotlib Axes, default=None
        Axes for the losses; None makes a new figure.

    Returns
    -------
    ax : matplotlib Axes
        The Axes of the losses: one line per loss, labelled ``"train_loss"`` and
        ``"valid_loss"``. The ``"valid_auc"`` line lives on a twin Axes of the
        same figure (``ax.figure.axes``).

    Raises
    ------
    ImportError
        matplotlib is not installed.
    TypeError
        The final estimator has no skorch ``history_``.
    ValueError
        The history has no epoch (the model was never fitted).

    Notes
    -----
    With ``embedding_l2 > 0`` the training loss includes the regularisation
    penalty and the validation loss does not, so the two are not on the same
    footing. ``partial_fit`` and ``warm_start`` append their epochs to the same
    history; a model loaded with :func:`~sklearn_din.load_model` keeps it. After
    early stopping, the epochs of the refit on every row (``refit=True``) follow,
    after a dotted line labelled ``"refit on all rows"``: their training loss starts
    again from the initial weights.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skorch.dataset import ValidSplit
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn_din import DINClassifier, SequenceFeatureTransformer
    >>> from sklearn_din.datasets import make_interactions, sample_negatives
    >>> from sklearn_din.plotting import plot_training_curves
    >>> rows = sample_negatives(make_interactions(n_users=50, random_state=0), random_state=0)
    >>> X, y = rows.drop(columns="label"), rows["label"]
    >>> model = make_pipeline(
    ...     SequenceFeatureTransformer(max_len=5),
    ...     DINClassifier(max_epochs=2, train_split=ValidSplit(5), verbose=0, random_state=0),
    ... ).fit(X, y)
    >>> ax = plot_training_curves(model)
    >>> ax.get_title()
    'Training curves'
    >>> [line.get_label() for line in ax.get_lines()]
    ['train_loss', 'valid_loss']
    """
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    net = model_parts(model).final
    if not isinstance(net, NeuralNet):
        raise TypeError(f"plot_training_curves needs a skorch net such as DINClassifier, got "
                        f"{type(net).__name__}.")
    history = getattr(net, "history_", None)
    if history is None or len(history) == 0:
        raise ValueError("plot_training_curves: the model has no training history; fit it first.")
    epochs = np.asarray([epoch.get("epoch", i + 1) for i, epoch in enumerate(history)])

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    handles = []
    for key, color in (("train_loss", "C0"), ("valid_loss", "C1")):
        values = _series(history, key)
        if values is not None:
            handles += ax.plot(epochs, values, marker="o", color=color, label=key)
    refit = [e for e, epoch in zip(epochs, history, strict=True) if epoch.get("refit")]
    if refit:  # the refit's epochs start again from the initial weights, on every row
        handles.append(ax.axvline(refit[0] - 0.5, color="0.5", linestyle=":",
                                  label="refit on all rows"))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (binary cross-entropy)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    auc = _series(history, "valid_auc")
    if auc is not None:
        twin = ax.twinx()
        handles += twin.plot(epochs, auc, marker="s", linestyle="--", color="C2",
                             label="valid_auc")
        twin.set_ylabel("validation ROC AUC")
    ax.legend(handles=handles, loc="best")
    ax.set_title("Training curves")
    return ax


def plot_calibration(
    model: object,
    X: pd.DataFrame,
    y: object,
    *,
    groups: object = None,
    n_bins: int = 10,
    strategy: str = "uniform",
    ax: Any = None,
) -> np.ndarray:
    """ROC curve and reliability (calibration) curve of a fitted model, side by side.

    The left panel is the ROC curve with its AUC (and the title gives the GAUC
    when ``groups`` is passed); the right panel bins the predicted probabilities
    and plots each bin's observed frequency of the positive class against its
    mean prediction, with the Brier score in the legend.

    Parameters
    ----------
    model : fitted binary classifier
        Anything with ``predict_proba`` and ``classes_``: a Pipeline ending in
        DINClassifier, a DINClassifier, a ``CalibratedClassifierCV``, a search...
    X : DataFrame
        Rows to score, as ``model.predict_proba`` takes them.
    y : array-like of shape (n_rows,)
        True labels (the values of ``model.classes_``); both classes must occur.
    groups : array-like of shape (n_rows,), default=None
        Users of the rows: when given, the ROC panel's title reports
        :func:`~sklearn_din.metrics.gauc_score`.
    n_bins : int, default=10
        Number of probability bins of the reliability curve.
    strategy : {"uniform", "quantile"}, default="uniform"
        Equal-width bins, or bins holding equal numbers of rows.
    ax : array-like of two matplotlib Axes, default=None
        Axes for the ROC and the reliability curve; None makes a new figure.

    Returns
    -------
    axes : ndarray of shape (2,) of matplotlib Axes
        ``axes[0]`` holds the ROC curve (and the chance line), ``axes[1]`` the
        reliability curve (and the diagonal of perfect calibration).

    Raises
    ------
    ImportError
        matplotlib is not installed.
    ValueError
        ``y`` holds a single class or labels the model does not know, or ``ax``
        is not two Axes.

    Notes
    -----
    With sampled negatives (the DIN paper's protocol,
    :func:`~sklearn_din.datasets.sample_negatives`) the probabilities are
    calibrated to the sampled rows, not to a real click-through rate: a good
    reliability curve then says that the model matches the training
    distribution. With negatives kept at a rate ``w`` (0 < w <= 1) of real
    impressions, ``p / (p + (1 - p) / w)`` maps a prediction back to the real
    scale.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn_din import DINClassifier, SequenceFeatureTransformer
    >>> from sklearn_din.datasets import make_interactions, sample_negatives
    >>> from sklearn_din.plotting import plot_calibration
    >>> rows = sample_negatives(make_interactions(n_users=50, random_state=0), random_state=0)
    >>> X, y = rows.drop(columns="label"), rows["label"]
    >>> model = make_pipeline(SequenceFeatureTransformer(max_len=5),
    ...                       DINClassifier(max_epochs=1, verbose=0, random_state=0)).fit(X, y)
    >>> axes = plot_calibration(model, X, y, groups=X["user_id"])
    >>> [ax.get_title().split(" (")[0] for ax in axes]
    ['ROC curve', 'Reliability curve']
    """
    plt = _pyplot()
    from sklearn.calibration import CalibrationDisplay
    from sklearn.metrics import RocCurveDisplay, brier_score_loss

    from .metrics import gauc_score

    classes = np.asarray(model.classes_)
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != len(X):
        raise ValueError(f"plot_calibration: y must be 1-d with one label per row of X "
                         f"({len(X)}), got shape {y.shape}.")
    strange = np.setdiff1d(np.unique(y), classes)
    if len(strange):
        raise ValueError(f"plot_calibration: y has labels {strange[:5].tolist()} that are not in "
                         f"the model's classes_ {classes.tolist()}.")
    positive = (y == classes[1]).astype(int)
    if positive.min() == positive.max():
        raise ValueError("plot_calibration: y holds a single class; ROC and calibration need both.")
    proba = np.asarray(model.predict_proba(X))[:, 1]

    if ax is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 4.6), layout="constrained")
    else:
        axes = np.asarray(ax, dtype=object).ravel()
        if len(axes) != 2:
            raise ValueError(f"plot_calibration: ax must be two Axes (ROC, reliability), got "
                             f"{len(axes)}.")
    name = type(model_parts(model).final).__name__

    RocCurveDisplay.from_predictions(positive, proba, name=name, ax=axes[0],
                                     plot_chance_level=True)
    title = "ROC curve"
    if groups is not None:
        title += f" (GAUC = {gauc_score(positive, proba, groups=groups):.3f})"
    axes[0].set_title(title)

    brier = brier_score_loss(positive, proba)
    CalibrationDisplay.from_predictions(positive, proba, n_bins=n_bins, strategy=strategy,
                                        name=f"{name} (Brier = {brier:.3f})", ax=axes[1])
    axes[1].set_title(f"Reliability curve ({n_bins} {strategy} bins)")
    for axis in axes:
        axis.grid(alpha=0.3)
    return np.asarray(axes, dtype=object)
