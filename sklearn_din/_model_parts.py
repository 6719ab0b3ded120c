"""Where sklearn-din's estimators sit inside a model: one set of rules for every function.

Every public function that takes a model (plotting, explanations, export, serving,
fit_stream) finds the :class:`DINClassifier` and the :class:`SequenceFeatureTransformer`
in it here, so that they all accept the same wrappers:

- ``FrozenEstimator``: its ``estimator``;
- a fitted search (``GridSearchCV``, ``RandomizedSearchCV``, anything with
  ``best_estimator_``): its best estimator;
- a fitted ``CalibratedClassifierCV`` holding one calibrated classifier (a frozen or
  prefit model, or ``ensemble=False``): that classifier's estimator (the network's
  attention and scores, before calibration). With ``ensemble=True`` it holds one
  model per fold and none of them is *the* model: it stays as it is;
- a ``Pipeline``: its last step is the classifier (nested pipelines too), its first
  the transformer, the steps before the last the ``head`` that makes the
  classifier's input.
"""

from __future__ import annotations

from dataclasses import dataclass

from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from ._classifier import DINClassifier
from ._transformer import SequenceFeatureTransformer


def unwrap(estimator: object) -> object:
    """The estimator inside frozen, search and single-model calibration wrappers."""
    while True:
        if isinstance(estimator, FrozenEstimator):
            estimator = estimator.estimator
        elif hasattr(estimator, "best_estimator_"):
            estimator = estimator.best_estimator_
        elif len(getattr(estimator, "calibrated_classifiers_", ())) == 1:
            estimator = estimator.calibrated_classifiers_[0].estimator
        else:
            return estimator


@dataclass(frozen=True)
class ModelParts:
    """A model and the sklearn-din estimators in it.

    ``model`` is the unwrapped model (what predicts the rows it is given), ``final``
    its last estimator (the classifier of a pipeline, or the model itself), and
    ``classifier`` / ``transformer`` the DINClassifier and heading
    SequenceFeatureTransformer when there are such; ``head`` the pipeline of the
    steps before the classifier (None without a pipeline).
    """

    model: object
    final: object
    classifier: DINClassifier | None
    transformer: SequenceFeatureTransformer | None
    head: Pipeline | None

    def require_classifier(self, who: str) -> DINClassifier:
        """The classifier, or a TypeError naming what the model is instead."""
        if self.classifier is None:
            inside = "" if self.final is self.model else f" ending in a {type(self.final).__name__}"
            raise TypeError(f"{who}: the model must be a DINClassifier or a Pipeline ending in one "
                            f"(frozen, searched or calibrated), got a {type(self.model).__name__}"
                            f"{inside}.")
        return self.classifier

    def check_head_fitted(self, who: str, hint: str = "") -> None:
        """A NotFittedError naming the first pipeline step before the classifier that
        is not fitted."""
        for name, step in [] if self.head is None else self.head.steps:
            if step is None or step == "passthrough":
                continue
            try:
                check_is_fitted(step)
            except NotFittedError:
                raise NotFittedError(f"{who}: pipeline step {name!r} is not fitted.{hint}") \
                    from None

    def transform(self, X: object) -> object:
        """X as the classifier reads it: through the head's steps, if any."""
        return X if self.head is None or not len(self.head.steps) else self.head.transform(X)


def model_parts(model: object, *, fitted: bool = True) -> ModelParts:
    """The parts of ``model``; ``fitted=False`` (a model about to be fit) unwraps
    pipelines only, since the wrappers' fitted estimators are not what fit trains."""
    if fitted:
        model = unwrap(model)
    inner = unwrap if fitted else (lambda step: step)
    final = last = model
    if isinstance(model, Pipeline):
        final = last = inner(model.steps[-1][1])
        while isinstance(final, Pipeline):  # a pipeline ending in a pipeline: for its name
            final = inner(final.steps[-1][1])
    transformer = None
    if isinstance(model, SequenceFeatureTransformer):
        transformer = model
    elif isinstance(model, Pipeline):
        first = inner(model.steps[0][1])
        transformer = first if isinstance(first, SequenceFeatureTransformer) else None
    classifier = last if isinstance(last, DINClassifier) else None
    head = model[:-1] if isinstance(model, Pipeline) and classifier is not None else None
    return ModelParts(model, final, classifier, transformer, head)
