"""skorch callbacks that DINClassifier installs by default."""

from __future__ import annotations

import math
import re
import sys

import torch
from skorch.callbacks import Callback, EarlyStopping

from ._batching import batch_count, dataset_arrays
from ._distributed import RankZeroPrintLog, is_secondary_process
from ._progress import Progress, is_terminal
from ._stream_dataset import StreamDataset

_ANSI_CODE = re.compile(r"\x1b\[[0-9;]*m")


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss, or NaN or infinite weights.

    Examples
    --------
    >>> import warnings
    >>> import pandas as pd
    >>> import torch
    >>> from sklearn_din import DINClassifier, NonFiniteLossError
    >>> X = pd.DataFrame({"x": [-9e5, 0.0]})   # an unscaled column, and a huge step
    >>> model = DINClassifier(embed_dim=4, attention_units=(8,), hidden_units=(8,),
    ...                       max_epochs=1, optimizer=torch.optim.SGD, lr=1e35, verbose=0,
    ...                       standardize_numeric=False, random_state=0)
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     try:
    ...         model.fit(X, [0, 1])
    ...     except NonFiniteLossError as error:
    ...         print(str(error).split(":")[0])
    parameter 'mlp.0.weight' became NaN or infinite in epoch 1
    """


class StopOnNonFiniteLoss(Callback):
    """Stop training at the first NaN or infinite loss, or non-finite weights.

    A diverged network only produces garbage from then on: rather than finish the
    remaining epochs, the fit stops with an error naming the epoch and batch. A
    finite loss can still take a step to infinite weights (huge numeric inputs), so
    the weights are also checked at the end of every epoch. The weights are those
    of the failed step; refit with a lower ``lr`` or scaled numeric columns.

    Examples
    --------
    >>> from sklearn_din import DINClassifier
    >>> "stop_on_non_finite_loss" in dict(DINClassifier()._default_callbacks)
    True
    >>> model = DINClassifier(callbacks__stop_on_non_finite_loss=None)  # to switch it off
    """

    def on_epoch_begin(self, net, **kwargs) -> None:
        self.batch_ = 0

    def on_batch_end(self, net, batch=None, training=None, loss=None, **kwargs) -> None:
        self.batch_ = getattr(self, "batch_", 0) + 1
        if loss is None:
            return
        value = float(loss.detach()) if hasattr(loss, "detach") else float(loss)
        if not math.isfinite(value):
            epoch = len(net.history)
            phase = "training" if training else "validation"
            raise NonFiniteLossError(
                f"the {phase} loss became {value} in epoch {epoch}, batch {self.batch_}: the "
                "model diverged. Lower lr, check the numeric columns' scale, or add dropout."
            )

    def on_epoch_end(self, net, **kwargs) -> None:
        for name, parameter in net.module_.named_parameters():
            if not torch.isfinite(parameter).all():
                raise NonFiniteLossError(
                    f"parameter {name!r} became NaN or infinite in epoch {len(net.history)}: "
                    "the model diverged. Lower lr or scale the numeric columns."
                )


class EpochTable(RankZeroPrintLog):
    """skorch's epoch table, coloured only when it is printed to a terminal.

    skorch's ``PrintLog`` colours the best value of each column with ANSI codes
    whatever its sink; in a file, a CI log or a logger those codes are noise. Written
    to ``print`` while standard output is a terminal the colours stay; otherwise
    (a redirected stdout, any other ``sink``) they are removed.
    """

    def table(self, row: dict) -> str:
        text = super().table(row)
        if self.sink is print and is_terminal(sys.stdout):
            return text
        return _ANSI_CODE.sub("", text)


def _n_batches(net: object, dataset: object, training: bool) -> int | None:
    """Batches ``net.get_iterator`` yields for ``dataset``; None when it cannot be known."""
    if dataset is None:
        return 0
    if isinstance(dataset, StreamDataset):
        return dataset.n_batches(net.batch_size, shuffle=training)
    arrays = dataset_arrays(dataset)
    if arrays is not None:
        return batch_count(arrays.n_rows, net.batch_size, shuffle=training)
    try:  # another dataset, served by skorch's DataLoader
        return -(-len(dataset) // net.batch_size)
    except TypeError:
        return None


class BatchProgress(Callback):
    """Per-batch progress of each epoch, with ``verbose=2`` (or more).

    In a terminal a tqdm bar (erased at the epoch's end, leaving the epoch table);
    elsewhere (a file, a CI log) a plain line at every tenth of the epoch's batches,
    on standard error. Counts training and validation batches, and shows the last
    training batch's loss. Prints nothing in the secondary processes of a
    distributed fit.
    """

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs) -> None:
        self.progress_ = None
        if net.verbose < 2 or is_secondary_process(net):
            return
        counts = [_n_batches(net, dataset_train, True), _n_batches(net, dataset_valid, False)]
        total = None if None in counts else sum(counts)
        self.progress_ = Progress(total, f"epoch {len(net.history)}", unit="batch")

    def on_batch_end(self, net, batch=None, training=None, loss=None, **kwargs) -> None:
        if getattr(self, "progress_", None) is None:
            return
        if training and loss is not None:
            self.progress_.update(1, train_loss=float(loss.detach()))
        else:
            self.progress_.update(1)

    def on_epoch_end(self, net, **kwargs) -> None:
        if getattr(self, "progress_", None) is not None:
            self.progress_.close()
            self.progress_ = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("progress_", None)  # a live tqdm bar does not pickle; it is per epoch
        return state


class EarlyStoppingOnValidation(EarlyStopping):
    """skorch's ``EarlyStopping`` on the validation AUC, driven by the classifier's settings.

    Active when the classifier stops early in this fit (its ``early_stopping`` and the
    number of rows decide, see :class:`DINClassifier`): it then watches ``valid_auc``,
    stops after ``n_iter_no_change_`` epochs without improvement (the classifier
    resolves its ``n_iter_no_change`` once the training rows are known) and restores the
    best epoch's weights. The classifier is the one source of these settings.
    """

    def __init__(self) -> None:
        super().__init__(monitor="valid_auc", lower_is_better=False, threshold=0.0,
                         threshold_mode="abs", load_best=True)

    def on_train_begin(self, net, **kwargs) -> None:
        # Not in the classifier's refit: it runs the epochs chosen here, without validation.
        self.active_ = bool(net.__dict__.get("do_early_stopping_")
                            and not net.__dict__.get("refitting_"))
        self.sink = print if net.verbose else _silent
        super().on_train_begin(net, **kwargs)

    def on_epoch_begin(self, net, **kwargs) -> None:
        # Set after on_train_begin: the classifier resolves it when it splits the rows.
        self.patience = net.__dict__.get("n_iter_no_change_")

    def on_epoch_end(self, net, **kwargs) -> None:
        if self.active_:
            super().on_epoch_end(net, **kwargs)

    def on_train_end(self, net, **kwargs) -> None:
        if self.active_:
            super().on_train_end(net, **kwargs)


class WeightAveraging(Callback):
    """Validation scores, and early stopping keeps, a moving average of the weights over
    epochs, driven by the classifier's ``weight_averaging``.

    Active when the classifier stops early in this fit and ``weight_averaging`` is set:
    when an epoch's first validation batch begins, the average (parameters and floating
    buffers, Dice's running moments included) takes in that epoch's weights with the share
    ``weight_averaging_`` (the split resolves it, after this callback's train begin) and
    is swapped in, so the validation loss and AUC, early
    stopping's choice and the weights it restores are the average's. The raw weights
    come back when the next epoch begins: training goes on from them, as Polyak
    averaging does. Holds two more copies of the weights while training (the average,
    and the raw weights during validation), besides early stopping's best one.

    In the classifier's refit (``refit``: no validation rows) the average takes in each
    epoch's weights when the epoch ends, with the share of the first fit, and is loaded
    when training ends: the refit keeps the average of the epoch early stopping chose.
    """

    def on_train_begin(self, net, **kwargs) -> None:
        self.refitting_ = bool(net.__dict__.get("refitting_"))
        self.active_ = self.refitting_ or bool(net.__dict__.get("do_early_stopping_"))
        self.average_, self.raw_ = None, None

    def _state(self, net) -> list[torch.Tensor]:
        return [t for t in net.module_.state_dict(keep_vars=True).values()
                if t.is_floating_point()]

    def _load(self, net, tensors: list[torch.Tensor]) -> None:
        """Copy ``tensors`` (the average, or the raw weights) into the network's state."""
        with torch.no_grad():
            for t, new in zip(self._state(net), tensors, strict=True):
                t.copy_(new)

    def on_epoch_begin(self, net, **kwargs) -> None:
        if self.raw_ is not None:  # the last validation pass used the average
            self._load(net, self.raw_)
            self.raw_ = None

    def on_batch_begin(self, net, training=None, **kwargs) -> None:
        share = net.__dict__.get("weight_averaging_")
        if not self.active_ or training or self.raw_ is not None or share is None:
            return
        with torch.no_grad():
            self.raw_ = [t.detach().clone() for t in self._state(net)]
            self._take_in(self.raw_, share)
        self._load(net, self.average_)

    def on_epoch_end(self, net, **kwargs) -> None:
        share = net.__dict__.get("weight_averaging_")
        if self.refitting_ and share is not None:
            with torch.no_grad():
                self._take_in([t.detach() for t in self._state(net)], share)

    def _take_in(self, weights: list[torch.Tensor], share: float) -> None:
        """The average moves towards ``weights`` by ``share`` (the first ones start it)."""
        if self.average_ is None:
            self.average_ = [t.clone() for t in weights]
        else:
            for average, new in zip(self.average_, weights, strict=True):
                average.lerp_(new, share)

    def on_train_end(self, net, **kwargs) -> None:
        if self.refitting_ and self.average_ is not None:
            self._load(net, self.average_)
        # The module holds the average: the refit's, the last epoch's, or early
        # stopping's best one.
        self.average_, self.raw_ = None, None


def _silent(text: str) -> None:
    """A sink that drops skorch's messages (``verbose=0``)."""
