"""Request-time scoring: one visitor, many candidates, one history look-up.

``pipeline.predict_proba`` on C candidate rows of one user builds and gathers the
same history C times and runs the attention's key-only work C times per position.
:func:`score_candidates` looks the history up once (or takes it from the request),
encodes only the candidates' own columns, and runs the network's shared-history
forward (:meth:`DeepInterestNetwork.forward_shared_history`).
"""

from __future__ import annotations

import weakref

import numpy as np
import pandas as pd
import torch
from scipy.special import expit
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from ._classifier import DINClassifier
from ._layout import (
    _FIRST_KNOWN,
    HIST_LEN_COL,
    RECENCY_FEATURE,
    UNKNOWN,
    USER_COL,
    InputLayout,
    clip_to_tables,
    context_column,
    history_column,
)
from ._model_parts import model_parts
from ._times import align_times, read_time
from ._transformer import SequenceFeatureTransformer, recency_buckets
from ._validation import check_columns_present, check_dataframe, check_no_missing, value_kind

WHO = "score_candidates"

# Look-up structures of the vocabularies, per transformer and column: building one costs
# time in proportion to the vocabulary, so it is built once per vocabulary, not once per
# request. A partial_fit that adds values replaces the vocabulary array, and with it the entry.
_INDEXES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class _Vocabulary:
    """One vocabulary's codes: a hash index, and for numbers a sorted copy as well."""

    def __init__(self, vocab: np.ndarray) -> None:
        self.vocab = vocab
        self.kind = value_kind(vocab)  # values of another kind would all be unknown
        self.index = pd.Index(vocab)
        self.sorted = None
        if vocab.dtype.kind in "iuf":
            self.order = np.argsort(vocab, kind="stable")
            self.sorted = vocab[self.order]

    def codes(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values)
        # Same kind only: comparing int64 with uint64 (or floats) would go through float64.
        if self.sorted is None or values.dtype.kind != self.sorted.dtype.kind \
                or not len(self.sorted):
            return (self.index.get_indexer(values) + _FIRST_KNOWN).astype(np.int32)
        # Numbers: a binary search in the sorted vocabulary, several times cheaper than
        # get_indexer on a few hundred values (which first builds an Index of them).
        at = np.searchsorted(self.sorted, values).clip(max=len(self.sorted) - 1)
        found = self.sorted[at] == values
        return np.where(found, self.order[at] + _FIRST_KNOWN, UNKNOWN).astype(np.int32)


def _encoder(transformer: SequenceFeatureTransformer, col: str, vocab: np.ndarray
             ) -> _Vocabulary:
    cached = _INDEXES.setdefault(transformer, {})
    entry = cached.get(col)
    if entry is None or entry.vocab is not vocab:
        entry = cached[col] = _Vocabulary(vocab)
    return entry


def _checked_encoder(transformer: SequenceFeatureTransformer, vocabularies: dict, col: str,
                     values: np.ndarray, who: str = WHO) -> _Vocabulary:
    """The column's encoder, once ``values`` are known to be of the vocabulary's kind."""
    entry = _encoder(transformer, col, vocabularies[col])
    kind = value_kind(values)
    if entry.kind is not None and kind is not None and kind != entry.kind:
        raise TypeError(f"{who}: {col!r} holds {kind} but {entry.kind} were seen in fit, so "
                        "none of its values would be known. Give it the dtype it had in fit.")
    return entry


def _encode(transformer: SequenceFeatureTransformer, vocabularies: dict, col: str,
            values: object, who: str = WHO) -> np.ndarray:
    values = np.asarray(values)
    return _checked_encoder(transformer, vocabularies, col, values, who).codes(values)


def _encode_one(transformer: SequenceFeatureTransformer, vocabularies: dict, col: str,
                value: object, *, checked: bool = True, who: str = WHO) -> int:
    """The code of one value (get_loc: a hash look-up, 100x cheaper than get_indexer)."""
    one = np.empty(1, dtype=object)
    one[0] = value
    encoder = (_checked_encoder(transformer, vocabularies, col, one, who) if checked
               else _encoder(transformer, col, vocabularies[col]))
    index = encoder.index
    try:
        position = index.get_loc(value)
    except (KeyError, TypeError):  # unseen, or not comparable with the vocabulary
        return UNKNOWN
    return int(position) + _FIRST_KNOWN if isinstance(position, int | np.integer) else UNKNOWN


def _serving_parts(model: object, who: str) -> tuple[SequenceFeatureTransformer,
                                                    Pipeline | None, DINClassifier]:
    """The transformer heading the pipeline, the steps between, and the classifier."""
    parts = model_parts(model)
    if parts.transformer is None or parts.classifier is None or parts.transformer is parts.model:
        got = (f"steps {[type(s).__name__ for _, s in parts.model.steps]}"
               if isinstance(parts.model, Pipeline) else type(parts.model).__name__)
        raise TypeError(f"{who}: the model must be a Pipeline that starts with a "
                        f"SequenceFeatureTransformer and ends with a DINClassifier, got {got}.")
    check_is_fitted(parts.transformer)
    check_is_fitted(parts.classifier)
    steps = parts.model.steps
    between = parts.model[1:-1] if len(steps) > 2 else None
    return parts.transformer, between, parts.classifier


def _query_time(transformer: SequenceFeatureTransformer, time: object) -> float | None:
    if time is None:
        return None
    # Compared exactly with the stored times, or refused, as in transform.
    values, dtype = read_time(time, transformer.time_col)
    return align_times(values, dtype, transformer._fit_time_dtype(), transformer.time_col,
                       stored=False)[0]


def _request_history(transformer: SequenceFeatureTransformer, vocabularies: dict,
                     history: object, time: float | None, who: str
                     ) -> tuple[np.ndarray, np.ndarray | None]:
    """Codes (n_features, length) of a history passed in the request, most recent first,
    and their times (None when the request gives none)."""
    caller, who = who, f"{who}: history"
    history = check_dataframe(history, who=who, allow_empty=True)
    cols = list(transformer.history_cols)
    check_columns_present(history, cols, who=who)
    check_no_missing(history, cols, who=who)
    times = None
    if len(history) == 0:  # a visitor without behaviours: no column has a kind to check
        return np.zeros((len(cols), 0), dtype=np.int32), np.zeros(0)
    if transformer.time_col in history.columns:
        # behaviours: their exact times (as partial_fit would store them), or refused
        times = transformer._times_like_fit(history, stored=True)
        keep = np.ones(len(history), dtype=bool) if time is None else times < time
        # Oldest first, ties in the order given: as the behaviour store orders them.
        order = np.argsort(times, kind="stable")
        rows = order[keep[order]]
    elif transformer.recency:
        raise ValueError(f"{who}: the transformer computes recency (recency=True), which needs "
                         f"each behaviour's time: add the {transformer.time_col!r} column.")
    else:  # no times: the rows are the behaviours in order, the last one most recent
        rows = np.arange(len(history))
    rows = rows[::-1][: transformer.max_len]
    codes = [_encode(transformer, vocabularies, c, history[c].to_numpy()[rows], caller)
             for c in cols]
    return np.stack(codes), None if times is None else times[rows]


def _with_recency(transformer: SequenceFeatureTransformer, codes: np.ndarray,
                  times: np.ndarray | None, query_time: float | None) -> np.ndarray:
    """The history codes, and below them the recency buckets when the transformer adds them
    (``hist_gap_<k>``, as transform computes them)."""
    if not transformer.recency:
        return codes
    buckets = recency_buckets(np.asarray([query_time], dtype=np.float64),
                              np.asarray(times, dtype=np.float64)[None, :],
                              transformer.recency_unit_)
    return np.concatenate([codes, buckets], axis=0)


def _transformer_columns(transformer: SequenceFeatureTransformer, values: dict,
                         vocabularies: dict, user_code: int, history: np.ndarray, who: str
                         ) -> dict:
    """The transformer's output columns for the candidate rows (``values``: their
    columns as arrays), by output name, except the history block (one row of it:
    ``history``)."""
    id_cols = transformer._id_cols
    n = len(values[id_cols[1]])
    columns: dict[str, np.ndarray] = {USER_COL: np.full(n, user_code, np.int32)}
    for col in id_cols[1:]:
        columns[col] = _encode(transformer, vocabularies, col, values[col], who)
    columns[HIST_LEN_COL] = np.full(n, history.shape[1], np.int32)
    for col in transformer.categorical_cols:  # the request's context: device, page, ...
        columns[context_column(col)] = _encode(transformer, vocabularies, col, values[col], who)
    encoded = set(transformer._vocabulary_cols)
    for col, array in values.items():
        if col not in encoded:
            columns[col] = array  # passed through unchanged, as transform does
    return columns


def _history_features(transformer: SequenceFeatureTransformer) -> list[str]:
    """The features of the transformer's history blocks, in its output order."""
    recency = [RECENCY_FEATURE] if transformer.recency else []
    return [*transformer.history_cols, *recency]


def _direct_inputs(classifier: DINClassifier, transformer: SequenceFeatureTransformer,
                   columns: dict, history: np.ndarray, candidates: pd.DataFrame, who: str
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The shared-history forward's inputs straight from the columns (no DataFrame)."""
    layout = classifier.layout_
    n = len(candidates)
    created = set(transformer._created_names())
    passthrough = [c for c in (*layout.sparse_cols, *layout.dense_cols) if c not in created]
    if passthrough:  # the classifier's own checks, on the candidates' own columns
        InputLayout((), 0, False, tuple(c for c in layout.sparse_cols if c in passthrough),
                    tuple(c for c in layout.dense_cols if c in passthrough)
                    ).check(candidates, who)
    by_feature = {c: i for i, c in enumerate(_history_features(transformer))}
    candidate = np.stack([columns[f] for f in layout.history_features], axis=1) \
        if layout.history_features else np.zeros((n, 0), np.int32)
    shared = history[[by_feature[f] for f in layout.all_history_features]]
    sparse = np.stack([np.asarray(columns[c]) for c in layout.sparse_cols], axis=1) \
        if layout.sparse_cols else np.zeros((n, 0), np.int32)
    dense = np.stack([np.asarray(columns[c], dtype=np.float32) for c in layout.dense_cols],
                     axis=1) if layout.dense_cols else np.zeros((n, 0), np.float32)
    sizes = classifier.history_vocab_sizes_
    return (clip_to_tables(candidate, sizes[: len(layout.history_features)]),
            clip_to_tables(shared[None], sizes)[0],
            clip_to_tables(sparse, classifier.sparse_vocab_sizes_), dense)


def _inputs_through_steps(classifier: DINClassifier, transformer: SequenceFeatureTransformer,
                          between: Pipeline, columns: dict, history: np.ndarray,
                          candidates: pd.DataFrame, who: str) -> dict | tuple:
    """Inputs when other steps sit between transformer and classifier: the transformer's
    output frame for the candidate rows goes through them, as in predict_proba."""
    n, length = len(candidates), history.shape[1]
    frame = {}
    for col in transformer.get_feature_names_out():
        if col in columns:
            frame[col] = columns[col]
    features = _history_features(transformer)
    padded = np.zeros((len(features), transformer.max_len), np.int32)
    padded[:, :length] = history
    for f, feature in enumerate(features):
        for k in range(transformer.max_len):
            frame[history_column(feature, k)] = np.full(n, padded[f, k], np.int32)
    ordered = {col: frame[col] for col in transformer.get_feature_names_out()}
    features = between.transform(pd.DataFrame(ordered, index=candidates.index))
    inputs = classifier._network_inputs(features, who)
    longest = inputs["history"].shape[2]
    same = (inputs["history"] == inputs["history"][:1]).all() and (
        inputs["history_length"] == inputs["history_length"][0]).all()
    if not same or longest == 0:
        return inputs  # a step changed the histories: score the rows one by one
    length = min(int(inputs["history_length"][0]), longest)
    return (inputs["candidate"], inputs["history"][0, :, :length], inputs["sparse"],
            inputs["dense"])


def score_candidates(
    model: Pipeline,
    user: object,
    candidates: pd.DataFrame,
    *,
    time: object = None,
    history: pd.DataFrame | None = None,
) -> np.ndarray:
    """Probability of ``classes_[1]`` for each candidate of one visitor.

    Equal (up to float rounding) to ``model.predict_proba(rows)[:, 1]`` on the rows
    that pair ``user`` and ``time`` with each candidate, computed as one request: the
    user's history is looked up once, not once per candidate, and the attention's
    work that does not depend on the candidate is done once per history position.

    Behaviours appended with the transformer's ``partial_fit`` (one click at a time is
    fine) are seen by the next call. Appending from one thread while others score is
    safe: each call reads the vocabularies and the behaviour store once, and a call
    that starts after ``partial_fit`` returned sees the new behaviours.

    Parameters
    ----------
    model : Pipeline
        Fitted; starts with a :class:`SequenceFeatureTransformer` (frozen or not) and
        ends with a :class:`DINClassifier`. Steps between them (a ColumnTransformer)
        are applied to the candidate rows.
    user : object
        The raw user id (as in the transformer's ``user_col``); a user unseen in fit
        gets the unknown user embedding.
    candidates : DataFrame
        One row per candidate, with every column the transformer was fit on except
        the user and time columns: the item and its attributes (``history_cols``),
        the transformer's ``categorical_cols`` (the request's context, e.g. a device:
        the same value in every row, or per candidate) and any passed-through column
        (e.g. a price).
    time : object, default=None
        The request's time (same kind as the transformer's time column); the history
        holds the behaviours strictly before it. None: after every stored behaviour.
    history : DataFrame or None, default=None
        Past behaviours of the visitor sent with the request (the ``history_cols``
        columns, and the time column if known), used instead of the stored ones: for
        a visitor the model has never seen. Without a time column the rows are in
        order of occurrence, the last one most recent.

    Returns
    -------
    proba : ndarray of shape (n_candidates,), float64

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn_din import DINClassifier, SequenceFeatureTransformer, score_candidates
    >>> from sklearn_din.datasets import make_interactions, sample_negatives
    >>> rows = sample_negatives(make_interactions(n_users=50, random_state=0), random_state=0)
    >>> X, y = rows.drop(columns="label"), rows["label"]
    >>> model = make_pipeline(SequenceFeatureTransformer(max_len=10),
    ...                       DINClassifier(max_epochs=1, verbose=0, random_state=0)).fit(X, y)
    >>> candidates = X[["item_id", "cate_id"]].drop_duplicates().head(5)
    >>> proba = score_candidates(model, user=3, candidates=candidates, time=10**9)
    >>> same_rows = candidates.assign(user_id=3, time=10**9)[X.columns]
    >>> bool(np.allclose(proba, model.predict_proba(same_rows)[:, 1], atol=1e-6))
    True
    """
    classifier, inputs = _request_inputs(model, user, candidates, time, history, WHO)
    if inputs is None:  # no candidates
        return np.zeros(0)
    if isinstance(inputs, dict):  # a step between changed the histories: row by row
        return classifier.predict_proba(inputs)[:, 1]
    device = classifier.device or "cpu"
    tensors = [torch.as_tensor(np.ascontiguousarray(a), device=device) for a in inputs]
    module = classifier.module_
    if module.training:
        module.eval()
    with torch.inference_mode():
        logits = module.forward_shared_history(*tensors)
    return expit(logits.double().cpu().numpy())


def _request_inputs(model: Pipeline, user: object, candidates: pd.DataFrame, time: object,
                    history: pd.DataFrame | None, who: str
                    ) -> tuple[DINClassifier, tuple | dict | None]:
    """The classifier, and the shared-history forward's inputs for one request: arrays
    (candidate (C, F), history (F + G, L), sparse (C, S), dense (C, D)); or, when a step
    between transformer and classifier gave the candidates different histories, the
    network's per-row inputs (a dict); None without candidates."""
    transformer, between, classifier = _serving_parts(model, who)
    # One read of each: partial_fit may replace them meanwhile (see the docstring).
    vocabularies = transformer.vocabularies_
    store = transformer.behaviour_store_
    candidates = check_dataframe(candidates, who=f"{who}: candidates", allow_empty=True)
    given = [c for c in (transformer.user_col, transformer.time_col) if c in candidates.columns]
    if given:
        raise ValueError(f"{who}: candidates has column(s) {given}; pass the user and the time "
                         "as the user= and time= arguments, once per request.")
    needed = [c for c in transformer.feature_names_in_
              if c not in (transformer.user_col, transformer.time_col)]
    check_columns_present(candidates, needed, who=f"{who}: candidates")
    values = {c: candidates[c].to_numpy() for c in needed}  # each column read once
    for col in transformer._vocabulary_cols[1:]:
        if values[col].dtype.kind not in "iub" and pd.isna(values[col]).any():
            check_no_missing(candidates, [col], who=f"{who}: candidates")  # says how many
    query_time = _query_time(transformer, time)
    if query_time is None and transformer.recency:
        raise ValueError(f"{who}: the transformer computes recency (recency=True), which "
                         "depends on the request's time: pass time=.")
    # With the history in the request, the user needs no stored behaviours: a new visitor
    # may have an id of any type (a session string). Without it, an id of another type
    # than in fit would find none of the user's behaviours: refused.
    user_code = _encode_one(transformer, vocabularies, transformer.user_col, user,
                            checked=history is None, who=who)
    if history is not None:
        codes, times = _request_history(transformer, vocabularies, history, query_time, who)
    elif user_code == UNKNOWN:
        codes = np.zeros((len(transformer.history_cols), 0), dtype=np.int32)
        times = np.zeros(0)
    else:
        codes, times = store.user_history(user_code, query_time, transformer.max_len,
                                          with_times=True)
    codes = _with_recency(transformer, codes, times, query_time)
    if len(candidates) == 0:
        return classifier, None
    columns = _transformer_columns(transformer, values, vocabularies, user_code, codes,
                                   who)
    if between is None:
        return classifier, _direct_inputs(classifier, transformer, columns, codes, candidates,
                                          who)
    return classifier, _inputs_through_steps(classifier, transformer, between, columns, codes,
                                             candidates, who)


def onnx_request_inputs(
    model: Pipeline,
    user: object,
    candidates: pd.DataFrame,
    *,
    time: object = None,
    history: pd.DataFrame | None = None,
) -> dict[str, np.ndarray]:
    """The inputs of the shared-history graph (``export_onnx(..., shared_history=True)``)
    for one visitor's request.

    The same request as :func:`score_candidates` (same arguments, same checks): the
    graph's probabilities equal ``score_candidates``' up to float32 rounding.

    Parameters
    ----------
    model : Pipeline
        The fitted pipeline whose classifier was exported.
    user, candidates, time, history
        As in :func:`score_candidates`.

    Returns
    -------
    inputs : dict of str -> ndarray
        ``candidate`` (C, F) int64, ``history`` (F + G, L) int64: the visitor's
        behaviours, one column per position, most recent first, no padding (a visitor
        without behaviours gets one padding position, id 0, whose embedding is zero:
        the graph then pools nothing), ``sparse`` (C, S) int64 and ``dense`` (C, D)
        float32; feed it to ``InferenceSession.run(None, inputs)``.

    Examples
    --------
    See :func:`export_onnx`.
    """
    who = "onnx_request_inputs"
    _, inputs = _request_inputs(model, user, candidates, time, history, who)
    if inputs is None:
        raise ValueError(f"{who}: candidates is empty; a request needs at least one.")
    if isinstance(inputs, dict):
        raise ValueError(f"{who}: a pipeline step between the transformer and the classifier "
                         "gives the candidates different histories, so they share none; use "
                         "export_onnx's rows graph with onnx_inputs instead.")
    candidate, shared, sparse, dense = inputs
    if shared.shape[1] == 0:
        shared = np.zeros((len(shared), 1), dtype=shared.dtype)
    return {"candidate": np.ascontiguousarray(candidate, dtype=np.int64),
            "history": np.ascontiguousarray(shared, dtype=np.int64),
            "sparse": np.ascontiguousarray(sparse, dtype=np.int64),
            "dense": np.ascontiguousarray(dense, dtype=np.float32)}
