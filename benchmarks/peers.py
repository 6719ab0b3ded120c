"""Adapters that train and score the three peer DIN implementations on OUR data.

Only the peers' public imports are used (no copies of their code):

* torch-rechub 0.9.0  -- ``torch_rechub.basic.features``, ``torch_rechub.models.ranking.DIN``,
  ``torch_rechub.utils.data.DataGenerator``, ``torch_rechub.trainers.CTRTrainer``.
* deepctr-torch 0.3.0 -- ``deepctr_torch.inputs``, ``deepctr_torch.models.DIN`` with
  ``compile`` / ``fit`` / ``predict``.
* FuxiCTR 2.3.10 -- ``fuxictr.features.FeatureMap`` and the DIN the wheel ships,
  ``model_zoo.LongCTR.DIN.DIN`` with its ``LongCTRDataLoader`` (``fit`` / ``predict``); see
  ``fit_predict_fuxictr_din`` for its data layout.

Our column convention (input of every function here)
-----------------------------------------------------
``train`` / ``test`` are dicts of numpy arrays:

* ``user_id``, ``item_id``, ``cate_id``: (n,) int64 codes, 0 = padding, 1 = unknown, real values >= 2;
* ``hist_item_id``, ``hist_cate_id``: (n, L) int64, column 0 = MOST RECENT behaviour, right-padded with 0;
* ``hist_len``: (n,) number of real (non-padding) history entries;
* ``label``: (n,) 0/1.

What each peer expects (read from their code, 0.9.0 / 0.3.0)
-------------------------------------------------------------
Both peers' own sequence builders write histories OLDEST FIRST (chronological: most recent behaviour at
index ``len - 1``) and PAD ON THE RIGHT with 0:

* torch-rechub: ``generate_seq_feature`` / ``create_seq_features`` build ``pos_list[:i] + [0] * (max_len - i)``.
  Its ``ActivationUnit`` has no padding mask at all: padding positions are scored like real items and
  enter the weighted sum. We give the item/category embedding tables ``padding_idx=0`` (a public option of
  ``SparseFeature``; the tutorial leaves it unset), so the padding row is a fixed zero vector and contributes
  nothing to the weighted sum; it still goes through the attention MLP's BatchNorm statistics in training.
  Because the attention is an un-normalised sum over positions, order does not change rechub's output; we
  still hand it chronological order to match what its builders produce.
* deepctr-torch: ``AttentionSequencePoolingLayer`` masks with ``arange(T) < keys_length``, i.e. it assumes
  the real items sit in positions ``0 .. len-1`` (RIGHT padding) and needs the length column named by
  ``VarLenSparseFeat(length_name=...)``. Its examples (``run_din.py``) use chronological order
  (``hist_iid = [[1, 2, 3, 0], ...]``). The history column must be called ``"hist_" + <target name>``
  (``DIN(history_feature_list=["item_id", "cate_id"])`` looks for ``hist_item_id`` / ``hist_cate_id``) --
  our names already match.

Conversion applied here (``to_peer_history``): for each row, the first ``hist_len`` entries are reversed
(most-recent-first -> oldest-first) and stay left-aligned; everything from ``hist_len`` on is 0. Padding side
is unchanged (right). Codes are passed through unchanged: 0 stays padding, 1 (unknown) is just another row
of each peer's embedding table. Vocabulary size of each table = max code + 1 over train and test (targets and
histories together, since targets and histories share a table).

Feature names fed to the peers
------------------------------
* torch-rechub: ``features = [SparseFeature("user_id")]`` (goes straight to the final MLP),
  ``target_features = [SparseFeature("item_id", padding_idx=0), SparseFeature("cate_id", padding_idx=0)]``,
  ``history_features = [SequenceFeature("hist_item_id", pooling="concat", shared_with="item_id"),
  SequenceFeature("hist_cate_id", pooling="concat", shared_with="cate_id")]``. Note rechub attends
  ``hist_item_id`` against ``item_id`` and ``hist_cate_id`` against ``cate_id`` with two SEPARATE activation
  units (one per history feature), not with the concatenated item+category embedding of the paper.
* deepctr-torch: ``SparseFeat("user_id"), SparseFeat("item_id"), SparseFeat("cate_id")``,
  ``VarLenSparseFeat(SparseFeat("hist_item_id", embedding_name="item_id"), maxlen=L, length_name="seq_length")``,
  same for ``hist_cate_id``; ``history_feature_list = ["item_id", "cate_id"]``; input ``seq_length`` = hist_len.
  One activation unit scores the concatenated [item, cate] embedding (as in the paper).

Settings held equal across peers: embedding size, attention MLP sizes, final MLP sizes, L, epochs, batch
size, Adam with the same lr / weight_decay, seed, thread count, CPU. Everything else is each peer's own
default: rechub uses Dice + BatchNorm in both MLPs, embeddings N(0, 1e-4); deepctr uses Dice (affine
BatchNorm) in the attention MLP, ReLU without BatchNorm in the final MLP, all weights N(0, 1e-4)
(``init_std``), per-batch SUMMED BCE loss. DeepCTR's default ``l2_reg_embedding=1e-6`` is set to 0 so that
``weight_decay`` is the only regulariser for both peers. ``model_kwargs`` overrides/extends the peer model's
constructor arguments.

Timing covers only the training calls (rechub ``CTRTrainer.train_one_epoch``, deepctr ``model.fit``) and the
predict calls, not feature/model construction. DeepCTR's ``fit`` converts the whole training set to one
tensor at the start of each call: that is inside its timed call, as it is for its users.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time

import numpy as np

ID_KEYS = ("user_id", "item_id", "cate_id")
HIST_KEYS = ("hist_item_id", "hist_cate_id")
REQUIRED_KEYS = ID_KEYS + HIST_KEYS + ("hist_len", "label")


# --------------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------------
def _check_data(data, name):
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise KeyError(f"{name} lacks keys {missing}")
    n = len(data["label"])
    L = None
    for k in REQUIRED_KEYS:
        a = np.asarray(data[k])
        if a.shape[0] != n:
            raise ValueError(f"{name}[{k!r}] has {a.shape[0]} rows, label has {n}")
        if k in HIST_KEYS:
            if a.ndim != 2:
                raise ValueError(f"{name}[{k!r}] must be 2-D (n, L), got shape {a.shape}")
            if L is None:
                L = a.shape[1]
            elif a.shape[1] != L:
                raise ValueError(f"{name} history matrices differ in L")
    hl = np.asarray(data["hist_len"])
    if hl.min(initial=0) < 0 or hl.max(initial=0) > L:
        raise ValueError(f"{name}['hist_len'] out of [0, {L}]")
    pad = np.arange(L)[None, :] >= hl[:, None]
    for k in HIST_KEYS:
        if np.any(np.asarray(data[k])[pad] != 0):
            raise ValueError(
                f"{name}[{k!r}] has non-zero entries past hist_len (padding must be 0, on the right)"
            )
    return n, L


def _check_pair(train, test):
    """Rows of ``train`` and ``test`` and their common history length L."""
    n_train, L = _check_data(train, "train")
    n_test, L_test = _check_data(test, "test")
    if L != L_test:
        raise ValueError(f"train L={L} != test L={L_test}")
    return n_train, n_test, L


def to_peer_history(hist, hist_len):
    """Our layout (most recent first, right-padded) -> peers' layout (oldest first, right-padded).

    Row i: out[i, j] = hist[i, hist_len[i] - 1 - j] for j < hist_len[i], else 0.
    """
    hist = np.asarray(hist, dtype=np.int64)
    hl = np.asarray(hist_len, dtype=np.int64)
    n, L = hist.shape
    j = np.arange(L)[None, :]
    valid = j < hl[:, None]
    src = np.clip(hl[:, None] - 1 - j, 0, L - 1)
    out = np.take_along_axis(hist, src, axis=1)
    out[~valid] = 0
    return out


def _vocab_sizes(train, test):
    """max code + 1 over train and test; targets and histories share one table per feature."""

    def mx(*arrays):
        return int(max(np.asarray(a).max(initial=0) for a in arrays)) + 1

    return {
        "user_id": mx(train["user_id"], test["user_id"]),
        "item_id": mx(
            train["item_id"], test["item_id"], train["hist_item_id"], test["hist_item_id"]
        ),
        "cate_id": mx(
            train["cate_id"], test["cate_id"], train["hist_cate_id"], test["hist_cate_id"]
        ),
    }


def _peer_inputs(data):
    """Dict of int64 arrays in the peers' layout (history converted), plus labels."""
    x = {k: np.asarray(data[k], dtype=np.int64) for k in ID_KEYS}
    for k in HIST_KEYS:
        x[k] = to_peer_history(data[k], data["hist_len"])
    x["seq_length"] = np.asarray(data["hist_len"], dtype=np.int64)
    y = np.asarray(data["label"]).astype(np.float32)
    return x, y


def _seed_all(seed):
    import torch

    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 -- the peers draw from the global numpy RNG
    torch.manual_seed(seed)


class _PeakRSS:
    """Samples this process's RSS in a background thread while active (psutil); MB. Cheap: 20 Hz."""

    def __init__(self, interval=0.05):
        self.interval = interval
        self.peak = None
        self._stop = threading.Event()
        self._thread = None
        try:
            import psutil

            self._proc = psutil.Process(os.getpid())
        except Exception:  # psutil missing: no measurement
            self._proc = None

    def _sample(self):
        rss = self._proc.memory_info().rss
        self.peak = rss if self.peak is None else max(self.peak, rss)

    def _run(self):
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self):
        if self._proc is not None:
            self._sample()
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self._proc is not None:
            self._stop.set()
            self._thread.join()
            self._sample()
        return False

    @property
    def mb(self):
        return None if self.peak is None else self.peak / 2**20


@contextlib.contextmanager
def _num_threads(n):
    import torch

    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


# Every system's predictions, sklearn-din's in speed.py too, are timed alike: the median of this many calls on
# the same rows, the first (cold) one included.
PREDICT_REPEATS = 3


def timed_predict(predict):
    """(the first call's result, the median seconds of ``PREDICT_REPEATS`` calls)."""
    results, seconds = [], []
    for _ in range(PREDICT_REPEATS):
        t0 = time.perf_counter()
        results.append(predict())
        seconds.append(time.perf_counter() - t0)
    return results[0], float(np.median(seconds))


def _result(
    epoch_seconds, n_train, predict_seconds, n_test, proba, y_test, peak_mb, n_threads, extra=None
):
    from sklearn.metrics import roc_auc_score

    proba = np.asarray(proba, dtype=np.float64).reshape(-1)
    if proba.shape[0] != n_test:
        raise RuntimeError(f"peer returned {proba.shape[0]} predictions for {n_test} test rows")
    y_test = np.asarray(y_test)
    auc = float(roc_auc_score(y_test, proba)) if len(np.unique(y_test)) == 2 else float("nan")
    out = {
        "train_seconds_per_epoch": [float(s) for s in epoch_seconds],
        "train_rows_per_s": float(np.median([n_train / s for s in epoch_seconds])),
        "predict_seconds": float(predict_seconds),
        "predict_rows_per_s": float(n_test / predict_seconds),
        "test_proba": proba,
        "test_auc": auc,
        "peak_rss_mb": peak_mb,
        "n_threads": n_threads,
        "n_train": int(n_train),
        "n_test": int(n_test),
    }
    if extra:
        out.update(extra)
    return out


# --------------------------------------------------------------------------------------------------------
# torch-rechub
# --------------------------------------------------------------------------------------------------------
def fit_predict_rechub_din(
    train,
    test,
    *,
    embed_dim=8,
    attention_units=(256, 128),
    hidden_units=(256, 128),
    epochs=1,
    batch_size=1024,
    lr=1e-3,
    weight_decay=0.0,
    seed=0,
    n_threads=1,
    num_workers=0,
    model_kwargs=None,
):
    """Train torch-rechub's DIN on ``train`` and score ``test`` (see the module docstring for the layout).

    Training loop: torch-rechub's own ``CTRTrainer``, but we call its public ``train_one_epoch`` once per
    epoch instead of ``CTRTrainer.fit``: ``fit`` has no per-epoch timing hook, runs an evaluation pass when
    given a validation loader, and unconditionally writes ``model.pth`` into ``model_path`` when it ends.
    ``train_one_epoch`` is exactly the body ``fit`` runs per epoch (same loader, loss, optimizer step).
    Data go through rechub's ``DataGenerator`` (a ``DataLoader`` over a per-row dict ``Dataset``,
    shuffle=True for training) with ``num_workers=0`` (the tutorial's 8 spawn workers cost seconds of start-up).
    Predicting goes through ``CTRTrainer.predict``, which needs a labelled loader: we pass zeros, not the
    real test labels.
    """
    import torch
    from torch_rechub.basic.features import SequenceFeature, SparseFeature
    from torch_rechub.models.ranking import DIN
    from torch_rechub.trainers import CTRTrainer
    from torch_rechub.utils.data import DataGenerator

    n_train, n_test, L = _check_pair(train, test)
    vocab = _vocab_sizes(train, test)
    x_tr, y_tr = _peer_inputs(train)
    x_te, y_te = _peer_inputs(test)
    # rechub's model ignores keys it has no feature for; drop seq_length for clarity.
    for x in (x_tr, x_te):
        x.pop("seq_length")

    with _num_threads(n_threads):
        _seed_all(seed)
        # Fresh feature objects every call: rechub caches the nn.Embedding ON the feature object.
        features = [SparseFeature("user_id", vocab_size=vocab["user_id"], embed_dim=embed_dim)]
        target_features = [
            SparseFeature(
                "item_id", vocab_size=vocab["item_id"], embed_dim=embed_dim, padding_idx=0
            ),
            SparseFeature(
                "cate_id", vocab_size=vocab["cate_id"], embed_dim=embed_dim, padding_idx=0
            ),
        ]
        history_features = [
            SequenceFeature(
                "hist_item_id",
                vocab_size=vocab["item_id"],
                embed_dim=embed_dim,
                pooling="concat",
                shared_with="item_id",
                padding_idx=0,
            ),
            SequenceFeature(
                "hist_cate_id",
                vocab_size=vocab["cate_id"],
                embed_dim=embed_dim,
                pooling="concat",
                shared_with="cate_id",
                padding_idx=0,
            ),
        ]
        kwargs = dict(
            features=features,
            history_features=history_features,
            target_features=target_features,
            mlp_params={"dims": list(hidden_units)},
            attention_mlp_params={"dims": list(attention_units)},
        )
        kwargs.update(model_kwargs or {})
        model = DIN(**kwargs)

        dg = DataGenerator(x_tr, y_tr)
        y_dummy = np.zeros(
            n_test, dtype=np.float32
        )  # CTRTrainer.predict requires labels; never the real ones
        train_dl, _, test_dl = dg.generate_dataloader(
            x_val=x_te,
            y_val=y_dummy,
            x_test=x_te,
            y_test=y_dummy,
            batch_size=batch_size,
            num_workers=num_workers,
        )
        trainer = CTRTrainer(
            model,
            optimizer_fn=torch.optim.Adam,
            optimizer_params={"lr": lr, "weight_decay": weight_decay},
            n_epoch=epochs,
            device="cpu",
            model_path=os.devnull,
        )

        epoch_seconds = []
        with _PeakRSS() as rss:
            for _ in range(epochs):
                t0 = time.perf_counter()
                trainer.train_one_epoch(train_dl)
                epoch_seconds.append(time.perf_counter() - t0)
            proba, predict_seconds = timed_predict(
                lambda: trainer.predict(trainer.model, test_dl))

    return _result(
        epoch_seconds,
        n_train,
        predict_seconds,
        n_test,
        proba,
        test["label"],
        rss.mb,
        n_threads,
        extra={"peer": "torch-rechub", "vocab_sizes": vocab, "L": L},
    )


# --------------------------------------------------------------------------------------------------------
# deepctr-torch
# --------------------------------------------------------------------------------------------------------
def fit_predict_deepctr_din(
    train,
    test,
    *,
    embed_dim=8,
    attention_units=(256, 128),
    hidden_units=(256, 128),
    epochs=1,
    batch_size=1024,
    lr=1e-3,
    weight_decay=0.0,
    seed=0,
    n_threads=1,
    model_kwargs=None,
):
    """Train deepctr-torch's DIN on ``train`` and score ``test`` (see the module docstring for the layout).

    Uses the public Keras-like API: ``model.compile(torch.optim.Adam(...), "binary_crossentropy")``,
    ``model.fit(x_dict, y, batch_size, epochs=e+1, initial_epoch=e, verbose=0)`` once per epoch (so each
    epoch is timed on its own; the optimizer state carries over between calls, as within one ``fit``), and
    ``model.predict(x_dict, batch_size)``. ``verbose=0`` skips deepctr's per-batch training metrics.
    deepctr packs every input column into ONE float32 tensor: ids above 2**24 lose precision
    (16,777,217 -> 16,777,216); a warning is raised here when a vocabulary is that large.
    """
    import warnings

    import torch
    from deepctr_torch.inputs import SparseFeat, VarLenSparseFeat
    from deepctr_torch.models import DIN

    n_train, n_test, L = _check_pair(train, test)
    vocab = _vocab_sizes(train, test)
    if max(vocab.values()) > 2**24:
        warnings.warn(
            "deepctr-torch casts ids to float32: codes above 2**24 will be corrupted", stacklevel=2
        )
    x_tr, y_tr = _peer_inputs(train)
    x_te, _ = _peer_inputs(test)

    with _num_threads(n_threads):
        _seed_all(seed)
        feature_columns = [
            SparseFeat("user_id", vocabulary_size=vocab["user_id"], embedding_dim=embed_dim),
            SparseFeat("item_id", vocabulary_size=vocab["item_id"], embedding_dim=embed_dim),
            SparseFeat("cate_id", vocabulary_size=vocab["cate_id"], embedding_dim=embed_dim),
            VarLenSparseFeat(
                SparseFeat(
                    "hist_item_id",
                    vocabulary_size=vocab["item_id"],
                    embedding_dim=embed_dim,
                    embedding_name="item_id",
                ),
                maxlen=L,
                length_name="seq_length",
            ),
            VarLenSparseFeat(
                SparseFeat(
                    "hist_cate_id",
                    vocabulary_size=vocab["cate_id"],
                    embedding_dim=embed_dim,
                    embedding_name="cate_id",
                ),
                maxlen=L,
                length_name="seq_length",
            ),
        ]
        kwargs = dict(
            dnn_feature_columns=feature_columns,
            history_feature_list=["item_id", "cate_id"],
            dnn_hidden_units=tuple(hidden_units),
            att_hidden_size=tuple(attention_units),
            l2_reg_embedding=0.0,
            seed=seed,
            device="cpu",
        )
        kwargs.update(model_kwargs or {})
        model = DIN(**kwargs)
        model.compile(
            torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay),
            "binary_crossentropy",
            metrics=[],
        )

        epoch_seconds = []
        with (
            _PeakRSS() as rss,
            contextlib.redirect_stdout(open(os.devnull, "w")),
        ):  # fit prints "cpu", "Train on"
            for e in range(epochs):
                # fit() replaces the list it builds from the dict in place, never our arrays; copy the dict anyway
                xd = dict(x_tr)
                t0 = time.perf_counter()
                model.fit(
                    xd,
                    y_tr,
                    batch_size=batch_size,
                    epochs=e + 1,
                    initial_epoch=e,
                    verbose=0,
                    shuffle=True,
                )
                epoch_seconds.append(time.perf_counter() - t0)
            proba, predict_seconds = timed_predict(
                lambda: model.predict(dict(x_te), batch_size=batch_size))

    return _result(
        epoch_seconds,
        n_train,
        predict_seconds,
        n_test,
        proba,
        test["label"],
        rss.mb,
        n_threads,
        extra={"peer": "deepctr-torch", "vocab_sizes": vocab, "L": L},
    )


# --------------------------------------------------------------------------------------------------------
# FuxiCTR
# --------------------------------------------------------------------------------------------------------
def _fuxictr_tables(train, test):
    """FuxiCTR's LongCTR layout of our rows: an item table, one sequence per row, the row table.

    The LongCTR loader looks every history position and the candidate up in an item table
    (``item_info``: row ``i`` = the features of item index ``i``, row 0 = padding) and each row's
    history in a sequence table (``user_info["full_item_seq"]``, chronological, of which a row uses
    the first ``seq_len`` entries). Our histories carry the category of each event, so the item
    index enumerates the (item, category) pairs that occur (an unknown item of a known category
    keeps its category); every row gets its own sequence (``user_index`` = row number, train rows
    then test rows), so each system sees exactly the same histories.
    """
    hist = {k: np.concatenate([train[k], test[k]]) for k in HIST_KEYS}
    lens = np.concatenate([train["hist_len"], test["hist_len"]]).astype(np.int64)
    items = np.concatenate([train["item_id"], test["item_id"]]).astype(np.int64)
    cates = np.concatenate([train["cate_id"], test["cate_id"]]).astype(np.int64)
    n_cates = int(max(cates.max(initial=0), hist["hist_cate_id"].max(initial=0))) + 1
    key_hist = hist["hist_item_id"] * n_cates + hist["hist_cate_id"]
    key_target = items * n_cates + cates
    keys, inverse = np.unique(np.concatenate([[0], key_target, key_hist.ravel()]),
                              return_inverse=True)  # key 0 = (0, 0), padding: index 0
    target_index = inverse[1:1 + len(items)]
    hist_index = inverse[1 + len(items):].reshape(key_hist.shape)
    sequences = to_peer_history(hist_index, lens)
    item_info = {"item_index": np.arange(len(keys)), "item_id": keys // n_cates,
                 "cate_id": keys % n_cates}
    rows = {"user_id": np.concatenate([train["user_id"], test["user_id"]]).astype(np.int64),
            "item_index": target_index, "user_index": np.arange(len(items)), "seq_len": lens,
            "label": np.concatenate([train["label"], test["label"]]).astype(np.int64)}
    return item_info, [s[:n] for s, n in zip(sequences, lens, strict=True)], rows


def fit_predict_fuxictr_din(
    train,
    test,
    *,
    embed_dim=8,
    attention_units=(256, 128),
    hidden_units=(256, 128),
    epochs=1,
    batch_size=1024,
    lr=1e-3,
    weight_decay=0.0,
    seed=0,
    n_threads=1,
    model_kwargs=None,
):
    """Train FuxiCTR's DIN on ``train`` and score ``test`` (see the module docstring for the layout).

    FuxiCTR 2.3.10's wheel ships its DIN as ``model_zoo.LongCTR.DIN`` (the classic ``model_zoo/DIN``
    lives only in its git repository), fed by ``LongCTRDataLoader`` from three parquet files written
    here (``_fuxictr_tables``; untimed, like the other peers' array building). The loader pads each
    batch to its longest history (pre-padding, the mask removes padding), not to ``L``.
    Model: its defaults (Dice in the attention MLP, ReLU output MLP, embeddings N(0, 1e-4),
    gradient norm clipped at 10) with our sizes, Adam (``optimizer="adam"``, ``learning_rate``).
    FuxiCTR's optimizer takes no weight decay: ``weight_decay`` must be 0.
    ``BaseModel.fit`` evaluates on validation data at the end of every epoch, saves the best
    weights and reloads them when it returns: we call ``fit(epochs=1)`` once per epoch (its first
    evaluation is always the best, so the reload restores the weights just trained) with a
    2-row validation loader of training rows, so the timed epoch includes that tiny evaluation and
    one checkpoint save/load. A batch whose histories are all empty makes FuxiCTR's attention raise
    (a reshape of 0 elements): real batches of 1,024 rows always hold some history. ``num_workers=0`` as for torch-rechub (its default starts a worker
    process).
    """
    import logging
    import tempfile
    from collections import OrderedDict

    import pandas as pd
    from fuxictr.features import FeatureMap
    from fuxictr.pytorch.torch_utils import seed_everything
    from model_zoo.LongCTR.DIN import DIN
    from model_zoo.LongCTR.longctr_dataloader import LongCTRDataLoader

    if weight_decay:
        raise ValueError("FuxiCTR's optimizer has no weight decay; pass weight_decay=0")
    n_train, n_test, L = _check_pair(train, test)
    item_info, sequences, rows = _fuxictr_tables(train, test)
    logging.getLogger().setLevel(logging.WARNING)  # fit logs every evaluation at INFO

    with _num_threads(n_threads), tempfile.TemporaryDirectory(prefix="fuxictr_") as tmp:
        pd.DataFrame(item_info).to_parquet(f"{tmp}/item_info.parquet")
        pd.DataFrame({"full_item_seq": sequences}).to_parquet(f"{tmp}/user_info.parquet")
        table = pd.DataFrame(rows)
        # FuxiCTR's DIN_Attention fails on a batch whose histories are all empty ("cannot reshape
        # tensor of 0 elements"): the validation pair is drawn from rows that have a history.
        labels, has_history = rows["label"][:n_train], rows["seq_len"][:n_train] > 0
        positives = np.flatnonzero((labels == 1) & has_history)[:1]
        negatives = np.flatnonzero((labels == 0) & has_history)[:1]
        for name, part in (("train", table.iloc[:n_train]), ("test", table.iloc[n_train:]),
                           ("valid", table.iloc[np.concatenate([positives, negatives])])):
            part.to_parquet(f"{tmp}/{name}.parquet", index=False)

        feature_map = FeatureMap("bench", tmp)
        feature_map.default_emb_dim = embed_dim
        feature_map.labels = ["label"]
        feature_map.features = OrderedDict([
            ("user_id", {"type": "categorical", "source": "user",
                         "vocab_size": int(rows["user_id"].max()) + 1}),
            ("item_id", {"type": "categorical", "source": "item", "padding_idx": 0,
                         "vocab_size": int(item_info["item_id"].max()) + 1}),
            ("cate_id", {"type": "categorical", "source": "item", "padding_idx": 0,
                         "vocab_size": int(item_info["cate_id"].max()) + 1}),
            ("item_index", {"type": "meta"}), ("user_index", {"type": "meta"}),
            ("seq_len", {"type": "meta"}),
        ])
        feature_map.num_fields = feature_map.get_num_fields()
        feature_map.set_column_index()

        def loader(name, shuffle):
            return LongCTRDataLoader(feature_map, f"{tmp}/{name}.parquet",
                                     user_info=f"{tmp}/user_info.parquet",
                                     item_info=f"{tmp}/item_info.parquet", batch_size=batch_size,
                                     shuffle=shuffle, num_workers=0, max_len=L)

        _seed_all(seed)
        seed_everything(seed)
        kwargs = dict(
            gpu=-1, embedding_dim=embed_dim, learning_rate=lr,
            attention_hidden_units=list(attention_units), dnn_hidden_units=list(hidden_units),
            optimizer="adam", loss="binary_crossentropy", metrics=["AUC"], monitor="AUC",
            reduce_lr_on_plateau=False, verbose=0, model_root=tmp,
        )
        kwargs.update(model_kwargs or {})
        model = DIN(feature_map, **kwargs)
        os.makedirs(model.model_dir, exist_ok=True)
        train_gen, valid_gen, test_gen = (loader("train", True), loader("valid", False),
                                          loader("test", False))
        epoch_seconds = []
        with _PeakRSS() as rss:
            for _ in range(epochs):
                t0 = time.perf_counter()
                model.fit(train_gen, epochs=1, validation_data=valid_gen)
                epoch_seconds.append(time.perf_counter() - t0)
            proba, predict_seconds = timed_predict(lambda: model.predict(test_gen))

    return _result(
        epoch_seconds,
        n_train,
        predict_seconds,
        n_test,
        proba,
        test["label"],
        rss.mb,
        n_threads,
        extra={"peer": "fuxictr", "n_items_table": len(item_info["item_index"]), "L": L},
    )


# --------------------------------------------------------------------------------------------------------
# torch-rechub's sequence builder
# --------------------------------------------------------------------------------------------------------
def time_rechub_create_seq_features(log_df, max_len=50, *, seed=0, return_output=False):
    """Seconds that ``torch_rechub.utils.data.create_seq_features`` takes on a raw log.

    ``log_df`` has columns user_id, item_id, time, cate_id. The function label-encodes every column of
    its input IN PLACE, so it gets a deep copy (the copy is not timed). With ``return_output=True`` returns
    ``(seconds, (train, val, test))``.
    """
    from torch_rechub.utils.data import create_seq_features

    df = log_df[["user_id", "item_id", "time", "cate_id"]].copy(deep=True)
    random.seed(seed)  # its negative sampling and shuffling use the `random` module
    np.random.seed(seed)  # noqa: NPY002 -- the peers draw from the global numpy RNG
    t0 = time.perf_counter()
    out = create_seq_features(df, seq_feature_col=["item_id", "cate_id"], max_len=max_len)
    seconds = time.perf_counter() - t0
    return (seconds, out) if return_output else seconds
