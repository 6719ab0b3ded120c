"""skorch callbacks that DINClassifier installs by default."""

from __future__ import annotations

import math

from skorch.callbacks import Callback


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss."""


class StopOnNonFiniteLoss(Callback):
    """Stop training at the first batch whose loss is NaN or infinite.

    A diverged network only produces garbage from then on: rather than finish the
    remaining epochs, the fit stops with an error naming the epoch and batch.
    The weights are those of the failed step; refit with a lower ``lr``.
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
