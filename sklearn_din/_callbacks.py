"""skorch callbacks that DINClassifier installs by default."""

from __future__ import annotations

import math

import torch
from skorch.callbacks import Callback


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss."""


class StopOnNonFiniteLoss(Callback):
    """Stop training at the first NaN or infinite loss, or non-finite weights.

    A diverged network only produces garbage from then on: rather than finish the
    remaining epochs, the fit stops with an error naming the epoch and batch. A
    finite loss can still take a step to infinite weights (huge numeric inputs), so
    the weights are also checked at the end of every epoch. The weights are those
    of the failed step; refit with a lower ``lr`` or scaled numeric columns.
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
