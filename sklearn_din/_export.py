"""Leaving Python: the fitted network as ONNX or a torch.export program, its inputs, and
the transformer's tables as plain files a server in any language can read.

The exported graph is the network's masked forward
(:meth:`DeepInterestNetwork.forward_masked`): the same function as ``predict_proba``
without any shape that depends on the data, so batch size and history length stay
dynamic. With ``shared_history=True`` it is the shared-history forward of one visitor's
request (:meth:`DeepInterestNetwork.forward_shared_history`, what
:func:`score_candidates` runs), whose inputs :func:`onnx_request_inputs` builds.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from ._classifier import DINClassifier
from ._layout import (
    _FIRST_KNOWN,
    PADDING,
    RECENCY_FEATURE,
    RECENCY_OCTAVES,
    UNKNOWN,
    USER_COL,
    context_column,
)
from ._model_parts import model_parts
from ._saved_values import plain_array
from ._version import __version__

INPUT_NAMES = ("candidate", "history", "history_length", "sparse", "dense")
OUTPUT_NAMES = ("probability", "logit")
TABLES_FORMAT = "sklearn-din-tables"
TABLES_FORMAT_VERSION = 1


class _ServingGraph(torch.nn.Module):
    """The network's masked forward, returning P(classes_[1]) and the logit."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(
        self,
        candidate: torch.Tensor,
        history: torch.Tensor,
        history_length: torch.Tensor,
        sparse: torch.Tensor,
        dense: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logit = self.network.forward_masked(candidate, history, history_length, sparse, dense)
        return torch.sigmoid(logit), logit


class _SharedHistoryGraph(torch.nn.Module):
    """The network's shared-history forward (one visitor's candidates), returning
    P(classes_[1]) and the logit per candidate."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(
        self, candidate: torch.Tensor, history: torch.Tensor, sparse: torch.Tensor,
        dense: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logit = self.network.forward_shared_history(candidate, history, sparse, dense)
        return torch.sigmoid(logit), logit


def _classifier(model: object, who: str) -> DINClassifier:
    parts = model_parts(model)
    classifier = parts.require_classifier(who)
    parts.check_head_fitted(who)
    check_is_fitted(classifier)
    return classifier


def _graph_and_example(classifier: DINClassifier, shared_history: bool = False
                       ) -> tuple[torch.nn.Module, dict[str, torch.Tensor], dict]:
    """A CPU copy of the network in eval mode wrapped as the graph to export, example
    inputs by input name (in the graph's order) and their dynamic axes."""
    method = "forward_shared_history" if shared_history else "forward_masked"
    if not hasattr(classifier.module_, method):
        raise TypeError(f"export: the module {type(classifier.module_).__name__} has no "
                        f"{method}(); only DeepInterestNetwork can be exported.")
    network = copy.deepcopy(classifier.module_).cpu().eval().requires_grad_(False)
    layout = classifier.layout_
    # 3 rows and 3 positions: torch.export specialises sizes 0 and 1, so the example
    # must not use them for the axes meant to stay dynamic.
    n_rows, n_positions = 3, 3
    n_features = len(layout.all_history_features)

    def ids(*shape: int) -> torch.Tensor:
        return torch.full(shape, UNKNOWN, dtype=torch.int64)

    # The first axis: one visitor's candidates, or a batch of rows.
    rows = torch.export.Dim("candidates" if shared_history else "batch")
    positions = torch.export.Dim("history_positions")
    if shared_history:
        if getattr(network.attention, "block_pairs", None) is not None:
            network.attention.block_pairs = None  # one block: see LocalActivationUnit
        graph, history = _SharedHistoryGraph(network), {"history": ids(n_features, n_positions)}
        history_axes = {1: positions}
    else:
        graph, history_axes = _ServingGraph(network), {0: rows, 2: positions}
        history = {"history": ids(n_rows, n_features, n_positions),
                   "history_length": torch.tensor([0, 2, 3], dtype=torch.int64)}
    example = {"candidate": ids(n_rows, len(layout.history_features)), **history,
               "sparse": ids(n_rows, len(layout.sparse_cols)),
               "dense": torch.zeros((n_rows, len(layout.dense_cols)), dtype=torch.float32)}
    dynamic = {name: {0: rows} for name in example}
    dynamic["history"] = history_axes
    return graph, example, dynamic


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """torch.onnx logs a warning per missing optional package (torchvision) and warns
    about internals; none of it concerns the user's model."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _metadata(classifier: DINClassifier, shared_history: bool = False) -> dict:
    layout = classifier.layout_
    sizes = list(classifier.history_vocab_sizes_)
    inputs = {
        "candidate": {"columns": list(layout.history_features),
                      "table_sizes": sizes[: len(layout.history_features)]},
        "history": {"features": list(layout.all_history_features),
                    "max_len": layout.max_len, "table_sizes": sizes},
        "history_length": {},
        "sparse": {"columns": list(layout.sparse_cols),
                   "table_sizes": list(classifier.sparse_vocab_sizes_)},
        "dense": {"columns": list(layout.dense_cols)},
    }
    per = "row"
    if shared_history:
        del inputs["history_length"]
        inputs["history"]["shape"] = (
            "(features, positions): one visitor's behaviours, most recent first, no padding; "
            "at least one position (a visitor without any: one padding position, id 0)")
        per = "candidate"
    return {
        "sklearn_din": __version__,
        "classes": classifier.classes_.tolist(),
        "graph": "shared_history" if shared_history else "rows",
        "inputs": inputs,
        "outputs": {"probability": f"P(y == {classifier.classes_[1]!r}), one per {per}",
                    "logit": "log-odds of the same"},
    }


def export_onnx(model: object, path: str | os.PathLike, *, opset_version: int | None = None,
                shared_history: bool = False) -> Path:
    """Write the fitted network as an ONNX model with dynamic batch and history length.

    The graph takes the five inputs :func:`onnx_inputs` builds (``candidate``,
    ``history``, ``history_length``, ``sparse``: int64; ``dense``: float32) and returns
    ``probability`` (float32, P of ``classes_[1]``, what ``predict_proba(X)[:, 1]``
    gives) and ``logit``, one per row. It is the network's masked forward
    (:meth:`DeepInterestNetwork.forward_masked`), so any batch size and any number of
    history positions work, and the history may be cut to the longest real history of
    a batch. The model's classes, input columns and table sizes are stored in the ONNX
    model's metadata (key ``sklearn_din``, JSON).

    With ``shared_history=True`` the graph scores one visitor's candidates instead, as
    :func:`score_candidates` does: it takes ``candidate`` (C, F), the visitor's
    ``history`` once (features x positions, no padding), ``sparse`` (C, S) and
    ``dense`` (C, D), which :func:`onnx_request_inputs` builds, and returns one
    ``probability`` and ``logit`` per candidate. The history is embedded once and the
    attention's candidate-independent work done once per position, so a request costs
    a fraction of the rows graph on C rows, each with its own copy of the history.

    Needs the ``onnx`` extra (``pip install "sklearn-din[onnx]"``: onnx and
    onnxscript, which torch's exporter uses, and onnxruntime to run the file).

    Parameters
    ----------
    model : DINClassifier or Pipeline ending in one
        The fitted model. Only the network is exported: a pipeline's other steps
        (the transformer's encoding, a ColumnTransformer) run where the inputs are
        built (:func:`onnx_inputs`, or :func:`export_tables` for other languages).
    path : str or path-like
        Destination, conventionally ending in ``.onnx``.
    opset_version : int or None, default=None
        ONNX opset; None lets torch choose.
    shared_history : bool, default=False
        Export the graph of one visitor's request (see above) instead of the rows graph.

    Returns
    -------
    path : Path
        The written file.

    Examples
    --------
    >>> import os, tempfile
    >>> import onnxruntime as ort
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn_din import (DINClassifier, SequenceFeatureTransformer, export_onnx,
    ...                          onnx_inputs)
    >>> from sklearn_din.datasets import make_interactions, sample_negatives
    >>> rows = sample_negatives(make_interactions(n_users=50, random_state=0), random_state=0)
    >>> X, y = rows.drop(columns="label"), rows["label"]
    >>> model = make_pipeline(SequenceFeatureTransformer(max_len=10),
    ...                       DINClassifier(max_epochs=1, verbose=0, random_state=0)).fit(X, y)
    >>> path = export_onnx(model, os.path.join(tempfile.mkdtemp(), "din.onnx"))
    >>> session = ort.InferenceSession(path)
    >>> probability, logit = session.run(None, onnx_inputs(model, X.head(4)))
    >>> bool(abs(probability - model.predict_proba(X.head(4))[:, 1]).max() < 1e-5)
    True

    One visitor's candidates through the shared-history graph:

    >>> from sklearn_din import onnx_request_inputs, score_candidates
    >>> path = export_onnx(model, os.path.join(tempfile.mkdtemp(), "request.onnx"),
    ...                    shared_history=True)
    >>> candidates = X[["item_id", "cate_id"]].drop_duplicates().head(5)
    >>> inputs = onnx_request_inputs(model, user=3, candidates=candidates, time=10**9)
    >>> probability, logit = ort.InferenceSession(path).run(None, inputs)
    >>> expected = score_candidates(model, user=3, candidates=candidates, time=10**9)
    >>> bool(abs(probability - expected).max() < 1e-5)
    True
    """
    classifier = _classifier(model, "export_onnx")
    graph, example, dynamic = _graph_and_example(classifier, shared_history)
    try:
        # Traced with autograd on (nothing requires grad): Dice then takes its plain
        # path, not the in-place one that only runs under no_grad.
        with _quiet_exporter():
            program = torch.onnx.export(
                graph, tuple(example.values()), dynamo=True, dynamic_shapes=dynamic,
                input_names=list(example),
                output_names=OUTPUT_NAMES, opset_version=opset_version, verbose=False,
            )
    except ImportError as exc:
        raise ImportError(f"export_onnx needs onnx and onnxscript ({exc}): "
                          'pip install "sklearn-din[onnx]"') from None
    program.model.metadata_props["sklearn_din"] = json.dumps(
        _metadata(classifier, shared_history))
    path = Path(path)
    program.save(path)
    return path


def export_program(model: object, path: str | os.PathLike | None = None, *,
                   shared_history: bool = False) -> torch.export.ExportedProgram:
    """The fitted network as a :func:`torch.export.export` program (dynamic shapes).

    The same graph as :func:`export_onnx`, for torch-based servers (AOTInductor,
    ``torch.export.load`` in another process without sklearn-din): it takes the
    inputs of :func:`onnx_inputs` as tensors, by keyword, and returns
    ``(probability, logit)``.

    Parameters
    ----------
    model : DINClassifier or Pipeline ending in one
        The fitted model.
    path : str, path-like or None, default=None
        Where to save the program with :func:`torch.export.save` (``.pt2``); None
        only returns it.
    shared_history : bool, default=False
        The graph of one visitor's request (see :func:`export_onnx`), called with the
        inputs of :func:`onnx_request_inputs`.

    Returns
    -------
    program : torch.export.ExportedProgram
        Call ``program.module()(**tensors)``.

    Examples
    --------
    >>> import torch
    >>> from sklearn_din import DINClassifier, SequenceFeatureTransformer, export_program
    >>> from sklearn_din import onnx_inputs
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn_din.datasets import make_interactions, sample_negatives
    >>> rows = sample_negatives(make_interactions(n_users=50, random_state=0), random_state=0)
    >>> X, y = rows.drop(columns="label"), rows["label"]
    >>> model = make_pipeline(SequenceFeatureTransformer(max_len=10),
    ...                       DINClassifier(max_epochs=1, verbose=0, random_state=0)).fit(X, y)
    >>> program = export_program(model)
    >>> inputs = {k: torch.from_numpy(v) for k, v in onnx_inputs(model, X.head(4)).items()}
    >>> probability, logit = program.module()(**inputs)
    >>> probability.shape
    torch.Size([4])
    """
    classifier = _classifier(model, "export_program")
    graph, example, dynamic = _graph_and_example(classifier, shared_history)
    # By keyword, so that the program is called as program.module()(**inputs).
    program = torch.export.export(graph, (), example, dynamic_shapes=dynamic)
    if path is not None:
        torch.export.save(program, path)
    return program


def onnx_inputs(model: object, X: object) -> dict[str, np.ndarray]:
    """The inputs the exported graph takes for the rows of ``X``.

    Runs the pipeline's steps before the classifier (the transformer's encoding and
    history look-up, any ColumnTransformer), validates the result as ``predict_proba``
    does, and returns the network's inputs: ids as int64, numbers as float32, ids
    beyond the tables seen in fit mapped to the unknown id (1).

    Parameters
    ----------
    model : DINClassifier or Pipeline ending in one
        The fitted model that was exported.
    X : DataFrame
        Rows as ``model.predict_proba`` takes them.

    Returns
    -------
    inputs : dict of str -> ndarray
        ``candidate`` (n, F), ``history`` (n, F, L: feature ``f`` of the ``k``-th most
        recent behaviour, 0 = padding), ``history_length`` (n,), ``sparse`` (n, S) and
        ``dense`` (n, D); feed it to ``InferenceSession.run(None, inputs)``.

    Examples
    --------
    See :func:`export_onnx`.
    """
    classifier = _classifier(model, "onnx_inputs")
    inputs = classifier._network_inputs(model_parts(model).transform(X), "onnx_inputs")
    return {name: np.ascontiguousarray(inputs[name],
                                       dtype=np.float32 if name == "dense" else np.int64)
            for name in INPUT_NAMES}


def _write_array(directory: Path, name: str, values: np.ndarray) -> dict:
    """Raw little-endian bytes in C order; the entry says how to read them back."""
    values = np.ascontiguousarray(values)
    values = values.astype(values.dtype.newbyteorder("<"), copy=False)
    values.tofile(directory / name)
    return {"file": name, "dtype": values.dtype.str, "shape": list(values.shape)}


def export_tables(model: object, directory: str | os.PathLike) -> dict:
    """Write the transformer's vocabularies and behaviour store as plain files + JSON.

    What a server outside Python needs to encode a request the way
    :class:`SequenceFeatureTransformer` does and build the inputs of the graph written
    by :func:`export_onnx`. ``manifest.json`` describes every file; arrays are raw
    little-endian C-order bytes (``dtype`` in numpy's notation, e.g. ``"<i8"``), string
    vocabularies JSON arrays. The layout is documented in the user guide (Serving).

    Parameters
    ----------
    model : SequenceFeatureTransformer or Pipeline starting with one
        The fitted model; with a pipeline ending in a DINClassifier the manifest also
        describes the classifier's inputs (column order and table sizes).
    directory : str or path-like
        Created if needed; existing files of the same names are replaced.

    Returns
    -------
    manifest : dict
        The content of ``manifest.json``.

    Examples
    --------
    >>> import json, os, tempfile
    >>> import pandas as pd
    >>> from sklearn_din import SequenceFeatureTransformer, export_tables
    >>> log = pd.DataFrame({"user_id": ["u", "u", "v"], "item_id": ["a", "b", "a"],
    ...                     "cate_id": ["x", "y", "x"], "time": [1, 2, 3]})
    >>> manifest = export_tables(SequenceFeatureTransformer(max_len=5).fit(log),
    ...                          tempfile.mkdtemp())
    >>> manifest["vocabularies"]["item_id"]
    {'file': 'vocab.item_id.json', 'length': 2}
    >>> manifest["behaviours"]["codes"]
    {'file': 'store.codes.bin', 'dtype': '<i4', 'shape': [2, 3]}
    """
    parts = model_parts(model)
    transformer, classifier = parts.transformer, parts.classifier
    if transformer is None:
        raise TypeError("export_tables: the model must be a SequenceFeatureTransformer or a "
                        f"Pipeline starting with one, got {type(parts.model).__name__}.")
    steps = parts.model.steps if isinstance(parts.model, Pipeline) else [("", transformer)]
    between = [name for name, _ in steps[1:-1 if classifier is not None else None]]
    check_is_fitted(transformer)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocabularies = {}
    for col, vocab in transformer.vocabularies_.items():
        values = plain_array(vocab, f"the vocabulary of column {col!r}")
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in col)
        if values.dtype.kind in "biuf":
            vocabularies[col] = _write_array(directory, f"vocab.{safe}.bin", values)
        else:
            (directory / f"vocab.{safe}.json").write_text(
                json.dumps(values.tolist(), ensure_ascii=False), encoding="utf-8")
            vocabularies[col] = {"file": f"vocab.{safe}.json", "length": len(values)}
    store = transformer.behaviour_store_
    users = store.users
    n_user_codes = len(transformer.vocabularies_[transformer.user_col]) + _FIRST_KNOWN
    offsets = np.searchsorted(users, np.arange(n_user_codes + 1), side="left")
    manifest = {
        "format": TABLES_FORMAT,
        "format_version": TABLES_FORMAT_VERSION,
        "sklearn_din": __version__,
        "codes": {"padding": PADDING, "unknown": UNKNOWN, "first_known": _FIRST_KNOWN},
        "columns": {"user": transformer.user_col, "item": transformer.item_col,
                    "time": transformer.time_col, "history": list(transformer.history_cols),
                    "categorical": list(transformer.categorical_cols),
                    # output column (what the classifier's inputs name) -> input column
                    "encoded_as": {USER_COL: transformer.user_col,
                                   **{c: c for c in transformer._id_cols[1:]},
                                   **{context_column(c): c
                                      for c in transformer.categorical_cols}},
                    "passthrough": [str(c) for c in transformer.get_feature_names_out()
                                    [len(transformer._created_names()):]]},
        "max_len": transformer.max_len,
        "time_kind": transformer.time_kind_,
        # hist_gap_<k>: the bucket of the time from behaviour k to the request.
        "recency": {"feature": RECENCY_FEATURE, "unit": transformer.recency_unit_,
                    "octaves": RECENCY_OCTAVES,
                    "bucket": "2 + min(octaves - 1, floor(log2(max(t - time, unit) / unit)))"}
        if transformer.recency else None,
        "vocabularies": vocabularies,
        "behaviours": {
            "n": len(users),
            "user_offsets": _write_array(directory, "store.user_offsets.bin",
                                         offsets.astype(np.int64)),
            "times": _write_array(directory, "store.times.bin", store.times),
            "codes": _write_array(directory, "store.codes.bin", store.codes),
        },
    }
    if classifier is not None:
        check_is_fitted(classifier)
        manifest["classifier"] = _metadata(classifier)
        manifest["steps_between"] = between
        if between:
            warnings.warn(f"export_tables: pipeline step(s) {between} between the transformer "
                          "and the classifier are not exported; a server must reproduce them.",
                          UserWarning, stacklevel=2)
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return manifest
