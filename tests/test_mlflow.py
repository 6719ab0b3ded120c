"""The MLflow flavour: log to a local file store, load back as pyfunc and as the model."""

import numpy as np
import pytest
from sklearn.pipeline import make_pipeline

from sklearn_din import DINClassifier, SequenceFeatureTransformer
from sklearn_din.datasets import make_interactions, sample_negatives

mlflow = pytest.importorskip("mlflow")
import sklearn_din.mlflow  # noqa: E402


@pytest.fixture(scope="module")
def fitted():
    rows = sample_negatives(make_interactions(n_users=60, random_state=5), random_state=5)
    rows["user_id"] = "u" + rows["user_id"].astype(str)
    X, y = rows.drop(columns="label"), rows["label"].map({0: "no", 1: "yes"})
    model = make_pipeline(SequenceFeatureTransformer(max_len=8), DINClassifier(
        embed_dim=4, attention_units=(8,), hidden_units=(8,), max_epochs=1, verbose=0,
        random_state=0)).fit(X, y)
    return model, X


@pytest.fixture
def file_store(tmp_path, monkeypatch):
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    # MLflow 3 keeps the file store in maintenance mode behind this switch.
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri(uri)
    yield tmp_path
    mlflow.set_tracking_uri(None)


def test_logged_model_loads_as_pyfunc_and_as_the_pipeline(fitted, file_store):
    model, X = fitted
    expected = model.predict_proba(X)[:, 1]  # P("yes"): classes_ == ["no", "yes"]
    with mlflow.start_run():
        info = sklearn_din.mlflow.log_model(model, name="din", input_example=X.head(3))
    served = mlflow.pyfunc.load_model(info.model_uri)
    np.testing.assert_array_equal(np.asarray(served.predict(X)), expected)
    loaded = sklearn_din.mlflow.load_model(info.model_uri)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert list(loaded.classes_) == ["no", "yes"]
    assert served.metadata.signature is not None  # inferred from the input example


def test_the_model_directory_holds_no_pickle(fitted, tmp_path):
    model, X = fitted
    path = tmp_path / "din-model"
    sklearn_din.mlflow.save_model(model, path)
    files = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
    assert "data/model.npz" in files
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".joblib", ".cloudpickle"))]
    mlmodel = (path / "MLmodel").read_text()
    assert "loader_module: sklearn_din.mlflow" in mlmodel and "sklearn_din:" in mlmodel
    requirements = (path / "requirements.txt").read_text()
    assert f"sklearn-din=={sklearn_din.__version__}" in requirements
    np.testing.assert_array_equal(mlflow.pyfunc.load_model(str(path)).predict(X),
                                  model.predict_proba(X)[:, 1])


def test_load_model_refuses_other_flavours(tmp_path):
    path = tmp_path / "other"

    class Echo(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input

    mlflow.pyfunc.save_model(str(path), python_model=Echo())
    with pytest.raises(ValueError, match="not an sklearn-din MLflow model"):
        sklearn_din.mlflow.load_model(str(path))
