"""save_model for whole workflows: scikit-learn's own steps saved with skops, no pickle."""

import json

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from sklearn_din import (
    DINClassifier,
    ModelFileError,
    SequenceFeatureTransformer,
    load_model,
    save_model,
    score_candidates,
)
from sklearn_din.datasets import make_interactions, sample_negatives

pytest.importorskip("skops")

SIZES = dict(embed_dim=4, attention_units=(8,), hidden_units=(8,), max_epochs=1, verbose=0,
             random_state=0)


@pytest.fixture(scope="module")
def workflow():
    """The pipeline of examples/tabular_workflow.py: frozen transformer, ColumnTransformer
    scaling a price (set_output pandas), DINClassifier."""
    log = make_interactions(n_users=80, n_items=60, random_state=2)
    log["price"] = (log["item_id"] % 11).astype(float) * 3.0 + 1.0
    rows = sample_negatives(log, item_attribute_cols=("cate_id", "price"), random_state=2)
    X, y = rows.drop(columns="label"), rows["label"]
    store = SequenceFeatureTransformer(max_len=6).fit(X, y)

    def on_price(transformer):
        return ColumnTransformer([("price", transformer, ["price"])], remainder="passthrough",
                                 verbose_feature_names_out=False).set_output(transform="pandas")

    model = Pipeline([("history", FrozenEstimator(store)),
                      ("log_price", on_price(FunctionTransformer(np.log1p))),
                      ("columns", on_price(StandardScaler())),
                      ("nothing", "passthrough"), ("din", DINClassifier(**SIZES))])
    return model.fit(X, y), X, y


def test_pipeline_with_scikit_learn_steps_round_trips_without_pickle(workflow, tmp_path):
    model, X, _ = workflow
    path = tmp_path / "workflow.npz"
    save_model(model, path)
    with np.load(path, allow_pickle=False) as npz:  # would raise on pickled content
        assert all(npz[key].dtype.kind != "O" for key in npz.files)
        meta = json.loads(str(npz["meta"]))
    assert [s["kind"] for s in meta["steps"]] == ["transformer", "sklearn", "sklearn",
                                                  "sklearn", "classifier"]
    loaded = load_model(path)
    assert [name for name, _ in loaded.steps] == [name for name, _ in model.steps]
    assert isinstance(loaded.steps[0][1], FrozenEstimator)
    assert isinstance(loaded.named_steps["columns"], ColumnTransformer)
    assert loaded.named_steps["nothing"] == "passthrough"
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    candidates = X[["item_id", "cate_id", "price"]].drop_duplicates().head(10)
    now = X["time"].max() + 1  # the recency feature needs the request's time
    np.testing.assert_array_equal(score_candidates(loaded, 3, candidates, time=now),
                                  score_candidates(model, 3, candidates, time=now))


def test_a_step_that_is_not_scikit_learns_is_named(workflow, tmp_path):
    model, X, y = workflow

    class MyScaler(StandardScaler):
        pass

    custom = Pipeline([*model.steps[:1], ("mine", MyScaler().fit(X[["price"]])),
                       model.steps[-1]])
    with pytest.raises(TypeError, match=r"cannot save step 'mine' \(MyScaler"):
        save_model(custom, tmp_path / "x.npz")
    lam = Pipeline([*model.steps[:1], ("func", FunctionTransformer(lambda d: d).fit(X)),
                    model.steps[-1]])
    with pytest.raises(TypeError, match=r"cannot save step 'func'.*lambda"):
        save_model(lam, tmp_path / "x.npz")
    calibrated = Pipeline([("calibrated", CalibratedClassifierCV(FrozenEstimator(model)).fit(
        X, y))])
    with pytest.raises(TypeError, match="cannot save step 'calibrated'"):
        save_model(calibrated, tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()


def test_a_file_whose_step_names_untrusted_types_is_refused(workflow, tmp_path):
    import skops.io

    model, *_ = workflow
    path = tmp_path / "workflow.npz"
    save_model(model, path)
    with np.load(path, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    # a skops payload of a type outside scikit-learn, put where the ColumnTransformer was
    evil = skops.io.dumps(FunctionTransformer(json.loads).fit([[0]]))
    assert skops.io.get_untrusted_types(data=evil)
    meta = json.loads(str(arrays["meta"]))
    ref = meta["steps"][1]["arrays"]["skops"]["array"]  # the header names the member and size
    arrays[ref["key"]] = np.frombuffer(evil, dtype=np.uint8)
    ref["shape"] = [len(evil)]
    # signed again, as a deliberate editor would: the skops check itself must refuse it
    from sklearn_din._model_file import _member_digest, content_digest

    digests = {k: _member_digest(k, v) for k, v in arrays.items() if k != "meta"}
    meta["digest"] = content_digest(meta, digests)
    arrays["meta"] = np.asarray(json.dumps(meta))
    tampered = tmp_path / "tampered.npz"
    with open(tampered, "wb") as f:
        np.savez(f, allow_pickle=False, **arrays)
    with pytest.raises(ModelFileError, match="json.loads"):
        load_model(tampered)
