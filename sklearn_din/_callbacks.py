"""skorch callbacks that DINClassifier installs by default."""

from __future__ import annotations

import math

import torch
from skorch.callbacks import Callback


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
    ...                       random_state=0)
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
