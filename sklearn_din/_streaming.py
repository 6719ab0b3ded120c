"""fit_stream: train a DINClassifier on a log larger than memory, one chunk at a time."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d

from ._batching import WEIGHT_KEY
from ._classifier import DINClassifier
from ._layout import InputState, check_numeric_scale
from ._messages import logger
from ._model_parts import model_parts
from ._stream_dataset import StreamDataset
from ._validation import check_sample_weight, is_dataframe, label_kind, to_pandas
from .datasets import _read_parquet_file

Chunks = Sequence[pd.DataFrame | str | os.PathLike] | Callable[[], Iterable[pd.DataFrame]]
WHO = "fit_stream"


class _Source:
    """The user's chunks as a re-readable stream of checked (X, y, weight) triples."""

    def __init__(self, chunks: Chunks, label_col: str, weight_col: str | None = None) -> None:
        if isinstance(chunks, str | os.PathLike) or is_dataframe(chunks):
            chunks = [chunks]
        if callable(chunks):
            self.items = None
        elif isinstance(chunks, Iterator):
            raise TypeError(
                f"{WHO}: chunks is an iterator, which can be read only once, but every epoch "
                "reads the chunks again. Pass a list of DataFrames or parquet paths, or a "
                "function returning a new iterator (e.g. lambda: iter_parquet(paths))."
            )
        elif isinstance(chunks, Sequence):
            bad = [i for i, c in enumerate(chunks)
                   if not (isinstance(c, str | os.PathLike) or is_dataframe(c))]
            if bad:
                raise TypeError(f"{WHO}: chunks[{bad[0]}] is a {type(chunks[bad[0]]).__name__}; "
                                "expected a DataFrame or the path of a parquet file.")
            missing = [str(c) for c in chunks
                       if isinstance(c, str | os.PathLike) and not os.path.isfile(c)]
            if missing:
                raise FileNotFoundError(f"{WHO}: no such file(s): {missing[:5]}.")
            self.items = list(chunks)
        else:
            raise TypeError(
                f"{WHO}: chunks must be a list of DataFrames or parquet paths, or a function "
                f"returning an iterable of DataFrames; got {type(chunks).__name__}."
            )
        self.chunks = chunks
        self.label_col = label_col
        self.weight_col = weight_col
        self.columns: list[str] | None = None  # the first chunk's, which all must share

    def __call__(self, rng: np.random.Generator | None = None) -> Iterator[tuple]:
        """(number, X, y, weight) of each non-empty chunk (weight None without a
        ``weight_col``); a list's chunks in an order drawn from ``rng``."""
        if self.items is None:
            chunks = self.chunks()
            if isinstance(chunks, pd.DataFrame) or not isinstance(chunks, Iterable):
                raise TypeError(f"{WHO}: the chunks function must return an iterable of "
                                f"DataFrames, got {type(chunks).__name__}.")
            numbered = enumerate(chunks)
        else:
            order = range(len(self.items)) if rng is None else rng.permutation(len(self.items))
            numbered = ((int(i), self.items[i]) for i in order)
        for i, chunk in numbered:
            if isinstance(chunk, str | os.PathLike):
                chunk = _read_parquet_file(chunk)
            chunk = to_pandas(chunk)  # polars or pyarrow chunks too
            if isinstance(chunk, pd.DataFrame) and len(chunk) == 0:
                continue  # an empty file or batch holds nothing to learn from
            yield (i, *self._split(i, chunk))

    def _split(self, i: int, chunk: object) -> tuple[pd.DataFrame, np.ndarray, object]:
        if not isinstance(chunk, pd.DataFrame):
            raise TypeError(f"{WHO}: chunk {i} is a {type(chunk).__name__}, expected a DataFrame.")
        columns = [str(c) for c in chunk.columns]
        if self.label_col not in columns:
            raise ValueError(f"{WHO}: chunk {i} lacks the label column {self.label_col!r}; it "
                             f"has columns {columns[:20]}.")
        if self.weight_col is not None and self.weight_col not in columns:
            raise ValueError(f"{WHO}: chunk {i} lacks the weight column {self.weight_col!r}; "
                             f"it has columns {columns[:20]}.")
        if self.columns is None:
            self.columns = columns
        elif set(columns) != set(self.columns):
            raise ValueError(
                f"{WHO}: chunk {i} has other columns than the first chunk. Missing: "
                f"{sorted(set(self.columns) - set(columns))}; unexpected: "
                f"{sorted(set(columns) - set(self.columns))}."
            )
        # Every chunk in the first chunk's column order, as the model saw it in the scan.
        X = chunk[[c for c in self.columns if c not in (self.label_col, self.weight_col)]]
        weight = None if self.weight_col is None else chunk[self.weight_col].to_numpy()
        return X, chunk[self.label_col].to_numpy(), weight


def _parts(estimator: object) -> tuple[DINClassifier, Pipeline | None]:
    """The classifier, and the fitted steps before it when ``estimator`` is a pipeline."""
    parts = model_parts(estimator, fitted=False)
    classifier = parts.require_classifier(WHO)
    parts.check_head_fitted(WHO, " Fit it before the stream fit, e.g. "
                            "SequenceFeatureTransformer.partial_fit on every chunk.")
    return classifier, parts.head


@contextlib.contextmanager
def _in_chunk(i: int) -> Iterator[None]:
    """Name the chunk in the errors its checks raise."""
    try:
        yield
    except (ValueError, TypeError) as exc:
        message = f"{WHO}: chunk {i}: {exc}"
        try:
            renamed = type(exc)(message)
        except Exception:  # an exception type that takes other arguments
            renamed = (ValueError if isinstance(exc, ValueError) else TypeError)(message)
        raise renamed from exc


def _scan(clf: DINClassifier, head: Pipeline | None, source: _Source) -> list[int]:
    """One pass before training: check every chunk, learn layout, sizes, classes, counts.

    Records (through ``DINClassifier._set_input_state``) what ``DINClassifier.fit``
    learns from its data: the chunks' input states merged (layout, vocabulary sizes and
    id frequencies of the whole stream) and the classes. Returns the rows of each chunk,
    so every epoch can be checked to read the same stream.
    """
    layout, labels, state, largest = None, None, None, None
    chunk_rows, total_weight = [], 0.0
    for i, X, y, weight in source():
        with _in_chunk(i):
            Xt = X if head is None else head.transform(X)
            frame, named = clf._frame(Xt, WHO, reset=layout is None)
            if layout is None:
                layout = clf._layout_for(frame, named)
            ids = layout.check(frame, WHO)
            labels = _stream_labels(labels, column_or_1d(y, warn=True), source.label_col)
            if weight is not None:
                weight = check_sample_weight(weight, len(frame), who=f"{WHO}: weight column "
                                             f"{source.weight_col!r}", allow_all_zero=True)
                total_weight += float(weight.sum())
            # Table sizes are checked once, against the rows of the whole stream.
            chunk_state, inputs = InputState.learn(layout, frame, WHO, weight, check_sizes=False,
                                                   ids=ids)
        state = chunk_state if state is None else state.merge(chunk_state)
        chunk_largest = np.abs(inputs["dense"]).max(axis=0, initial=0.0)
        largest = chunk_largest if largest is None else np.maximum(largest, chunk_largest)
        chunk_rows.append(len(frame))
    if layout is None:
        raise ValueError(f"{WHO}: the stream has no rows (no chunk, or only empty chunks).")
    if len(labels) < 2:
        raise ValueError(f"{WHO}: the stream's labels hold one class only ({labels.tolist()}); "
                         "two are needed.")
    if source.weight_col is not None and total_weight == 0:
        raise ValueError(f"{WHO}: every weight in column {source.weight_col!r} is zero: there is "
                         "nothing to learn from.")
    state.check_table_sizes(sum(chunk_rows), WHO)
    if not clf.standardize_numeric:
        check_numeric_scale(largest, layout.dense_cols, WHO)
    clf._set_input_state(state, labels)
    logger.info("%s: scanned %s rows in %d chunk(s)", WHO, f"{sum(chunk_rows):,}",
                len(chunk_rows))
    return chunk_rows


def _stream_labels(labels: np.ndarray | None, y: np.ndarray, label_col: str) -> np.ndarray:
    """The labels seen so far, with this chunk's: two at most, all of one type."""
    if pd.isna(y).any():
        raise ValueError(f"the label column {label_col!r} has missing values.")
    kind = label_kind(y)
    if kind is None and len(y):
        types = sorted({type(v).__name__ for v in y.tolist()})
        raise ValueError(f"the label column {label_col!r} mixes labels of types {types}.")
    if labels is not None and kind != label_kind(labels):
        raise ValueError(f"the label column {label_col!r} holds {kind} but earlier chunks held "
                         f"{label_kind(labels)} ({labels.tolist()}); give every chunk's labels "
                         "the same type.")
    check_classification_targets(y)
    seen = np.unique(y)
    labels = seen if labels is None else np.union1d(labels, seen)
    if len(labels) > 2:
        raise ValueError("Only binary classification is supported. "
                         f"The stream has labels {labels[:10].tolist()}.")
    return labels


def fit_stream(estimator: DINClassifier | Pipeline, chunks: Chunks, *,
               label_col: str = "label",
               weight_col: str | None = None) -> DINClassifier | Pipeline:
    """Fit a DINClassifier on chunks of a log, holding one chunk in memory at a time.

    Each of the classifier's ``max_epochs`` epochs is one pass over all chunks, so
    skorch's ``history_`` and callbacks count epochs as usual. Before training, one
    pass (a scan) checks every chunk and learns what ``fit`` learns from its data:
    columns, classes, the embedding table sizes (the largest id of the whole stream,
    so an id first seen in a late chunk gets its own embedding) and the id
    frequencies of ``embedding_l2``. A chunk with missing or extra columns, a
    missing label column, a third label or an empty stream raise before any
    training. Within a chunk, rows are shuffled; a list's chunk order is shuffled
    each epoch (seeded by ``random_state``).

    Parameters
    ----------
    estimator : DINClassifier or Pipeline
        The classifier, or a pipeline ending in one whose other steps are already
        fitted (e.g. a SequenceFeatureTransformer fitted with ``partial_fit`` on
        every chunk): each chunk goes through them before reaching the classifier.
        The classifier needs ``train_split=None`` and ``warm_start=False``.
    chunks : list or callable
        A list of DataFrames (pandas, polars, ...) or of parquet file paths (one chunk each; needs
        pyarrow), or a function that returns a new iterable of DataFrames each time
        it is called, such as ``lambda: iter_parquet(paths, batch_rows=500_000)`` or
        ``lambda: pd.read_csv(path, chunksize=500_000)``. It is read
        ``max_epochs + 1`` times and must give the same rows each time.
    label_col : str, default="label"
        Column of each chunk holding the labels; the other columns are the input.
    weight_col : str or None, default=None
        Column of each chunk holding each row's sample weight (as ``sample_weight``
        in :meth:`DINClassifier.fit`); it is not an input column.

    Returns
    -------
    estimator : DINClassifier or Pipeline
        The estimator passed, fitted.

    Examples
    --------
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn_din import DINClassifier, SequenceFeatureTransformer, fit_stream
    >>> from sklearn_din.datasets import make_interactions, sample_negatives
    >>> rows = sample_negatives(make_interactions(n_users=200, random_state=0), random_state=0)
    >>> chunks = [rows.iloc[i : i + 2000] for i in range(0, len(rows), 2000)]
    >>> transformer = SequenceFeatureTransformer(max_len=20)
    >>> for chunk in chunks:
    ...     _ = transformer.partial_fit(chunk.drop(columns="label"), chunk["label"])
    >>> model = make_pipeline(transformer, DINClassifier(max_epochs=2, verbose=0,
    ...                                                  random_state=0))
    >>> model = fit_stream(model, chunks)
    >>> len(model[-1].history_)
    2
    >>> model.predict_proba(chunks[0].drop(columns="label")).shape
    (2000, 2)
    """
    clf, head = _parts(estimator)
    clf._check_params()
    if clf.train_split is not None:
        raise ValueError(f"{WHO}: train_split must be None (a stream has no internal "
                         "validation split); score on held-out chunks after fitting.")
    if clf.warm_start:
        raise ValueError(f"{WHO} trains from scratch; warm_start=True is not supported.")
    if clf.distributed:  # a data-parallel fit would need sharded chunks
        raise ValueError(f"{WHO} does not support distributed=True; it trains in one process.")
    if not isinstance(label_col, str):
        raise TypeError(f"{WHO}: label_col must be a column name, got {label_col!r}.")
    if weight_col is not None:
        if not isinstance(weight_col, str) or weight_col == label_col:
            raise TypeError(f"{WHO}: weight_col must be a column name other than label_col, "
                            f"got {weight_col!r}.")
        clf._check_weighted_criterion(WHO)
    source = _Source(chunks, label_col, weight_col)
    clf.initialized_ = False  # a fresh fit, as DINClassifier.fit without warm_start
    chunk_rows = _scan(clf, head, source)
    n_rows, state = sum(chunk_rows), clf._input_state()

    def epoch(rng: np.random.Generator | None) -> Iterator[tuple[dict, np.ndarray]]:
        read = 0
        for i, X, y, weight in source(rng):
            with _in_chunk(i):
                frame, _ = clf._frame(X if head is None else head.transform(X), WHO,
                                      reset=False)
            read += len(frame)
            if read > n_rows:
                break
            inputs = state.to_arrays(frame)
            if weight is not None:
                inputs[WEIGHT_KEY] = np.asarray(weight, dtype=np.float32)
            yield inputs, (y == clf.classes_[1]).astype(np.float32)
        if read != n_rows:
            raise RuntimeError(f"{WHO}: the chunks gave {n_rows:,} rows in the scan but "
                               f"{read:,} or more in an epoch; every read must give the same rows.")

    # skorch's own loop (callbacks, history), on a dataset whose iterator streams.
    clf._run_epochs(StreamDataset(epoch, chunk_rows), None)
    return estimator
