"""Serving: ONNX and torch.export, exported tables, request-time scoring, online history."""

import copy
import json
import threading
from time import sleep

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.compose import ColumnTransformer
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_din import (
    DINClassifier,
    SequenceFeatureTransformer,
    export_onnx,
    export_program,
    export_tables,
    onnx_inputs,
    onnx_request_inputs,
    score_candidates,
)
from sklearn_din._behaviour_store import BehaviourStore
from sklearn_din.datasets import make_interactions, sample_negatives

MAX_LEN = 12
SIZES = dict(embed_dim=4, attention_units=(16, 8), hidden_units=(16,), max_epochs=2, lr=3e-3,
             batch_size=256, verbose=0, random_state=0)
# (activation, attention_normalization, pooling, options): the settings export and
# scoring read from the fitted network; "recency" is the transformer's (hist_gap_<k>).
SETTINGS = [("dice", None, "attention", "user_embedding"),
            ("prelu", "softmax", "attention", "recency"),
            ("dice", "softmax", "sum", ""),
            ("prelu", "mean", "attention", "user_embedding+recency"),
            ("dice", None, "mean", ""),
            ("dice", "softmax", "attention", "recency+sink")]


def _name(setting):
    return "-".join(str(s) for s in setting if s)


@pytest.fixture(scope="module")
def log():
    clicks = make_interactions(n_users=150, n_items=120, n_categories=10, mean_events=14,
                               random_state=3)
    # a per-item price (passed through as a dense feature) and a context id
    clicks["price"] = (clicks["item_id"] % 17).astype(float) + 0.5
    clicks["device"] = clicks["time"] % 3 + 2
    return clicks


@pytest.fixture(scope="module")
def rows(log):
    out = sample_negatives(log, item_attribute_cols=("cate_id", "price"), random_state=3)
    return out.drop(columns="device")


def _fit(rows, activation="dice", normalization=None, pooling="attention", options="",
         categorical=(), user_col="user_id", **kwargs):
    X, y = rows.drop(columns="label"), rows["label"]
    model = make_pipeline(
        SequenceFeatureTransformer(max_len=MAX_LEN, recency="recency" in options,
                                   categorical_cols=categorical, user_col=user_col),
        DINClassifier(**SIZES, activation=activation, attention_normalization=normalization,
                      pooling=pooling, user_embedding="user_embedding" in options,
                      attention_sink="sink" in options, **kwargs),
    )
    return model.fit(X, y)


@pytest.fixture(scope="module")
def models(rows):
    return {setting: _fit(rows, *setting) for setting in SETTINGS}


@pytest.fixture(scope="module")
def X(rows):
    return rows.drop(columns="label")


def _session(path):
    ort = pytest.importorskip("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options)


def _trimmed(inputs):
    longest = max(int(inputs["history_length"].max()), 1)
    return {**inputs, "history": np.ascontiguousarray(inputs["history"][:, :, :longest])}


# ------------------------------------------------------------------ ONNX, torch.export
@pytest.mark.parametrize("setting", SETTINGS, ids=_name)
def test_onnxruntime_probabilities_equal_predict_proba(models, X, tmp_path, setting):
    pytest.importorskip("onnxscript")
    model = models[setting]
    session = _session(export_onnx(model, tmp_path / "din.onnx"))
    expected = model.predict_proba(X)[:, 1]
    inputs = onnx_inputs(model, X)
    assert (inputs["history_length"] == 0).any() and (inputs["history_length"] == MAX_LEN).any()
    probability, logit = session.run(None, inputs)
    np.testing.assert_allclose(probability, expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(logit, model.decision_function(X), rtol=1e-5, atol=1e-4)
    # dynamic batch and history length: 7 rows, history cut to their longest real history
    short = np.flatnonzero(inputs["history_length"] <= 5)[:7]
    cut = _trimmed(onnx_inputs(model, X.iloc[short]))
    assert cut["history"].shape[2] < MAX_LEN
    np.testing.assert_allclose(session.run(["probability"], cut)[0], expected[short],
                               rtol=0, atol=1e-5)


def test_onnx_metadata_names_classes_and_columns(models, tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    model = models[SETTINGS[0]]
    path = export_onnx(model, tmp_path / "din.onnx")
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    meta = json.loads(props["sklearn_din"])
    assert meta["classes"] == [0, 1]
    assert meta["inputs"]["candidate"]["columns"] == ["item_id", "cate_id"]
    assert meta["inputs"]["sparse"]["columns"] == ["user_id"]
    assert meta["inputs"]["dense"]["columns"] == ["price"]
    assert meta["inputs"]["history"]["max_len"] == MAX_LEN


def test_onnx_through_a_column_transformer(rows, tmp_path):
    pytest.importorskip("onnxscript")
    X, y = rows.drop(columns="label"), rows["label"]
    store = SequenceFeatureTransformer(max_len=MAX_LEN).fit(X, y)
    columns = ColumnTransformer([("price", StandardScaler(), ["price"])], remainder="passthrough",
                                verbose_feature_names_out=False).set_output(transform="pandas")
    model = Pipeline([("history", FrozenEstimator(store)), ("columns", columns),
                      ("din", DINClassifier(**SIZES))]).fit(X, y)
    session = _session(export_onnx(model, tmp_path / "din.onnx"))
    probability, _ = session.run(None, onnx_inputs(model, X))
    np.testing.assert_allclose(probability, model.predict_proba(X)[:, 1], rtol=0, atol=1e-5)


def test_torch_export_program_equals_predict_proba(models, X, tmp_path):
    model = models[SETTINGS[1]]
    program = export_program(model, tmp_path / "din.pt2")
    inputs = {k: torch.from_numpy(v) for k, v in _trimmed(onnx_inputs(model, X)).items()}
    expected = model.predict_proba(X)[:, 1]
    probability, _ = program.module()(**inputs)
    np.testing.assert_allclose(probability.numpy(), expected, rtol=0, atol=1e-5)
    loaded = torch.export.load(tmp_path / "din.pt2")  # another process needs only torch
    np.testing.assert_allclose(loaded.module()(**inputs)[0].numpy(), expected, rtol=0, atol=1e-5)


def _visitor_requests(X):
    """(user, time, history) of requests with every history length the graph must take:
    0 (an unseen user: one padding position), 1, some, and the full max_len."""
    user = _busiest_user(X)
    times = np.sort(X.loc[X["user_id"] == user, "time"].unique())
    past = X[X["user_id"] == user][["item_id", "cate_id", "time", "price"]].head(3)
    return [(user, times[1], None), (user, times[len(times) // 2], None),
            (user, X["time"].max() + 7, None), (-5, X["time"].max() + 7, None),
            (-6, X["time"].max() + 7, past)]


@pytest.mark.filterwarnings("ignore::sklearn_din.UnknownUsersWarning")
@pytest.mark.parametrize("setting", SETTINGS, ids=_name)
def test_onnx_shared_history_graph_equals_score_candidates(models, X, tmp_path, setting):
    """export_onnx(shared_history=True): one visitor's request, history given once; any
    number of candidates and of history positions."""
    pytest.importorskip("onnxscript")
    model = models[setting]
    session = _session(export_onnx(model, tmp_path / "request.onnx", shared_history=True))
    candidates = _candidates(X)
    lengths = set()
    for user, time, history in _visitor_requests(X):
        for chosen in (candidates, candidates.head(1)):
            inputs = onnx_request_inputs(model, user, chosen, time=time, history=history)
            lengths.add(inputs["history"].shape[1] if inputs["history"].any() else 0)
            probability, logit = session.run(None, inputs)
            expected = score_candidates(model, user, chosen, time=time, history=history)
            assert probability.shape == (len(chosen),)
            np.testing.assert_allclose(probability, expected, rtol=0, atol=1e-5)
            np.testing.assert_allclose(logit, np.log(expected / (1 - expected)), rtol=1e-5,
                                       atol=1e-4)
    assert {0, 1, MAX_LEN} <= lengths and len(lengths) >= 4


def test_torch_export_program_of_the_shared_history_graph(models, X):
    model = models[SETTINGS[3]]  # recency and a user embedding
    program = export_program(model, shared_history=True).module()
    candidates = _candidates(X, 25)
    for user, time, history in _visitor_requests(X):
        inputs = onnx_request_inputs(model, user, candidates, time=time, history=history)
        probability, _ = program(**{k: torch.from_numpy(v) for k, v in inputs.items()})
        np.testing.assert_allclose(
            probability.numpy(), score_candidates(model, user, candidates, time=time,
                                                  history=history), rtol=0, atol=1e-5)


@pytest.mark.filterwarnings("ignore::sklearn_din.UnknownUsersWarning")
def test_exports_and_request_scoring_carry_the_length_scale(models, X, tmp_path):
    """The learnt scale per history-length bucket (a default) enters every exported graph
    and request-time scoring: set far from 1, where a path that dropped it would show."""
    pytest.importorskip("onnxscript")
    model = copy.deepcopy(models[SETTINGS[1]])  # softmax attention
    network = model[-1].module_
    torch.manual_seed(0)
    with torch.no_grad():
        # Weights far from a 2-epoch fit's, whose output barely reads the history.
        for parameter in network.parameters():
            parameter.normal_(std=0.4)
        for table in network.embedding_tables():
            table.weight[0].zero_()  # padding embeds to 0, as training keeps it
        network.length_log_scale.zero_()
        unscaled = model.predict_proba(X)[:, 1]
        network.length_log_scale.copy_(torch.linspace(-1.5, 1.0, 6))
    expected = model.predict_proba(X)[:, 1]
    assert np.abs(expected - unscaled).max() > 1e-3
    batch = _session(export_onnx(model, tmp_path / "din.onnx"))
    np.testing.assert_allclose(batch.run(["probability"], onnx_inputs(model, X))[0], expected,
                               rtol=0, atol=1e-5)
    request = _session(export_onnx(model, tmp_path / "request.onnx", shared_history=True))
    candidates = _candidates(X)
    for user, time, history in _visitor_requests(X):
        inputs = onnx_request_inputs(model, user, candidates, time=time, history=history)
        scored = score_candidates(model, user, candidates, time=time, history=history)
        np.testing.assert_allclose(request.run(["probability"], inputs)[0], scored, rtol=0,
                                   atol=1e-5)
        rows = candidates.assign(user_id=user, time=time)
        if history is None:  # the same rows through predict_proba
            np.testing.assert_allclose(scored, model.predict_proba(rows[X.columns])[:, 1],
                                       rtol=0, atol=1e-5)


def test_onnx_shared_history_metadata_and_refusals(models, rows, tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    from sklearn.preprocessing import FunctionTransformer

    model = models[SETTINGS[0]]
    path = export_onnx(model, tmp_path / "request.onnx", shared_history=True)
    meta = json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}
                      ["sklearn_din"])
    assert meta["graph"] == "shared_history" and "history_length" not in meta["inputs"]
    assert [i.name for i in onnx.load(str(path)).graph.input] == [
        "candidate", "history", "sparse", "dense"]
    X = rows.drop(columns="label")
    with pytest.raises(ValueError, match="onnx_request_inputs: candidates is empty"):
        onnx_request_inputs(model, 3, _candidates(X).head(0), time=10**9)
    with pytest.raises(ValueError, match="onnx_request_inputs: candidates has column"):
        onnx_request_inputs(model, 3, _candidates(X).assign(user_id=3), time=10**9)
    # a step that gives each candidate its own history: no shared history to export
    store = SequenceFeatureTransformer(max_len=MAX_LEN).fit(X, rows["label"])
    candidate_first = FunctionTransformer(lambda d: d.assign(hist_item_id_0=d["item_id"]))
    rewritten = Pipeline([("history", FrozenEstimator(store)), ("rewrite", candidate_first),
                          ("din", DINClassifier(**SIZES))]).fit(X, rows["label"])
    with pytest.raises(ValueError, match="different histories.*rows graph"):
        onnx_request_inputs(rewritten, _busiest_user(X), _candidates(X), time=10**9)


def test_export_refuses_what_is_not_a_din_model(rows):
    with pytest.raises(TypeError, match="must be a DINClassifier or a Pipeline"):
        export_program(StandardScaler().fit(rows[["price"]]))


# ------------------------------------------------------------------ exported tables
def _read(directory, entry):
    """A reader as a server in another language would write it: JSON + raw bytes."""
    if entry["file"].endswith(".json"):
        return json.loads((directory / entry["file"]).read_text(encoding="utf-8"))
    raw = np.fromfile(directory / entry["file"], dtype=np.dtype(entry["dtype"]))
    return raw.reshape(entry["shape"])


def _encode_without_sklearn_din(directory, requests):
    """Model inputs for raw request rows from the exported files alone."""
    manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
    codes = manifest["codes"]
    cols, clf = manifest["columns"], manifest["classifier"]["inputs"]
    lookup = {col: {value: i + codes["first_known"] for i, value in
                    enumerate(_read(directory, entry).tolist()
                              if not isinstance(_read(directory, entry), list)
                              else _read(directory, entry))}
              for col, entry in manifest["vocabularies"].items()}
    store = manifest["behaviours"]
    offsets = _read(directory, store["user_offsets"])
    times, behaviours = _read(directory, store["times"]), _read(directory, store["codes"])
    n_features, max_len = len(cols["history"]), manifest["max_len"]
    times = times.astype(np.float64)
    out = {"candidate": [], "history": [], "history_length": [], "sparse": [], "dense": []}
    for _, request in requests.iterrows():
        user = lookup[cols["user"]].get(request[cols["user"]], codes["unknown"])
        start, stop = (offsets[user], offsets[user + 1]) if user < len(offsets) - 1 else (0, 0)
        # strictly earlier behaviours: the stored ones are sorted by time within a user
        stop = start + int(np.searchsorted(times[start:stop], request[cols["time"]], "left"))
        first = max(start, stop - max_len)
        history = np.zeros((n_features, max_len), dtype=np.int64)
        history[:, : stop - first] = behaviours[:, first:stop][:, ::-1]
        features = list(cols["history"])
        recency = manifest["recency"]
        if recency is not None:  # the bucket of each behaviour's gap to the request
            gaps = request[cols["time"]] - times[first:stop][::-1]
            octave = np.floor(np.log2(np.maximum(gaps, recency["unit"]) / recency["unit"]))
            bucket = np.zeros((1, max_len), dtype=np.int64)
            bucket[0, : stop - first] = 2 + np.minimum(recency["octaves"] - 1, octave)
            history, features = np.vstack([history, bucket]), [*features, recency["feature"]]
        # every encoded column, by the name the classifier's inputs use
        encoded = {out: user if col == cols["user"] else lookup[col].get(request[col],
                                                                          codes["unknown"])
                   for out, col in cols["encoded_as"].items()}

        def fit(code, size):
            return code if code < size else codes["unknown"]

        sizes = clf["history"]["table_sizes"]
        out["candidate"].append([fit(encoded[c], s) for c, s in
                                 zip(clf["candidate"]["columns"],
                                     clf["candidate"]["table_sizes"], strict=True)])
        order = [features.index(f) for f in clf["history"]["features"]]
        out["history"].append(np.vectorize(fit)(history[order], np.asarray(sizes)[:, None]))
        out["history_length"].append(stop - first)
        out["sparse"].append([fit(encoded[c], s) for c, s in
                              zip(clf["sparse"]["columns"], clf["sparse"]["table_sizes"],
                                  strict=True)])
        out["dense"].append([request[c] for c in clf["dense"]["columns"]])
    dtypes = {"dense": np.float32}
    return {k: np.asarray(v, dtype=dtypes.get(k, np.int64)) for k, v in out.items()}


@pytest.mark.parametrize("user_kind", ["int", "str"])
def test_exported_tables_rebuild_the_inputs_without_sklearn_din(rows, tmp_path, user_kind):
    pytest.importorskip("onnxscript")
    rows = rows.copy()
    if user_kind == "str":
        rows["user_id"] = "u" + rows["user_id"].astype(str)
        rows["item_id"] = "i" + rows["item_id"].astype(str)
    # with ints: recency buckets, a user embedding and a context id (the transformer's
    # categorical_cols); with strings: none of them
    if user_kind == "int":
        rows = rows.assign(device=rows["time"] % 3)
    model = _fit(rows, options="recency+user_embedding" if user_kind == "int" else "",
                 categorical=("device",) if user_kind == "int" else ())
    transformer = model[0]
    # an online click after fit: the exported store holds it, the vocabulary grew
    new = rows.iloc[[5]].drop(columns="label").assign(item_id=rows["item_id"].iloc[0] * 1,
                                                      time=rows["time"].max() + 1)
    transformer.partial_fit(new.assign(user_id=rows["user_id"].iloc[3]))
    transformer.partial_fit(new.assign(user_id="brand-new" if user_kind == "str" else 10**6))
    manifest = export_tables(model, tmp_path)
    assert manifest["behaviours"]["n"] == transformer.n_behaviours_
    requests = rows.drop(columns="label").sample(80, random_state=0)
    requests = pd.concat([requests, new.assign(user_id="nobody" if user_kind == "str" else -5,
                                               time=rows["time"].max() + 2)])
    inputs = _encode_without_sklearn_din(tmp_path, requests)
    expected = onnx_inputs(model, requests)
    for name in expected:
        np.testing.assert_array_equal(inputs[name], expected[name], err_msg=name)
    session = _session(export_onnx(model, tmp_path / "din.onnx"))
    np.testing.assert_allclose(session.run(["probability"], inputs)[0],
                               model.predict_proba(requests)[:, 1], rtol=0, atol=1e-5)


def test_exported_tables_refuse_values_without_a_plain_type(rows, tmp_path):
    X = rows.drop(columns="label").assign(item_id=lambda d: d["item_id"].astype(object))
    X.loc[X.index[0], "item_id"] = (1, 2)
    transformer = SequenceFeatureTransformer().fit(X)
    with pytest.raises(TypeError, match="vocabulary of column 'item_id'"):
        export_tables(transformer, tmp_path)


# ------------------------------------------------------------------ score_candidates
def _requests(X, user, candidates, time):
    return candidates.assign(user_id=user, time=time)[X.columns]


def _candidates(X, n=60, seed=0):
    items = X[["item_id", "cate_id", "price"]].drop_duplicates("item_id")
    return items.sample(min(n, len(items)), random_state=seed).reset_index(drop=True)


def _busiest_user(X):
    return X["user_id"].value_counts().index[0]


@pytest.mark.parametrize("setting", SETTINGS, ids=_name)
def test_score_candidates_equals_predict_proba(models, X, setting):
    model = models[setting]
    user, candidates = _busiest_user(X), _candidates(X)
    user_times = np.sort(X.loc[X["user_id"] == user, "time"].unique())
    if model[0].recency:  # the gaps to the history depend on the request's time
        with pytest.raises(ValueError, match="pass time="):
            score_candidates(model, user, candidates)
    for time in ([] if model[0].recency else [None]) + [user_times[len(user_times) // 2],
                                                        user_times[0], X["time"].max() + 7]:
        request_time = X["time"].max() + 1 if time is None else time
        expected = model.predict_proba(_requests(X, user, candidates, request_time))[:, 1]
        got = score_candidates(model, user, candidates, time=time)
        assert got.dtype == np.float64 and got.shape == (len(candidates),)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


@pytest.mark.filterwarnings("ignore::sklearn_din.UnknownUsersWarning")
def test_score_candidates_for_unseen_users_items_and_request_histories(models, X):
    model = models[SETTINGS[3]]  # recency: the request history's times make the gaps
    candidates = pd.concat([_candidates(X, 20),
                            pd.DataFrame({"item_id": [10**7], "cate_id": [10**7],
                                          "price": [3.0]})], ignore_index=True)
    time = X["time"].max() + 10
    # unseen user, no history: an empty history, like transform gives it
    np.testing.assert_allclose(
        score_candidates(model, -2, candidates, time=time),
        model.predict_proba(_requests(X, -2, candidates, time))[:, 1], atol=1e-6)
    # a user id of another type than in fit is refused, not taken for an unseen user
    with pytest.raises(TypeError, match="'user_id' holds strings but numbers"):
        score_candidates(model, "stranger", candidates, time=time)
    # unseen user with behaviours sent in the request (times given, one of them later
    # than the request: dropped; one unknown item): as if the transformer had stored them
    past = X[X["user_id"] == _busiest_user(X)][["item_id", "cate_id", "time", "price"]]
    past = pd.concat([past, pd.DataFrame({"item_id": [10**8], "cate_id": [3], "price": [1.0],
                                          "time": [time - 1]})])
    past = pd.concat([past, past.iloc[[0]].assign(time=time + 5)]).sample(frac=1, random_state=0)
    stored = copy.deepcopy(model)
    stored[0].partial_fit(past.assign(user_id=-1)[X.columns])
    expected = stored.predict_proba(_requests(X, -1, candidates, time))[:, 1]
    got = score_candidates(model, -1, candidates, time=time, history=past)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="recency.*add the 'time' column"):
        score_candidates(model, -1, candidates, time=time, history=past.drop(columns="time"))
    # without a time column the rows are taken in order, the last one most recent
    plain = models[SETTINGS[2]]
    stored = copy.deepcopy(plain)
    stored[0].partial_fit(past.assign(user_id=-1)[X.columns])
    ordered = past[past["time"] < time].sort_values("time", kind="stable")
    np.testing.assert_allclose(
        score_candidates(plain, -1, candidates, time=time, history=ordered.drop(columns="time")),
        stored.predict_proba(_requests(X, -1, candidates, time))[:, 1], rtol=0, atol=1e-6)


def test_score_candidates_with_a_context_id_and_a_column_transformer(log, tmp_path):
    rows = sample_negatives(log, item_attribute_cols=("cate_id", "price"), random_state=4)
    X, y = rows.drop(columns="label"), rows["label"]
    store = SequenceFeatureTransformer(max_len=MAX_LEN).fit(X, y)
    columns = ColumnTransformer([("price", StandardScaler(), ["price"])], remainder="passthrough",
                                verbose_feature_names_out=False).set_output(transform="pandas")
    din = DINClassifier(**SIZES, categorical_cols=("device",))
    model = Pipeline([("history", FrozenEstimator(store)), ("columns", columns),
                      ("din", din)]).fit(X, y)
    user = _busiest_user(X)
    candidates = _candidates(X).assign(device=[2, 3, 4] * 20)
    time = X["time"].max() + 1
    np.testing.assert_allclose(score_candidates(model, user, candidates, time=time),
                               model.predict_proba(_requests(X, user, candidates, time))[:, 1],
                               rtol=0, atol=1e-6)
    # the same without the ColumnTransformer (direct path), context id included
    direct = make_pipeline(FrozenEstimator(store), DINClassifier(
        **SIZES, categorical_cols=("device",))).fit(X, y)
    np.testing.assert_allclose(score_candidates(direct, user, candidates, time=time),
                               direct.predict_proba(_requests(X, user, candidates, time))[:, 1],
                               rtol=0, atol=1e-6)


def test_score_candidates_when_a_step_rewrites_the_histories(rows):
    """A step between transformer and classifier that makes the rows' histories differ:
    the rows are then scored one by one, still equal to predict_proba."""
    from sklearn.preprocessing import FunctionTransformer

    X, y = rows.drop(columns="label"), rows["label"]
    store = SequenceFeatureTransformer(max_len=MAX_LEN).fit(X, y)
    candidate_first = FunctionTransformer(lambda d: d.assign(hist_item_id_0=d["item_id"]))
    model = Pipeline([("history", FrozenEstimator(store)), ("rewrite", candidate_first),
                      ("din", DINClassifier(**SIZES))]).fit(X, y)
    user, candidates = _busiest_user(X), _candidates(X, 30)
    time = X["time"].max() + 1
    np.testing.assert_allclose(score_candidates(model, user, candidates, time=time),
                               model.predict_proba(_requests(X, user, candidates, time))[:, 1],
                               rtol=0, atol=1e-6)


def test_score_candidates_with_the_transformers_context_ids_and_another_user_column(rows):
    """The transformer's categorical_cols (written as ctx_<col>) and a user column not
    called user_id (written as user_id): the request is encoded as transform would."""
    rows = rows.rename(columns={"user_id": "visitor"}).assign(device=rows["time"] % 4)
    model = _fit(rows, "prelu", "softmax", "attention", options="recency+user_embedding",
                 categorical=("device",), user_col="visitor")
    X = rows.drop(columns="label")
    assert "ctx_device" in model[-1].layout_.sparse_cols
    visitor = X["visitor"].value_counts().index[0]
    candidates = _candidates(X, 30).assign(device=[0, 1, 2, 3, 9] * 6)  # 9: never seen
    time = X["time"].max() + 3
    requests = candidates.assign(visitor=visitor, time=time)[X.columns]
    np.testing.assert_allclose(score_candidates(model, visitor, candidates, time=time),
                               model.predict_proba(requests)[:, 1], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match=r"\['device'\] not found"):
        score_candidates(model, visitor, candidates.drop(columns="device"), time=time)


def test_score_candidates_says_what_is_wrong(models, X):
    model = models[SETTINGS[0]]
    candidates = _candidates(X, 5)
    with pytest.raises(ValueError, match=r"candidates.*\['price'\] not found"):
        score_candidates(model, 3, candidates.drop(columns="price"))
    with pytest.raises(ValueError, match="pass the user and the time"):
        score_candidates(model, 3, candidates.assign(user_id=3))
    with pytest.raises(TypeError, match="starts with a SequenceFeatureTransformer"):
        score_candidates(model[-1], 3, candidates)
    with pytest.raises(TypeError, match="datetime values but numeric values"):
        score_candidates(model, 3, candidates, time=pd.Timestamp("2024-01-01"))
    with pytest.raises(ValueError, match="numeric column 'price' has NaN"):
        score_candidates(model, 3, candidates.assign(price=np.nan))
    with pytest.raises(ValueError, match=r"history.*\['cate_id'\] not found"):
        score_candidates(model, 3, candidates, history=candidates[["item_id"]])
    assert score_candidates(model, 3, candidates.iloc[:0]).shape == (0,)


# ------------------------------------------------------------------ online history
def test_clicks_appended_with_partial_fit_are_seen_by_the_next_call(rows):
    model = _fit(rows)
    X = rows.drop(columns="label")
    user, candidates = _busiest_user(X), _candidates(X, 30)
    before = score_candidates(model, user, candidates)
    later = X["time"].max() + 1
    clicks = candidates.iloc[:3].assign(user_id=user, time=[later, later + 1, later + 2])
    model[0].partial_fit(clicks[X.columns])
    after = score_candidates(model, user, candidates)
    assert np.abs(after - before).max() > 1e-4
    np.testing.assert_allclose(
        after, model.predict_proba(_requests(X, user, candidates, later + 3))[:, 1], atol=1e-6)


def test_appending_while_other_threads_score(rows):
    """One writer appends clicks one at a time; readers score meanwhile. Every score a
    reader gets is the model's score after some prefix of the appends."""
    X = rows.drop(columns="label")
    user, candidates = _busiest_user(X), _candidates(X, 40)
    start = X["time"].max() + 1
    clicks = [candidates.iloc[[k % 7]].assign(user_id=user, time=start + k)[X.columns]
              for k in range(12)]
    clicks[5] = clicks[5].assign(item_id=10**6)  # a new item: the vocabulary grows too
    base = _fit(rows)
    snapshots, replay = [], copy.deepcopy(base)
    snapshots.append(score_candidates(replay, user, candidates))
    for click in clicks:
        replay[0].partial_fit(click)
        snapshots.append(score_candidates(replay, user, candidates))
    snapshots = np.stack(snapshots)

    model, errors, seen = base, [], []
    done = threading.Event()

    def read():
        try:
            while not done.is_set():
                got = score_candidates(model, user, candidates)
                match = np.abs(snapshots - got).max(axis=1) < 1e-6
                seen.append(int(np.argmax(match)) if match.any() else -1)
        except Exception as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for thread in readers:
        thread.start()
    for click in clicks:
        model[0].partial_fit(click)
        sleep(0.005)  # let the readers score between appends
    done.set()
    for thread in readers:
        thread.join()
    assert not errors, errors
    assert seen and min(seen) >= 0, "a reader saw a score of no state of the store"
    np.testing.assert_allclose(score_candidates(model, user, candidates), snapshots[-1],
                               atol=1e-6)


def test_one_user_look_up_equals_the_batch_look_up_after_appends():
    rng = np.random.default_rng(0)

    def part(n, float_times=False):
        times = rng.integers(0, 30, n)
        return (rng.integers(2, 12, n), times.astype(float) if float_times else times,
                rng.integers(2, 100, (n, 2)).astype(np.int32))

    store = BehaviourStore.from_arrays(*part(300))
    _ = store.keys  # sorted; later parts are appended behind the sorted ones
    stores = [store]
    for k in range(6):
        stores.append(stores[-1].extend(*part(int(rng.integers(0, 20)), float_times=k == 3)))
        if k == 2:
            _ = stores[-1].keys
    queries = [(u, t) for u in range(13) for t in (None, 0, 5, 15.5, 29, 31)]
    one_by_one = [[s.user_history(u, t, 7) for u, t in queries] for s in stores]
    assert stores[-1]._parts, "the last store must still have appended, unsorted parts"
    for store, got in zip(stores, one_by_one, strict=True):
        users = np.array([u for u, _ in queries])
        times = np.array([np.inf if t is None else t for _, t in queries])
        codes, lengths = store.histories(users, times, 7)
        for i, history in enumerate(got):
            np.testing.assert_array_equal(history, codes[i][:, : lengths[i]])


def test_request_encoding_equals_the_transformers():
    """The serving encoder (binary search for numbers, hash look-up otherwise) gives the
    transformer's codes, also for vocabularies grown out of order by partial_fit."""
    from sklearn_din._scoring import _Vocabulary
    from sklearn_din._transformer import _codes

    vocabularies = [np.array([5, 3, 9, 100, 2**40]), np.array([1.5, -2.0, 7.0]),
                    np.array([2**63 + 5, 7], dtype=np.uint64), np.array(["b", "a"], dtype=object)]
    requests = [np.array([4, 9, 2**40, -1, 5]), np.array([1.5, 9.0, 5.0]),
                np.array([7, 2**63 + 5], dtype=np.uint64), np.array(["a", "z"], dtype=object)]
    for vocab in vocabularies:
        encoder = _Vocabulary(vocab)
        for values in requests:
            np.testing.assert_array_equal(encoder.codes(values),
                                          _codes(pd.Index(vocab), pd.Series(values)))
