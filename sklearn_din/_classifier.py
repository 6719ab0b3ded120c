"""DINClassifier: a skorch-backed Deep Interest Network with a scikit-learn API."""

from __future__ import annotations

import contextlib
import copy
import inspect
import re
import threading
from collections.abc import Iterator
from numbers import Integral, Real

import numpy as np
import pandas as pd
import torch
from scipy.sparse import issparse
from scipy.special import expit
from sklearn.base import BaseEstimator
from sklearn.metrics import roc_auc_score
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import (
    Interval,
    Options,
    StrOptions,
    validate_parameter_constraints,
)
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    check_consistent_length,
    check_is_fitted,
    column_or_1d,
    validate_data,
)
from skorch import NeuralNetBinaryClassifier
from skorch.callbacks import EpochScoring, EpochTimer, PassthroughScoring
from skorch.dataset import Dataset
from skorch.utils import TeeGenerator, is_dataset, to_tensor
from torch.utils.data import DataLoader, Subset

from . import _kernels
from ._batching import WEIGHT_KEY, TensorBatchIterator, batch_count, dataset_arrays
from ._callbacks import (
    BatchProgress,
    EarlyStoppingOnValidation,
    EpochTable,
    StopOnNonFiniteLoss,
    WeightAveraging,
)
from ._distributed import DataParallelMixin, check_process_group
from ._layout import InputLayout, InputState, check_numeric_scale
from ._messages import warn
from ._network import (
    ACTIVATIONS,
    POOLINGS,
    SCORER_NAMES,
    DeepInterestNetwork,
    Dice,
    scorer_class,
)
from ._splitting import latest_rows_split
from ._stream_dataset import StreamDataset
from ._validation import (
    check_dataframe,
    check_sample_weight,
    has_str_names,
    label_kind,
    to_pandas,
)

# Rows converted to tensors at a time when predicting: bounds memory to tens of MB.
PREDICT_CHUNK_ROWS = 1 << 16
# early_stopping="auto" switches early stopping on from this many training rows (as
# scikit-learn's HistGradientBoostingClassifier does).
EARLY_STOPPING_AUTO_ROWS = 10_000
# n_iter_no_change="auto": a patience of about this many optimizer steps, and never fewer
# epochs than AUTO_PATIENCE_MIN_EPOCHS. An epoch of a small log is few steps, and its
# validation curve can plateau for several epochs before it climbs again (MovieLens
# latest-small: 80 steps an epoch, patience 5); two epochs of the Amazon 5-core logs
# (200-270 steps each) are already about this many (accuracy_ablations.py, `patience5`).
AUTO_PATIENCE_STEPS = 400
AUTO_PATIENCE_MIN_EPOCHS = 2
# weight_averaging="auto": each epoch's share in the average is 1 - 0.5 ** (steps /
# AUTO_AVERAGING_HALF_LIFE_STEPS), clipped to AUTO_AVERAGING_SHARES: the average's half-life
# is this many optimizer steps, and between about 2 and 4.3 epochs. 0.3 was chosen on the
# Amazon 5-core logs (180-230 steps an epoch: the upper clip); MovieLens latest-small's
# epochs are 74 steps, so 0.16 there (accuracy_ablations.py, `average_auto`). The lower clip
# is about that: on smaller logs a longer average lags the raw weights by more epochs than
# a fit runs, and early stopping comes late or never.
AUTO_AVERAGING_HALF_LIFE_STEPS = 300
AUTO_AVERAGING_SHARES = (0.15, 0.3)
# The flat parameters that build the network: a ``module__<name>`` value overrides one.
_NETWORK_PARAMS = ("embed_dim", "attention_units", "hidden_units", "activation",
                   "attention_normalization", "pooling", "attention_scorer", "dropout",
                   "batch_norm", "pooled_product", "attention_length_scale",
                   "attention_embedding_gradient", "behaviour_dropout", "attention_sink",
                   "attention_position")
# Held by a fit with a random_state while it draws from torch's process-wide generator.
_SEEDED_FITS = threading.RLock()


class NoHistoryWarning(UserWarning):
    """X has no history columns: the model is an embedding + MLP model without attention.

    Examples
    --------
    >>> import pandas as pd
    >>> import pytest
    >>> from sklearn_din import DINClassifier, NoHistoryWarning
    >>> X = pd.DataFrame({"user_id": [2, 3, 2, 3], "item_id": [2, 2, 3, 3]})
    >>> with pytest.warns(NoHistoryWarning):
    ...     _ = DINClassifier(max_epochs=1, verbose=0, categorical_cols=("item_id",)).fit(
    ...         X, [0, 1, 1, 0])
    """


def _valid_auc(net: DINClassifier, X: object, y: object) -> float:
    """Validation ROC AUC for the epoch log (weighted when the rows carry sample
    weights); NaN when the split holds one class."""
    y = np.asarray(y)
    if len(np.unique(y)) < 2:
        return float("nan")
    arrays = dataset_arrays(X)
    weight = None if arrays is None else arrays.column(WEIGHT_KEY)
    return roc_auc_score(y, net.predict_proba(X)[:, 1], sample_weight=weight)


def _check_units(name: str, units: object, allow_empty: bool) -> None:
    if not isinstance(units, tuple | list) or not all(
        isinstance(u, Integral) and not isinstance(u, bool) and u > 0 for u in units
    ):
        raise ValueError(f"{name} must be a tuple of positive ints, got {units!r}.")
    if not allow_empty and not units:
        raise ValueError(f"{name} must have at least one layer, got {units!r}.")


class DINClassifier(DataParallelMixin, NeuralNetBinaryClassifier):
    """Deep Interest Network (Zhou et al., KDD 2018) binary classifier.

    A scikit-learn classifier built on skorch's ``NeuralNetBinaryClassifier``:
    every skorch feature (callbacks, ``history``, ``optimizer__*`` and
    ``module__*`` parameters, ``warm_start``, ``save_params``) works. It reads the
    integer DataFrame made by :class:`SequenceFeatureTransformer` (or any frame
    that follows the same column convention, see the notes) and learns click
    probabilities with DIN's local activation unit over each row's history.

    Parameters
    ----------
    embed_dim : int, default=16
        Width of every embedding.
    attention_units : tuple of int, default=(80, 40)
        Hidden layers of the local activation unit (the paper's sizes).
    hidden_units : tuple of int, default=(200, 80)
        Hidden layers of the output MLP (the paper's sizes).
    activation : {"dice", "prelu", "relu"}, default="dice"
        Activation of both MLPs; "dice" is the paper's data-adaptive activation.
    attention_normalization : {"softmax", None, "mean"}, default="softmax"
        "softmax" normalises the attention scores over each row's real history
        positions (the official DIN code); None uses the raw scores as weights (the
        paper's text); "mean" divides the raw scores by the history's length.
    pooling : {"attention", "sum", "mean"}, default="attention"
        How the history is pooled; "sum" and "mean" give the paper's base model.
    attention_scorer : {"local_activation", "dot"} or class, default="local_activation"
        What scores each history position against the candidate with
        ``pooling="attention"``: the paper's local activation unit (an MLP, sized by
        ``attention_units``), a scaled dot product of the item embeddings (no weights
        of its own), or a subclass of :class:`AttentionScorer` (a class, not an
        instance, so that ``clone`` and grid search build a fresh one). ``save_model``
        saves the built-in ones, by name or as their classes, and refuses other classes.
    dropout : float, default=0.0
        Dropout after each hidden layer of the output MLP.
    batch_norm : bool, default=False
        Batch normalisation in the output MLP.
    pooled_product : bool, default=True
        Also feed the output MLP the element-wise product of the candidate's
        embedding and the pooled history (as the DIN of the DIEN authors' code does),
        for attention and the pooling base models alike.
    attention_length_scale : bool, default=True
        Multiply the attention scores of a row by a learnt factor for its history's
        length (one per bucket of 1, 2-3, 4-7, 8-15, 16-31 and 32+ behaviours,
        each starting at 1), so that short histories can be pooled flatter, nearer
        their mean, and long ones sharper. False: the paper's attention. Only with
        ``pooling="attention"``.
    attention_embedding_gradient : float, default=0.3
        Share of the attention scorer's gradient passed back into the embeddings it
        reads. The embeddings then learn mostly from what the output MLP reads (the
        candidate and the pooled history), as the pooling base models' do, and the
        scorer learns to weigh them; 1 is plain backpropagation (the paper's). Only
        training depends on it: predictions of a fitted model do not.
    behaviour_dropout : float, default=0.4
        In training, each real behaviour of each row's history is left out with this
        probability, drawn anew for every batch (the rest keep their order and
        recency; the row's ``hist_len`` shrinks). A regulariser of the pooled history,
        for attention and the pooling base models alike: the model cannot hang on one
        behaviour, and sees shorter histories of the same users. Predictions read the
        whole history. 0 trains on whole histories (the paper's way).
    attention_sink : bool or "auto", default="auto"
        Give the softmax a learnt null behaviour whose value is zero, so a row's
        attention weights may sum to less than 1 where its history as a whole
        supports the candidate little (sum pooling keeps that signal, plain softmax
        drops it). "auto" adds it wherever the attention scores get softmax and
        nothing otherwise (``attention_normalization=None`` or ``"mean"``, sum or mean
        pooling); True insists on it (a ValueError without softmax); False is the
        plain softmax. On validation rows it added 0.28 and 0.30 AUC points to DIN on
        two Amazon logs (3 seeds) and -0.14 on MovieLens (5 seeds)
        (``benchmarks/results/accuracy_ablations.md``, ``attention_sink``).
    attention_position : bool, default=True
        Let the attention's scorer read each behaviour's place in the history (1st,
        2nd-3rd, 4th-7th, ..., 64th+ most recent: a learnt embedding per bucket, added
        to the behaviour's time-gap embedding). Only the scores see it, never the pooled
        history, so the pooling base models are unchanged. On validation rows it added
        0.17 AUC points to DIN on MovieLens (5 seeds, every one above: +0.05 to +0.28),
        whose users rate in bursts that share one time-gap bucket, and -0.03 and +0.01
        on two Amazon logs (3 seeds) (``benchmarks/results/accuracy_ablations.md``,
        ``position_scorer``). False: the paper's scorer input. Only with
        ``pooling="attention"``.
    embedding_l2 : float, default=0.5
        Strength of the paper's mini-batch aware regularisation (Eqs. 4-6; the
        paper used 0.01 on a far larger log): an L2 penalty on only the embedding
        rows each batch uses, each scaled by 1 / (the id's frequency in the training
        data). Added to the
        training loss (so to ``train_loss``). Plain weight decay stays available as
        ``optimizer__weight_decay``.
    sparse_embeddings : bool, default=False
        Update the embedding tables lazily: they get sparse gradients (only the rows
        a batch looks up) and are trained by ``torch.optim.SparseAdam`` at ``lr``,
        the other weights by ``optimizer``. Adam moves every row of every table at
        every step (its moments keep rows moving after their last use), so its step
        costs time in proportion to the vocabularies; the lazy update costs time in
        proportion to the batch. Worth it for vocabularies of millions of ids; a
        different optimizer, so a model trains differently from the default. Not
        supported with ``distributed=True``.
    user_col : str or None, default="user_id"
        Column of encoded user ids: whose row it is. Early stopping's validation
        split uses it to hold out users' latest rows; ``user_embedding`` decides
        whether the network sees it. None: X has no user column.
    user_embedding : bool, default=False
        Give the user an embedding of its own. Off by default: histories already
        describe the user, and a per-user vector learnt from a few rows each overfits
        (on the Amazon logs of ``benchmarks/``, it cost DIN and pooling about half an
        AUC point).
    categorical_cols : tuple of str, default=()
        Other integer columns to embed. Every column that is not an id,
        history, ``hist_len`` or categorical column is a numeric feature.
    standardize_numeric : bool, default=True
        Centre each numeric feature on its training mean and divide it by its
        standard deviation inside the network (``dense_mean_``, ``dense_scale_``;
        saved with the model and part of exported graphs), so a price, a year or a
        count needs no scaler in front. False feeds them to the MLP as they are (the
        behaviour before 0.2): fit then refuses values beyond 1e6 and warns above 100.
    criterion : torch criterion class, default=torch.nn.BCEWithLogitsLoss
        Mean-reduced loss on the logits.
    optimizer : torch optimizer class, default=torch.optim.Adam
    lr : float, default=2e-3
        Adam's learning rate. With ``weight_averaging`` the average over epochs
        smooths the noise of the larger steps (2e-3 beat 1e-3 by 0.6 validation AUC
        points on each of three logs).
    max_epochs : int, default=30
        Upper bound on the epochs; early stopping usually ends training sooner.
    batch_size : int, default=1024
    early_stopping : "auto" or bool, default="auto"
        Stop training when the validation AUC has not improved for
        ``n_iter_no_change`` epochs, and keep the weights of the best epoch. "auto"
        turns it on when ``fit`` gets at least 10,000 rows. The validation rows are
        ``train_split``'s, or, with ``train_split=None``, an internal split that
        respects time: each of a random set of users gives its latest rows (those
        with its longest ``hist_len``; every training row of that user is strictly
        earlier), about ``validation_fraction`` of the rows; users whose latest rows
        exceed 5% of them are drawn last, so many users are validated. Applies to ``fit``, not
        to ``partial_fit`` or :func:`fit_stream`. ``early_stopping=False,
        max_epochs=N`` trains exactly N epochs on every row (the paper's way).
    validation_fraction : float, default=0.1
        Share of the rows held out for early stopping (internal split only).
    n_iter_no_change : "auto" or int, default="auto"
        Epochs without a better validation AUC before training stops. "auto" waits
        about 400 optimizer steps, and at least 2 epochs: ``max(2, round(400 /
        steps per epoch))``, with the steps per epoch those of the rows trained on
        (2 on a log of 200,000 training rows at ``batch_size=1024``, 5 on one of
        80,000). ``n_iter_no_change_`` holds the value a fit used.
    weight_averaging : float, "auto" or None, default="auto"
        With early stopping on: validation scores, early stopping keeps and the fitted
        model predicts with a moving average over epochs of the weights, in which each
        new epoch's end weights have this share (training goes on from the raw
        weights). The average is smooth where an epoch's own weights are noisy, late in
        training on small logs. "auto" sets the share from the steps of an epoch, as
        ``n_iter_no_change="auto"`` sets the patience: ``1 - 0.5 ** (steps / 300)``
        clipped to [0.15, 0.3], an average with a half-life of 300 optimizer steps, and
        of 2 to 4.3 epochs (0.3 on a log of 160,000 training rows or more at
        ``batch_size=1024``, 0.17 on one of 80,000, 0.15 below 72,000).
        ``weight_averaging_`` holds the share a fit used. None (or 1.0) keeps each
        epoch's own weights, as without early stopping. Holds two more copies of the
        weights while training.
    refit : bool, default=False
        With early stopping on, once it has chosen the epoch to keep: train the network
        again from its initial weights on every row ``fit`` got (the validation rows
        included) for that many epochs, with the same weight average, and keep that
        network. The validation rows are each validated user's latest rows, the
        nearest to what the model will score; the refit trains on them too. About
        doubles the time of a fit; lifted DIN and the pooled models alike (0.2-0.5
        validation AUC points on three logs). Not the default: it did not widen DIN's
        margin over pooling, and costs a second fit.
        ``refit_epochs_`` holds the epochs of the refit. Not done when the fit
        continues a network (``warm_start=True``).
    train_split : callable or None, default=None
        skorch's internal validation split (e.g. ``skorch.dataset.ValidSplit(0.1)``);
        None trains on all rows, or on the early-stopping split's training rows.
    callbacks : list or None, default=None
        Extra skorch callbacks (e.g. ``EarlyStopping`` with a ``train_split``).
    device : str or torch.device, default="cpu"
        "cpu", "cuda", "cuda:1", "mps" or a ``torch.device``.
    verbose : int, default=1
        1 prints the epoch table (rank 0 only in a distributed fit); 2 also shows
        each epoch's progress batch by batch (a bar in a terminal, a plain line at
        every tenth of the batches otherwise, on standard error); 0 is silent.
    distributed : bool, default=False
        Train data-parallel with PyTorch's ``DistributedDataParallel`` in every
        process of a ``torch.distributed`` job (launched with ``torchrun``; call
        ``torch.distributed.init_process_group`` before fit). Every process calls
        fit with the same rows and takes its shard of each batch of
        ``batch_size`` rows; the result matches a one-process fit up to Dice's and
        BatchNorm's per-shard batch statistics and the behaviours that
        ``behaviour_dropout`` leaves out (each process draws them for its shard).
        An explicit switch rather than auto-detection: a script may use a process
        group for other work, and silently averaging gradients with other
        processes' fits would be wrong.
        Prediction is local to each process.
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, shuffling and dropout: the same seed gives the
        same model on the same machine.
    threshold : float, default=0.5
        ``predict`` returns ``classes_[1]`` where its probability exceeds this.
    warm_start : bool, default=False
        Continue training from the current weights at each ``fit``.
    iterator_train, iterator_valid : class, default=torch.utils.data.DataLoader
        skorch's loaders, used only for datasets other than the classifier's own
        inputs (its own are served whole-batch, without a DataLoader).
    dataset : class, default=skorch.dataset.Dataset
        skorch's dataset class.
    predict_nonlinearity : callable, None or "auto", default="auto"
        skorch's; ``predict_proba`` here always applies the sigmoid to the logits.
    compile : bool, default=False
        Run the network through ``torch.compile`` (pays for fits of many epochs).
    use_caching : bool or "auto", default="auto"
        skorch's caching of predictions in scoring callbacks.
    torch_load_kwargs : dict or None, default=None
        skorch's arguments to ``torch.load`` in ``load_params``.
    **kwargs
        skorch's prefixed parameters, e.g. ``module__embed_dim`` (wins over the
        flat parameter), ``optimizer__weight_decay``, ``callbacks__print_log``.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        The two labels; ``predict_proba[:, 1]`` is the probability of ``classes_[1]``.
    layout_ : InputLayout
        Which columns are history blocks, candidate, sparse and dense features.
    id_frequencies_ : list of ndarray
        Occurrences of each id in the training data, per embedding table (for
        ``embedding_l2``).
    dense_mean_, dense_scale_ : ndarray of shape (n_numeric,)
        Each numeric feature's mean and standard deviation in the training data (1
        for a constant feature), in ``layout_.dense_cols`` order: what
        ``standardize_numeric`` subtracts and divides by.
    history_vocab_sizes_ : tuple of int
        Embedding table size of each history feature, inferred from the data.
    sparse_vocab_sizes_ : tuple of int
        Embedding table size of each other id column.
    n_features_in_ : int
        Number of columns seen in fit.
    feature_names_in_ : ndarray of str
        Columns seen in fit (only when X is a DataFrame).
    module_ : DeepInterestNetwork
        The fitted network.
    n_iter_no_change_ : int or None
        The patience early stopping used in the last ``fit`` (``n_iter_no_change``,
        "auto" resolved); None when it did not stop early.
    weight_averaging_ : float or None
        The share of each epoch in the average of the weights in the last ``fit``
        (``weight_averaging``, "auto" resolved); None when it kept each epoch's own
        weights (no early stopping, or ``weight_averaging`` None or 1).
    refit_epochs_ : int or None
        The epochs of the last ``fit``'s refit on every row (see ``refit``): those
        of the epoch early stopping chose; None when there was no refit.
    history_ : skorch.History
        Per-epoch log (train loss; validation loss and AUC with a train_split). After
        a refit, its epochs follow early stopping's, marked ``"refit": True``.

    See Also
    --------
    SequenceFeatureTransformer : Builds the input columns from an interaction log.

    Notes
    -----
    Columns are read by name: ``hist_<f>_<k>`` (k = 0 most recent) is feature
    ``f`` of the history, ``<f>`` the candidate's value of it (sharing ``f``'s
    embedding table), ``hist_len`` the number of real positions, ``user_col`` and
    ``categorical_cols`` other ids; all other columns are numeric. Ids are
    non-negative integers, 0 = padding, 1 = unknown; ids larger than any seen in
    fit are treated as unknown. Without column names (a numpy array) there is no
    history and every column is numeric: a :class:`NoHistoryWarning` says so.

    The defaults were chosen on validation rows of three real logs (Amazon Beauty,
    Amazon Video Games, MovieLens; ``benchmarks/results/accuracy_ablations.md``):
    softmax attention with a sink, scaled by history length, whose scorer reads each
    behaviour's position and passes 0.3 of its gradient into the embeddings, 16-wide
    embeddings, mini-batch aware regularisation at 0.5, behaviour dropout at 0.4, no
    user embedding and early stopping, with the transformer's recency feature. The
    paper's settings are one parameter each away:
    ``attention_normalization=None``, ``attention_length_scale=False``,
    ``attention_position=False``, ``attention_embedding_gradient=1.0``,
    ``behaviour_dropout=0``,
    ``pooled_product=False``, ``embed_dim=8``, ``embedding_l2=0.01``,
    ``early_stopping=False, max_epochs=N`` (and ``SequenceFeatureTransformer(
    recency=False)``).

    Examples
    --------
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn_din import DINClassifier, SequenceFeatureTransformer
    >>> from sklearn_din.datasets import make_interactions, sample_negatives
    >>> rows = sample_negatives(make_interactions(n_users=200, random_state=0), random_state=0)
    >>> X, y = rows.drop(columns="label"), rows["label"]
    >>> model = make_pipeline(SequenceFeatureTransformer(),
    ...                       DINClassifier(max_epochs=2, verbose=0, random_state=0))
    >>> model.fit(X, y).predict_proba(X).shape
    (8..., 2)
    """

    _parameter_constraints: dict = {
        "embed_dim": [Interval(Integral, 1, None, closed="left")],
        "attention_units": [tuple, list],
        "hidden_units": [tuple, list],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "attention_normalization": [None, StrOptions({"softmax", "mean"})],
        "pooling": [StrOptions(set(POOLINGS))],
        "attention_scorer": [StrOptions(set(SCORER_NAMES)), type],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "batch_norm": ["boolean"],
        "pooled_product": ["boolean"],
        "attention_length_scale": ["boolean"],
        "attention_embedding_gradient": [Interval(Real, 0, 1, closed="both")],
        "behaviour_dropout": [Interval(Real, 0, 1, closed="left")],
        "attention_sink": ["boolean", StrOptions({"auto"})],
        "attention_position": ["boolean"],
        "embedding_l2": [Interval(Real, 0, None, closed="left")],
        "sparse_embeddings": ["boolean"],
        "user_col": [str, None],
        "user_embedding": ["boolean"],
        "categorical_cols": [tuple, list],
        "standardize_numeric": ["boolean"],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "max_epochs": [Interval(Integral, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left"), Options(Integral, {-1})],
        "early_stopping": [StrOptions({"auto"}), "boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "weight_averaging": [Interval(Real, 0, 1, closed="right"), StrOptions({"auto"}),
                             None],
        "refit": ["boolean"],
        # skorch's own parameters that a value of the wrong type would silently misuse.
        "threshold": [Interval(Real, 0, 1, closed="both")],
        "warm_start": ["boolean"],
        "compile": ["boolean"],
        "use_caching": ["boolean", StrOptions({"auto"})],
        "predict_nonlinearity": [None, callable, StrOptions({"auto"})],
        "torch_load_kwargs": [None, dict],
        "device": [str, torch.device, None],
        "verbose": ["verbose"],
        "distributed": ["boolean"],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        *,
        module: type[torch.nn.Module] = DeepInterestNetwork,
        embed_dim: int = 16,
        attention_units: tuple[int, ...] = (80, 40),
        hidden_units: tuple[int, ...] = (200, 80),
        activation: str = "dice",
        attention_normalization: str | None = "softmax",
        pooling: str = "attention",
        attention_scorer: str | type = "local_activation",
        dropout: float = 0.0,
        batch_norm: bool = False,
        pooled_product: bool = True,
        attention_length_scale: bool = True,
        attention_embedding_gradient: float = 0.3,
        behaviour_dropout: float = 0.4,
        attention_sink: bool | str = "auto",
        attention_position: bool = True,
        embedding_l2: float = 0.5,
        sparse_embeddings: bool = False,
        user_col: str | None = "user_id",
        user_embedding: bool = False,
        categorical_cols: tuple[str, ...] = (),
        standardize_numeric: bool = True,
        criterion: type[torch.nn.Module] = torch.nn.BCEWithLogitsLoss,
        optimizer: type[torch.optim.Optimizer] = torch.optim.Adam,
        lr: float = 2e-3,
        max_epochs: int = 30,
        batch_size: int = 1024,
        early_stopping: str | bool = "auto",
        validation_fraction: float = 0.1,
        n_iter_no_change: str | int = "auto",
        weight_averaging: float | str | None = "auto",
        refit: bool = False,
        train_split: object = None,
        callbacks: list | None = None,
        device: str | torch.device = "cpu",
        verbose: int = 1,
        distributed: bool = False,
        random_state: int | np.random.RandomState | None = None,
        # skorch's own parameters, listed with skorch's defaults so that scikit-learn's
        # repr (text and HTML) can tell which ones a user changed.
        threshold: float = 0.5,
        warm_start: bool = False,
        iterator_train: type = DataLoader,
        iterator_valid: type = DataLoader,
        dataset: type = Dataset,
        predict_nonlinearity: object = "auto",
        compile: bool = False,
        use_caching: bool | str = "auto",
        torch_load_kwargs: dict | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(
            module,
            criterion=criterion,
            optimizer=optimizer,
            lr=lr,
            max_epochs=max_epochs,
            batch_size=batch_size,
            train_split=train_split,
            callbacks=callbacks,
            device=device,
            verbose=verbose,
            threshold=threshold,
            warm_start=warm_start,
            iterator_train=iterator_train,
            iterator_valid=iterator_valid,
            dataset=dataset,
            predict_nonlinearity=predict_nonlinearity,
            compile=compile,
            use_caching=use_caching,
            torch_load_kwargs=torch_load_kwargs,
            **kwargs,
        )
        self.embed_dim = embed_dim
        self.attention_units = attention_units
        self.hidden_units = hidden_units
        self.activation = activation
        self.attention_normalization = attention_normalization
        self.pooling = pooling
        self.attention_scorer = attention_scorer
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.pooled_product = pooled_product
        self.attention_length_scale = attention_length_scale
        self.attention_embedding_gradient = attention_embedding_gradient
        self.behaviour_dropout = behaviour_dropout
        self.attention_sink = attention_sink
        self.attention_position = attention_position
        self.embedding_l2 = embedding_l2
        self.sparse_embeddings = sparse_embeddings
        self.user_col = user_col
        self.user_embedding = user_embedding
        self.categorical_cols = categorical_cols
        self.standardize_numeric = standardize_numeric
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.weight_averaging = weight_averaging
        self.refit = refit
        self.distributed = distributed
        self.random_state = random_state

    # scikit-learn's repr (only the parameters that differ from their defaults, text and
    # HTML, alone and inside a Pipeline), not skorch's "<class ...>[initialized](...)".
    __repr__ = BaseEstimator.__repr__

    def _get_params_html(self, deep: bool = True, doc_link: str = "") -> object:
        # scikit-learn's HTML repr (a private hook; no public one exists) lists the deep
        # parameters of a pipeline step, which for a skorch net include every parameter of
        # every default callback (callbacks__print_log__sink, ...): dozens of rows marked
        # as changed that nobody set. The net's own parameters are what a reader needs.
        return super()._get_params_html(deep=False, doc_link=doc_link)

    # ---------------------------------------------------------------- skorch hooks
    def _get_param_names(self) -> list[str]:
        # skorch lists every attribute not ending in "_" as a parameter, its own private
        # bookkeeping (_params_to_validate, ...) included; clone() must not see those.
        # A private override because there is no public hook: get_params, set_params,
        # clone and the repr all read the names from here.
        return [k for k in super()._get_param_names() if not k.startswith("_")]

    # skorch's way to replace its default callbacks (its own subclasses override it):
    # ``callbacks=`` only adds to them.
    @property
    def _default_callbacks(self) -> list:
        return [
            ("epoch_timer", EpochTimer()),
            ("train_loss", PassthroughScoring(name="train_loss", on_train=True)),
            ("valid_loss", PassthroughScoring(name="valid_loss")),
            ("valid_auc", EpochScoring(_valid_auc, name="valid_auc", lower_is_better=False)),
            ("stop_on_non_finite_loss", StopOnNonFiniteLoss()),
            ("progress", BatchProgress()),
            ("print_log", EpochTable()),
            # After print_log, so that the epoch that stops training is printed too.
            ("early_stopping", EarlyStoppingOnValidation()),
            # After early stopping: it snapshots the average this callback swapped in.
            ("weight_averaging", WeightAveraging()),
        ]

    def get_split_datasets(self, X: object, y: object = None, **fit_params: object) -> tuple:
        """skorch's split, early stopping's time-respecting one (see ``early_stopping``), or
        none in a refit (see ``refit``)."""
        split = self.__dict__.get("early_stopping_rows_")
        if self.__dict__.get("refitting_"):  # refit: every row, whatever train_split is
            return self.get_dataset(X, y), None
        if split is None:
            dataset_train, dataset_valid = super().get_split_datasets(X, y, **fit_params)
        else:
            dataset = self.get_dataset(X, y)
            dataset_train, dataset_valid = Subset(dataset, split[0]), Subset(dataset, split[1])
        if self.__dict__.get("do_early_stopping_") and dataset_valid is not None:
            self.n_iter_no_change_ = self._patience(len(dataset_train))
            self.weight_averaging_ = self._averaging_share(len(dataset_train))
        return dataset_train, dataset_valid

    def _averaging_share(self, n_train_rows: int) -> float | None:
        """Each epoch's share in the average of the weights: ``weight_averaging``, "auto"
        resolved for a fit on ``n_train_rows`` rows, None for no average (None or 1)."""
        if self.weight_averaging is None or self.weight_averaging == 1:
            return None
        if self.weight_averaging != "auto":
            return float(self.weight_averaging)
        steps = self._steps_per_epoch(n_train_rows)
        low, high = AUTO_AVERAGING_SHARES
        return min(high, max(low, 1 - 0.5 ** (steps / AUTO_AVERAGING_HALF_LIFE_STEPS)))

    def _steps_per_epoch(self, n_train_rows: int) -> int:
        """Optimizer steps in an epoch of ``n_train_rows`` rows: the training iterator's own
        count (get_iterator), at least 1; what the "auto" settings are measured in."""
        return max(1, batch_count(n_train_rows, self.batch_size, shuffle=True))

    def _patience(self, n_train_rows: int) -> int:
        """Early stopping's patience in epochs: ``n_iter_no_change``, "auto" resolved for a
        fit on ``n_train_rows`` rows (see ``n_iter_no_change``)."""
        if self.n_iter_no_change != "auto":
            return int(self.n_iter_no_change)
        steps = self._steps_per_epoch(n_train_rows)
        return max(AUTO_PATIENCE_MIN_EPOCHS, round(AUTO_PATIENCE_STEPS / steps))

    def _early_stopping_rows(
        self, frame: pd.DataFrame, inputs: dict, target: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Training and validation rows of early stopping's own split (see ``early_stopping``)."""
        user_col = self.layout_.user_col
        users = None if user_col is None else frame[user_col].to_numpy()
        train, valid = latest_rows_split(users, inputs["history_length"],
                                         self.validation_fraction,
                                         check_random_state(self.random_state))
        for name, rows in (("training", train), ("validation", valid)):
            if len(np.unique(target[rows])) < 2:
                raise ValueError(
                    f"early_stopping: the {name} rows of the internal split hold one class; "
                    "pass early_stopping=False or a larger validation_fraction."
                )
        return train, valid

    def initialize_module(self) -> DINClassifier:
        """Build the network from the fitted layout; explicit ``module__*`` values win."""
        n_shared = len(self.layout_.history_features)
        kwargs = {
            "history_vocab_sizes": self.history_vocab_sizes_[:n_shared],
            "context_vocab_sizes": self.history_vocab_sizes_[n_shared:],
            "sparse_vocab_sizes": self.sparse_vocab_sizes_,
            "n_dense": len(self.layout_.dense_cols),
            **self._network_settings(),
            "id_frequencies": self.id_frequencies_,
        }
        if self.standardize_numeric and self.layout_.dense_cols:
            kwargs["dense_mean"], kwargs["dense_scale"] = self.dense_mean_, self.dense_scale_
        if self.sparse_embeddings:
            kwargs["sparse_gradients"] = True
        explicit = self.get_params_for("module")
        self._check_inferred_network_args(explicit)
        kwargs.update(explicit)
        self.module_ = self.initialized_instance(self.module, kwargs)
        if self._on_cpu() and any(isinstance(m, Dice) for m in self.module_.modules()):
            # Dice's kernels load (or build, or warn) here, not inside the first epoch.
            _kernels.prepare()
        return self

    def _network_settings(self) -> dict[str, object]:
        """The network's settings (``embed_dim``, ``attention_normalization``, ...): each
        flat parameter, or the ``module__*`` value that overrides it.

        The one place that resolves the two spellings: the network is built from it,
        and plots and explanations read it, so that they describe the network as built.
        """
        explicit = self.get_params_for("module")
        settings = {name: getattr(self, name) for name in _NETWORK_PARAMS}
        settings["attention_units"] = tuple(settings["attention_units"])
        settings["hidden_units"] = tuple(settings["hidden_units"])
        settings.update((k, v) for k, v in explicit.items() if k in _NETWORK_PARAMS)
        return settings

    def _check_inferred_network_args(self, explicit: dict) -> None:
        """Explicit ``module__*`` values of what fit infers must fit the data."""
        who = type(self).__name__
        for name, inferred in (("history_vocab_sizes", self.history_vocab_sizes_),
                               ("sparse_vocab_sizes", self.sparse_vocab_sizes_)):
            if name not in explicit:
                continue
            sizes = explicit[name]
            if (not isinstance(sizes, tuple | list) or len(sizes) != len(inferred)
                    or not all(isinstance(n, Integral) and not isinstance(n, bool)
                               and n >= m for n, m in zip(sizes, inferred, strict=True))):
                raise ValueError(
                    f"{who}: module__{name}={sizes!r} must hold {len(inferred)} table sizes "
                    f"at least as large as the data's {inferred}."
                )
        n_dense = explicit.get("n_dense", len(self.layout_.dense_cols))
        if n_dense != len(self.layout_.dense_cols):
            raise ValueError(f"{who}: module__n_dense={n_dense!r} but X has "
                             f"{len(self.layout_.dense_cols)} numeric column(s).")

    def initialize_optimizer(self, *args: object, **kwargs: object) -> DINClassifier:
        """``optimizer`` for all weights; with ``sparse_embeddings`` a second optimizer,
        ``optimizer_embeddings_`` (SparseAdam), takes the embedding tables."""
        if not self.sparse_embeddings:
            return super().initialize_optimizer(*args, **kwargs)
        tables = {id(t.weight) for t in self.module_.embedding_tables()}
        named = list(self.get_all_learnable_params())
        dense = [(name, p) for name, p in named if id(p) not in tables]
        opt_args, opt_kwargs = self.get_params_for_optimizer("optimizer", dense)
        self.optimizer_ = self.optimizer(*opt_args, **opt_kwargs)
        # Registered by skorch as an optimizer (set inside its optimizer init context):
        # its train step zeroes and steps every registered optimizer.
        self.optimizer_embeddings_ = torch.optim.SparseAdam(
            [p for _, p in named if id(p) in tables], lr=self.lr
        )
        return self

    def train_step(self, batch: object, **fit_params: object) -> dict:
        """skorch's training step; with ``sparse_embeddings``, one forward and backward
        pass whose gradients both optimizers step on.

        skorch hands its closure (zero_grad, forward, backward) to every optimizer's
        ``step``, so with two optimizers each batch would be computed twice and the
        embeddings stepped on gradients taken after the dense weights had moved. skorch
        documents overriding ``train_step`` for this.
        """
        if not self.sparse_embeddings:
            return super().train_step(batch, **fit_params)
        optimizers = (self.optimizer_, self.optimizer_embeddings_)
        for optimizer in optimizers:
            optimizer.zero_grad()
        step = self.train_step_single(batch, **fit_params)
        self.notify("on_grad_computed", named_parameters=TeeGenerator(
            self.get_all_learnable_params()), batch=batch, training=True)
        for optimizer in optimizers:
            optimizer.step()
        return step

    def infer(self, x: object, **fit_params: object) -> torch.Tensor:
        """The forward pass; a batch's sample weights are for the loss, not the network."""
        if isinstance(x, dict) and WEIGHT_KEY in x:
            x = {k: v for k, v in x.items() if k != WEIGHT_KEY}
        return super().infer(x, **fit_params)

    def get_loss(
        self, y_pred: torch.Tensor, y_true: torch.Tensor, X: object = None, training: bool = False
    ) -> torch.Tensor:
        """Mean binary cross-entropy, plus the mini-batch aware penalty in training.

        With sample weights (``fit(..., sample_weight=w)``, carried in the batch as
        ``X["sample_weight"]``) the mean is weighted, ``sum(w * loss) / sum(w)``: a
        row of weight 2 counts as that row twice.
        """
        weight = X.get(WEIGHT_KEY) if isinstance(X, dict) else None
        parallel = self.__dict__.get("data_parallel_") if training else None
        if weight is None:
            loss = super().get_loss(y_pred, y_true, X=X, training=training)
            if parallel is not None:
                loss = loss * parallel.shard_weight(len(y_true))
        else:
            # The criterion's own per-row losses (a shallow copy: the fitted criterion is
            # shared with other calls), reduced with the weights.
            per_row = copy.copy(self.criterion_)
            per_row.reduction = "none"
            weight = to_tensor(weight, device=self.device).to(y_pred.dtype)
            total = (per_row(y_pred, to_tensor(y_true, device=self.device)) * weight).sum()
            if parallel is None:
                norm = weight.sum()
            else:  # DDP averages the processes' losses: divide by the global batch's weight
                iterator = parallel.iterator
                norm = iterator.inputs[WEIGHT_KEY][iterator.global_index].sum().to(total)
                norm = norm / parallel.world_size
            loss = total / norm.clamp_min(torch.finfo(total.dtype).tiny)
        if training and self.embedding_l2 > 0 and isinstance(X, dict):
            # A distributed fit penalises the ids of the whole global batch in every process:
            # the same term everywhere, so DDP's gradient average keeps it as it is.
            used = X if parallel is None else parallel.iterator.global_batch()
            ids = {k: used[k] for k in ("candidate", "history", "history_length", "sparse")}
            loss = loss + self.embedding_l2 * self.module_.embedding_penalty(**ids)
        return loss

    def get_iterator(self, dataset: object, training: bool = False) -> object:
        """Whole-batch iteration over pre-built tensors (skorch's loader for other datasets)."""
        if isinstance(dataset, StreamDataset):  # fit_stream: one epoch = one pass over chunks
            generator = None
            if training:
                generator = torch.Generator().manual_seed(int(torch.randint(2**62, (1,))))
            return dataset.batches(batch_size=self.batch_size, shuffle=training,
                                   generator=generator, device=self.device or "cpu")
        arrays = dataset_arrays(dataset)
        parallel = self.__dict__.get("data_parallel_") if training else None
        if arrays is None:
            if parallel is not None:
                raise TypeError("distributed=True trains only on DINClassifier's own inputs, "
                                f"not on a {type(dataset).__name__}.")
            return super().get_iterator(dataset, training=training)
        generator = None
        if training:
            seed = int(torch.randint(2**62, (1,)))
            if parallel is not None:
                return parallel.training_batches(arrays, seed=seed, batch_size=self.batch_size)
            generator = torch.Generator().manual_seed(seed)
        return TensorBatchIterator(
            arrays.inputs,
            arrays.target,
            batch_size=self.batch_size,
            shuffle=training,
            generator=generator,
            device=self.device or "cpu",
            rows=arrays.rows,
        )

    # ---------------------------------------------------------------- checks
    def _check_params(self) -> None:
        self._check_param_values()
        _check_device(self.device)
        if self.distributed:
            check_process_group(self.device)

    def _check_param_values(self) -> None:
        """The checks that do not depend on this machine (its devices, its process group)."""
        validate_parameter_constraints(
            self._parameter_constraints, self.get_params(deep=False), type(self).__name__
        )
        _check_units("attention_units", self.attention_units, allow_empty=False)
        _check_units("hidden_units", self.hidden_units, allow_empty=True)
        scorer_class(self.attention_scorer)  # a class must be a torch module
        self._check_prefixed_params()
        bad = [c for c in self.categorical_cols if not isinstance(c, str)]
        if bad:
            raise ValueError(f"categorical_cols must be column names, got {bad}.")
        if self.distributed and self.sparse_embeddings:
            raise ValueError(
                "sparse_embeddings=True is not supported with distributed=True: "
                "DistributedDataParallel averages dense gradients."
            )

    def _check_prefixed_params(self) -> None:
        """``module__*`` values get the checks of the flat parameters they override."""
        who = type(self).__name__
        explicit = self.get_params_for("module")
        overrides = {f"module__{k}": v for k, v in explicit.items() if k in _NETWORK_PARAMS}
        validate_parameter_constraints(
            {f"module__{k}": self._parameter_constraints[k] for k in _NETWORK_PARAMS},
            overrides, who,
        )
        if "module__attention_units" in overrides:
            _check_units("module__attention_units", overrides["module__attention_units"],
                         allow_empty=False)
        if "module__hidden_units" in overrides:
            _check_units("module__hidden_units", overrides["module__hidden_units"],
                         allow_empty=True)
        if isinstance(self.module, type):
            signature = inspect.signature(self.module)
            takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD
                            for p in signature.parameters.values())
            unknown = sorted(set(explicit) - set(signature.parameters))
            if unknown and not takes_any:
                raise ValueError(
                    f"{who}: {[f'module__{k}' for k in unknown]} are not parameters of "
                    f"{self.module.__name__}; it takes {list(signature.parameters)}."
                )
        if "optimizer__lr" in self.get_params(deep=False):  # overrides lr
            validate_parameter_constraints({"optimizer__lr": self._parameter_constraints["lr"]},
                                           {"optimizer__lr": self.optimizer__lr}, who)
        unknown_callbacks = sorted(
            name for name in {k.split("__")[1] for k in self.get_params(deep=False)
                              if k.startswith("callbacks__") and k.count("__") >= 2}
            if name not in self._callback_names()
        )
        if unknown_callbacks:
            raise ValueError(f"{who}: callbacks__{unknown_callbacks[0]}__* names no callback; "
                             f"the callbacks are {sorted(self._callback_names())}.")
        if "sparse_gradients" in explicit and explicit["sparse_gradients"] != bool(
                self.sparse_embeddings):
            raise ValueError(f"{who}: set sparse_embeddings=True (not module__sparse_gradients) "
                             "to train the embeddings with sparse gradients.")
        ignored = sorted(k for k in self.get_params(deep=False)
                         if k.startswith(("iterator_train__", "iterator_valid__")))
        if ignored:
            raise ValueError(
                f"{who}: {ignored} would have no effect: DINClassifier batches its own tensors "
                "(set batch_size; training batches are shuffled)."
            )

    def _callback_names(self) -> set[str]:
        """Names the callbacks will have: the defaults', the given ones (as skorch names them)."""
        names = {name for name, _ in self._default_callbacks}
        given = self.callbacks if isinstance(self.callbacks, list | tuple) else []
        for callback in given:
            if isinstance(callback, tuple):
                names.add(callback[0])
            else:  # unnamed: skorch uses the class name (with _1, _2, ... for repeats)
                cls = callback if isinstance(callback, type) else type(callback)
                names.update({cls.__name__, *(f"{cls.__name__}_{i}" for i in range(1, 10))})
        return names

    def _frame(self, X: object, method: str, reset: bool) -> tuple[pd.DataFrame, bool]:
        """X as a DataFrame, and whether it came with column names.

        Also records (``reset=True``) or checks ``n_features_in_`` and
        ``feature_names_in_`` the scikit-learn way.
        """
        who = f"{type(self).__name__}.{method}"
        X = to_pandas(X)  # polars, pyarrow, ... (through narwhals); anything else as it is
        named_fit = reset or hasattr(self, "feature_names_in_")
        if (isinstance(X, pd.DataFrame) and has_str_names(X.columns)
                and named_fit):
            check_dataframe(X, who=who)
            if not reset and self._has_fit_columns(X):
                return X, True  # all that validate_data checks, without its cost per call
            validate_data(self, X, skip_check_array=True, reset=reset)
            if not reset and hasattr(self, "feature_names_in_"):
                missing = [c for c in self.feature_names_in_ if c not in X.columns]
                if missing:
                    raise ValueError(f"{who}: X lacks column(s) {missing[:10]} seen in fit.")
            return X, True
        # Without names where fit had them (or the reverse), columns are read by position,
        # as scikit-learn does (validate_data warns about the names).
        array = validate_data(self, X, reset=reset, dtype="numeric", accept_sparse=False)
        if not reset and hasattr(self, "feature_names_in_"):
            return pd.DataFrame(array, columns=list(self.feature_names_in_)), True
        return pd.DataFrame(array, columns=[f"x{i}" for i in range(array.shape[1])]), False

    def _has_fit_columns(self, X: pd.DataFrame) -> bool:
        """Whether X has fit's columns, by name and in order: scikit-learn's feature-name
        check then has nothing to say, and it reads the names through narwhals, a third
        of a small batch's input handling."""
        fit_names = getattr(self, "feature_names_in_", None)
        return (fit_names is not None and X.shape[1] == len(fit_names)
                and bool((np.asarray(X.columns, dtype=object) == fit_names).all()))

    def _network_inputs(self, X: object, method: str) -> dict[str, np.ndarray]:
        """Validate prediction-time X against the fitted layout and build the inputs."""
        frame, _ = self._frame(X, method, reset=False)
        ids = self.layout_.check(frame, f"{type(self).__name__}.{method}")
        return self._input_state().to_arrays(frame, ids)

    def _input_state(self) -> InputState:
        """The fitted input state (layout, table sizes, id frequencies)."""
        return InputState(self.layout_, self.history_vocab_sizes_, self.sparse_vocab_sizes_,
                          self.id_frequencies_)

    def _set_input_state(self, state: InputState, classes: np.ndarray) -> None:
        """Record what a fresh fit (``fit``, ``partial_fit``'s first call, ``fit_stream``'s
        scan) learnt from its inputs: the one place that sets these fitted attributes."""
        self.classes_ = classes
        self.layout_ = state.layout
        self.history_vocab_sizes_ = tuple(state.history_vocab_sizes)
        self.sparse_vocab_sizes_ = tuple(state.sparse_vocab_sizes)
        self.id_frequencies_ = list(state.id_frequencies)
        self.dense_mean_, self.dense_scale_ = state.dense_standardization()

    def _layout_for(self, frame: pd.DataFrame, named: bool) -> InputLayout:
        if not named:
            warn(
                "X has no column names: DINClassifier cannot find ids or histories and "
                "fits an MLP over all columns as numeric features. Pass the DataFrame "
                "made by SequenceFeatureTransformer.",
                NoHistoryWarning,
            )
            return InputLayout((), 0, False, (), tuple(frame.columns))
        user_col = self.user_col
        if user_col is not None and user_col not in frame.columns:
            warn(
                f"user_col {user_col!r} is not a column of X: fitting without users "
                "(no user embedding, early stopping on random rows). Pass user_col=None to "
                "silence this warning.",
                UserWarning,
            )
            user_col = None
        layout = InputLayout.from_columns(
            frame.columns, user_col=user_col, categorical_cols=tuple(self.categorical_cols),
            embed_user=self.user_embedding,
        )
        if not layout.history_features:
            warn(
                "X has no hist_<feature>_<k> columns: the model has no behaviour "
                "history and no attention (an embedding + MLP model).",
                NoHistoryWarning,
            )
        ids_as_numbers = [c for c in layout.dense_cols if c.endswith("_id")]
        if ids_as_numbers:
            warn(
                f"column(s) {ids_as_numbers} look like ids but are fed to the MLP as numbers; "
                "name them in categorical_cols (or user_col) to embed them.",
                UserWarning,
            )
        return layout

    def _training_inputs(
        self, X: object, y: object, method: str, sample_weight: object = None
    ) -> tuple[pd.DataFrame, dict[str, np.ndarray], np.ndarray]:
        """Validate X, y and the weights; on a fresh fit learn the layout, vocabularies
        and classes. Returns X as a frame, the inputs and the target; the weights travel
        with the inputs, as ``inputs["sample_weight"]``."""
        who = f"{type(self).__name__}.{method}"
        fresh = not (self.initialized_ and (method == "partial_fit" or self.warm_start))
        if y is None:
            raise ValueError(f"{who} requires y to be passed, but the target y is None.")
        frame, named = self._frame(X, method, reset=fresh)
        y = column_or_1d(y, warn=True)
        check_consistent_length(frame, y)
        weight = None
        if sample_weight is not None:
            weight = check_sample_weight(sample_weight, len(frame), who=who)
            self._check_weighted_criterion(who)
        if pd.isna(y).any():
            raise ValueError(f"{who}: y has missing values (NaN/None).")
        labels = _labels(y, who)
        if fresh:
            if len(labels) > 2:
                raise ValueError(
                    "Only binary classification is supported. "
                    f"y has {len(labels)} classes: {labels[:10].tolist()}."
                )
            if len(labels) < 2:
                raise ValueError(
                    f"{who}: y contains only one class ({labels.tolist()}); two are needed."
                )
            layout = self._layout_for(frame, named)
            ids = layout.check(frame, who)
            state, inputs = InputState.learn(layout, frame, who, weight, ids=ids)
            if not self.standardize_numeric:
                check_numeric_scale(np.abs(inputs["dense"]).max(axis=0, initial=0.0),
                                    layout.dense_cols, who)
            self._set_input_state(state, labels)
        else:
            if label_kind(labels) != label_kind(self.classes_):
                raise ValueError(f"{who}: y holds {label_kind(labels)} but the first fit's "
                                 f"labels were {label_kind(self.classes_)} "
                                 f"(classes_ = {self.classes_.tolist()}).")
            unknown = np.setdiff1d(labels, self.classes_)
            if len(unknown):
                raise ValueError(f"{who}: y has labels {unknown.tolist()} not seen in the first "
                                 f"fit (classes_ = {self.classes_.tolist()}).")
            ids = self.layout_.check(frame, who)
            inputs = self._input_state().to_arrays(frame, ids)
        if weight is not None:
            inputs[WEIGHT_KEY] = weight
        return frame, inputs, (y == self.classes_[1]).astype(np.float32)

    def _check_weighted_criterion(self, who: str) -> None:
        """Sample weights need per-row losses: a torch loss with a ``reduction``."""
        if not (isinstance(self.criterion, type) and issubclass(self.criterion, torch.nn.Module)
                and "reduction" in inspect.signature(self.criterion).parameters):
            raise TypeError(
                f"{who}: sample_weight needs a criterion that can return per-row losses "
                f"(a torch loss with a 'reduction' argument); got {self.criterion!r}."
            )

    @contextlib.contextmanager
    def _seeded(self) -> Iterator[None]:
        """Seed torch inside the block, leaving the caller's RNG state untouched."""
        if self.random_state is None:
            yield
            return
        seed = int(check_random_state(self.random_state).randint(2**31 - 1))
        # Continue, not repeat, the random stream on warm starts and partial fits.
        seed += 1_000_003 * (len(self.history_) if self.initialized_ else 0)
        devices = [torch.device(self.device).index or 0] if _is_cuda(self.device) else []
        # torch's random generator is one per process: two seeded fits in threads (joblib's
        # threading backend, a Dask worker's threads) would draw from each other's stream.
        # Seeded fits therefore take turns; unseeded ones promise no reproducibility and
        # run concurrently.
        with _SEEDED_FITS, torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield

    # ---------------------------------------------------------------- public API
    @property
    def classes_(self) -> np.ndarray:
        if "classes_" not in self.__dict__:
            raise AttributeError("DINClassifier has no classes_ before fit.")
        return self.__dict__["classes_"]

    @classes_.setter
    def classes_(self, value: np.ndarray) -> None:
        self.__dict__["classes_"] = value

    def fit(
        self, X: pd.DataFrame, y: object, sample_weight: object = None, **fit_params: object
    ) -> DINClassifier:
        """Fit the network from scratch (or continue, with ``warm_start=True``).

        Parameters
        ----------
        X : DataFrame
            Integer id/history columns (e.g. from SequenceFeatureTransformer) and
            numeric columns; a pandas DataFrame or any frame narwhals reads (polars,
            pyarrow).
        y : array-like of shape (n_rows,)
            Two-valued labels of any type (0/1, bools, strings).
        sample_weight : array-like of shape (n_rows,) or None, default=None
            Non-negative weight of each row in the training loss (and in the
            validation loss and AUC of a ``train_split``): a row of weight 2 counts
            as that row twice, e.g. ``1 / rate`` for negatives kept at ``rate`` by
            negative down-sampling. The id frequencies of ``embedding_l2`` are
            weighted too. Routed by scikit-learn's metadata routing
            (``set_fit_request(sample_weight=True)``).
        **fit_params : dict
            Passed to skorch's fit loop.

        Returns
        -------
        self : DINClassifier
        """
        self._check_params()
        if not self.warm_start:
            self.initialized_ = False  # a fresh fit: layout, vocabularies and weights anew
        return self._train(X, y, "fit", sample_weight, fit_params)

    def partial_fit(
        self, X: pd.DataFrame, y: object, classes: object = None, sample_weight: object = None,
        **fit_params: object,
    ) -> DINClassifier:
        """Train ``max_epochs`` more epochs without re-initialising the network.

        The first call learns the layout, vocabularies and classes as :meth:`fit`
        does; later calls must use the same columns and labels.

        Parameters
        ----------
        X : DataFrame
        y : array-like of shape (n_rows,)
        classes : ignored
            Present for scikit-learn's incremental-learning signature.
        sample_weight : array-like of shape (n_rows,) or None, default=None
            Weight of each row of this call, as in :meth:`fit`.
        **fit_params : dict
            Passed to skorch's fit loop.

        Returns
        -------
        self : DINClassifier
        """
        self._check_params()
        return self._train(X, y, "partial_fit", sample_weight, fit_params)

    def _train(self, X: object, y: object, method: str, sample_weight: object,
               fit_params: dict) -> DINClassifier:
        """Validate, initialise if needed, and run ``max_epochs`` epochs of skorch's loop."""
        frame, inputs, target = self._training_inputs(X, y, method, sample_weight)
        self.do_early_stopping_ = method == "fit" and (
            len(target) >= EARLY_STOPPING_AUTO_ROWS
            if self.early_stopping == "auto" else bool(self.early_stopping)
        )
        # get_split_datasets sets both when stopping early
        self.n_iter_no_change_ = self.weight_averaging_ = self.refit_epochs_ = None
        fresh = not self.initialized_
        if self.do_early_stopping_ and self.train_split is None:
            # Read by get_split_datasets; the rows are the fit's alone, not the model's.
            self.early_stopping_rows_ = self._early_stopping_rows(frame, inputs, target)
        try:
            self._run_epochs(inputs, target, **fit_params)
        finally:
            self.__dict__.pop("early_stopping_rows_", None)
        if self.do_early_stopping_ and self.refit and fresh:
            self._refit_on_all_rows(inputs, target, fit_params)
        return self

    def _refit_on_all_rows(self, inputs: dict, target: np.ndarray, fit_params: dict) -> None:
        """``refit``: train a fresh network on every row for the epochs early stopping kept.

        The network starts from the same seeded weights and batch order as the first one
        (a fresh initialisation under the same seed) and runs without a validation split;
        ``WeightAveraging`` averages its epochs with the share the first one used. Its
        epochs are appended to the first history, marked ``"refit": True``.
        """
        earlier = list(self.history_)  # initialize() clears the history in place
        self.refit_epochs_ = int(dict(self.callbacks_)["early_stopping"].best_epoch_)
        if self.verbose:
            print(f"Refitting on all {len(target):,} rows for {self.refit_epochs_} epoch(s).")
        self.initialized_ = False  # the first network's seed, weights and batch order
        self.refitting_ = True  # read by WeightAveraging
        try:
            self._run_epochs(inputs, target, epochs=self.refit_epochs_, **fit_params)
        finally:
            self.__dict__.pop("refitting_", None)
        refit = [{**epoch, "epoch": len(earlier) + i, "refit": True}
                 for i, epoch in enumerate(self.history_, start=1)]
        self.history_[:] = earlier + refit

    def _run_epochs(self, X: object, y: object, **fit_params: object) -> None:
        """``max_epochs`` epochs of skorch's loop (callbacks, history), seeded; a fresh fit
        builds the network first. ``X`` is the inputs' dict, or fit_stream's dataset."""
        with self._seeded(), self._reusing_freed_memory():
            if not self.initialized_:
                self._initialize_checked()
            super().partial_fit(X, y, **fit_params)

    def _on_cpu(self) -> bool:
        """Whether the network runs on the CPU (``device`` None means the CPU)."""
        return _parse_device(self.device or "cpu")[0] == "cpu"

    def _reusing_freed_memory(self) -> contextlib.AbstractContextManager:
        """On the CPU, torch's large freed blocks are reused inside (``_kernels.block_cache``):
        without it every step's largest activations page-fault in anew."""
        return _kernels.block_cache() if self._on_cpu() else contextlib.nullcontext()

    def _initialize_checked(self) -> None:
        """initialize(), naming the parameters at fault when torch refuses them."""
        try:
            self.initialize()
            # torch checks some criterion__* values (reduction, pos_weight) only on a first
            # loss: compute one on a dummy pair so that they fail before training, too.
            self.criterion_(torch.zeros(2, device=self.device or "cpu"),
                            torch.zeros(2, device=self.device or "cpu"))
        except (TypeError, ValueError, RuntimeError) as exc:
            self.initialized_ = False  # nothing half-built is taken for a model
            if str(exc).startswith(type(self).__name__):
                raise  # one of our own checks: it names the parameter already
            raise type(exc)(
                f"{type(self).__name__}: {exc} (raised building the module, criterion or "
                "optimizer: check the module__*, criterion__* and optimizer__* parameters)."
            ) from exc

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        """Logit of ``classes_[1]`` for each row, float64 of shape (n_rows,).

        Rows are validated and converted in chunks of ``PREDICT_CHUNK_ROWS``, so
        memory stays flat however many rows X has.
        """
        check_is_fitted(self)
        if is_dataset(X) or isinstance(X, dict):  # skorch's callbacks pass its datasets
            return self.forward(X, training=False).double().numpy()
        X = to_pandas(X)
        if not (isinstance(X, pd.DataFrame) or issparse(X)):
            X = np.asarray(X)  # array-likes without slicing (lists, __array__ objects)
            if X.ndim != 2:
                self._network_inputs(X, "predict")  # raises scikit-learn's 2-D error
        n_rows = X.shape[0]
        logits = np.empty(n_rows, dtype=np.float64)
        with self._reusing_freed_memory():
            for start in range(0, max(n_rows, 1), PREDICT_CHUNK_ROWS):
                rows = slice(start, start + PREDICT_CHUNK_ROWS)
                chunk = X.iloc[rows] if isinstance(X, pd.DataFrame) else X[rows]
                inputs = Dataset(self._network_inputs(chunk, "predict"), None)
                logits[rows] = self.forward(inputs, training=False).double().numpy()
        nan = np.isnan(logits)
        if nan.any():  # a finite input so large that the network overflowed
            raise ValueError(
                f"{type(self).__name__}.predict: the network's output is NaN for "
                f"{int(nan.sum()):,} row(s) (the first: row {int(np.argmax(nan))}): their "
                "numeric inputs are far outside the training data's range. Scale them as in fit."
            )
        return logits

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Probabilities of both classes, float64 of shape (n_rows, 2).

        Computed in float64 from the logits, so confident rows keep distinct
        scores instead of all rounding to 1.0.
        """
        check_is_fitted(self)
        logits = self.decision_function(X)
        proba = np.empty((len(logits), 2))  # filled in place: 16 bytes a row, no temporaries
        expit(logits, out=proba[:, 1])
        np.subtract(1.0, proba[:, 1], out=proba[:, 0])
        return proba

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """``classes_[1]`` where its probability exceeds ``threshold``, else ``classes_[0]``."""
        check_is_fitted(self)
        return self.classes_[(self.predict_proba(X)[:, 1] > self.threshold).astype(int)]

    def attention_weights(self, X: pd.DataFrame) -> np.ndarray:
        """Weight the network gives each history position of each row.

        Parameters
        ----------
        X : DataFrame
            Rows in the layout seen in fit.

        Returns
        -------
        weights : ndarray of shape (n_rows, max_len), float64
            ``weights[i, k]`` is the weight of row ``i``'s ``k``-th most recent
            behaviour; padding positions are exactly 0. With
            ``attention_normalization="softmax"`` each row with a history sums to
            less than 1, the rest being the attention sink's (to 1 with
            ``attention_sink=False``);
            with ``pooling="sum"`` every real position weighs 1.
        """
        check_is_fitted(self)
        if not self.layout_.history_features:
            raise ValueError("attention_weights: the model was fit without history columns.")
        inputs = self._network_inputs(X, "attention_weights")
        batches = TensorBatchIterator(
            inputs, None, batch_size=self.batch_size, shuffle=False, device=self.device or "cpu"
        )
        weights = np.zeros((len(inputs["history_length"]), self.layout_.max_len))
        self.module_.eval()
        start = 0
        with torch.no_grad():
            for batch, _ in batches:
                _, _, w = self.module_.attend(
                    batch["candidate"], batch["history"], batch["history_length"]
                )
                weights[start : start + len(w), : w.shape[1]] = w.double().cpu().numpy()
                start += len(w)
        return weights

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.string = False
        tags.classifier_tags.multi_class = False
        tags.target_tags.required = True
        return tags


def _labels(y: np.ndarray, who: str) -> np.ndarray:
    """The distinct labels of y, sorted; labels of mixed types (1 and "1") are refused."""
    if label_kind(y) is None and len(y):
        types = sorted({type(v).__name__ for v in y.tolist()})
        raise ValueError(f"{who}: y mixes labels of different types {types}; give every label "
                         "the same type.")
    check_classification_targets(y)
    return np.unique(y)


def _is_cuda(device: object) -> bool:
    return device is not None and torch.device(device).type == "cuda"


def _parse_device(device: object) -> tuple[str, int | None] | None:
    """(kind, index) of a device, None for None; a ValueError for what is not a device."""
    if device is None:
        return None
    if isinstance(device, torch.device):
        return device.type, device.index
    # Parsed by hand: torch.device keeps the index in 8 bits ("cuda:256" -> cuda:0).
    match = re.fullmatch(r"(cpu|cuda|mps)(?::(\d+))?", str(device))
    if match is None:
        raise ValueError(f"device={device!r}: expected 'cpu', 'cuda', 'cuda:N' or 'mps'.")
    return match[1], None if match[2] is None else int(match[2])


def _check_device(device: object) -> None:
    """Refuse a device this machine does not have, before any training starts."""
    parsed = _parse_device(device)
    if parsed is None:
        return
    kind, index = parsed
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} but CUDA is not available on this machine.")
        if index is not None and not 0 <= index < torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} but only {torch.cuda.device_count()} CUDA device(s) exist."
            )
    elif kind == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={device!r} but MPS is not available on this machine.")
    elif kind not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device={device!r}: expected 'cpu', 'cuda', 'cuda:N' or 'mps'.")
