"""examples/serve.py: the FastAPI endpoint, through FastAPI's TestClient."""

import importlib.util
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from sklearn_din import score_candidates

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
with warnings.catch_warnings():  # starlette's notice that it prefers httpx2 to httpx
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "serve.py"


@pytest.fixture(scope="module")
def serve():
    spec = importlib.util.spec_from_file_location("example_serve", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fitted(serve):
    return serve.demo_model(small=True)


def _candidates(log, n=8):
    return log[["item_id", "cate_id"]].drop_duplicates("item_id").head(n)


def test_score_endpoint_returns_score_candidates(serve, fitted):
    model, log = fitted
    client = TestClient(serve.create_app(model))
    user = int(log["user_id"].iloc[0])
    candidates = _candidates(log)
    time = int(log["time"].median())
    answer = client.post("/score", json={"user": user, "time": time,
                                         "candidates": candidates.to_dict(orient="records")})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["user"] == user and body["model_ms"] > 0
    np.testing.assert_allclose(body["scores"], score_candidates(model, user, candidates,
                                                                time=time), rtol=0, atol=1e-12)
    # and the scores are predict_proba's on the same rows
    rows = candidates.assign(user_id=user, time=time)[["user_id", "item_id", "cate_id", "time"]]
    np.testing.assert_allclose(body["scores"], model.predict_proba(rows)[:, 1], atol=1e-6)


def test_clicks_endpoint_changes_the_next_score(serve):
    model, log = serve.demo_model(small=True, seed=1)
    client = TestClient(serve.create_app(model))
    user = int(log["user_id"].iloc[0])
    candidates = _candidates(log).to_dict(orient="records")
    before = client.post("/score", json={"user": user, "candidates": candidates}).json()
    n = client.get("/health").json()["behaviours"]
    click = {**candidates[0], "user_id": user, "time": int(log["time"].max()) + 1}
    assert client.post("/clicks", json={"clicks": [click]}).json() == {"behaviours": n + 1}
    after = client.post("/score", json={"user": user, "candidates": candidates}).json()
    assert np.abs(np.subtract(after["scores"], before["scores"])).max() > 1e-6
    # concurrent requests while clicks arrive: every answer is a valid one
    def request(k):
        if k % 4 == 0:
            return client.post("/clicks", json={"clicks": [{**click, "time": click["time"] + k}]})
        return client.post("/score", json={"user": user, "candidates": candidates})

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(request, range(24)))
    assert all(a.status_code == 200 for a in answers)
    assert client.get("/health").json()["behaviours"] == n + 1 + 6


def test_new_visitor_history_and_bad_requests(serve, fitted):
    model, log = fitted
    client = TestClient(serve.create_app(model))
    candidates = _candidates(log, 4)
    past = candidates.iloc[:2].assign(time=[1, 2])
    body = client.post("/score", json={"user": "new", "candidates": candidates.to_dict("records"),
                                       "history": past.to_dict("records")}).json()
    # Without a time in the request, the demo server scores just after its latest behaviour.
    store = model.steps[0][1].behaviour_store_
    now = store.time_grid[-1] + model.steps[0][1].recency_unit_
    np.testing.assert_allclose(body["scores"], score_candidates(
        model, "new", candidates, history=past, time=now), atol=1e-12)
    empty = client.post("/score", json={"user": "new", "history": [],
                                        "candidates": candidates.to_dict("records")})
    assert empty.status_code == 200
    bad = client.post("/score", json={"user": 1, "candidates": [{"item_id": 1}]})
    assert bad.status_code == 422 and "cate_id" in bad.json()["detail"]
    assert client.post("/score", json={"user": 1, "candidates": []}).status_code == 422
    late = client.post("/score", json={"user": 1, "time": "2024-01-01",
                                       "candidates": candidates.to_dict("records")})
    assert late.status_code == 422 and "numeric" in late.json()["detail"]


def test_main_check_runs_the_requests(serve, capsys):
    assert serve.main(["--small", "--check"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"POST /score user \d+, 5 candidates: \[", out)
    assert "changed by the click: True" in out
    assert "HTTP 422" in out
