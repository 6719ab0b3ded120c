"""An HTTP endpoint that scores a visitor's candidate items with a fitted DIN pipeline.

FastAPI, three routes:

- ``POST /score``: ``{"user": ..., "candidates": [{"item_id": ..., "cate_id": ...}, ...],
  "time": optional, "history": optional list of past behaviours}`` returns one click
  probability per candidate, in order (``sklearn_din.score_candidates``: the user's
  history is looked up once per request, not once per candidate). ``history`` is for
  visitors the model has never seen: their past behaviours sent with the request.
- ``POST /clicks``: ``{"clicks": [{"user_id": ..., "item_id": ..., "cate_id": ...,
  "time": ...}, ...]}`` appends behaviours to the behaviour store
  (``SequenceFeatureTransformer.partial_fit``); the next ``/score`` sees them, no refit.
  FastAPI serves requests from a thread pool, so appends run while other requests are
  scored: safe, with one writer at a time (a lock here).
- ``GET /health``: the number of stored behaviours.

Bad requests (a missing candidate column, a time of the wrong kind) answer 422 with
the library's message.

Usage::

    pip install "sklearn-din[serve]" uvicorn
    python examples/serve.py --model din.npz          # a model saved with save_model
    python examples/serve.py                          # trains a small demo model first
    python examples/serve.py --small --check          # no server: a few requests through
                                                      # FastAPI's TestClient, then exit

    curl -s localhost:8000/score -H 'content-type: application/json' \\
         -d '{"user": 3, "candidates": [{"item_id": 5, "cate_id": 2}]}'
"""

import argparse
import threading
import time
from typing import Any

import pandas as pd
import torch
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field
from sklearn.pipeline import Pipeline, make_pipeline

from sklearn_din import DINClassifier, SequenceFeatureTransformer, load_model, score_candidates
from sklearn_din.datasets import make_interactions, sample_negatives

Scalar = int | float | str


class ScoreRequest(BaseModel):
    user: Scalar
    candidates: list[dict[str, Any]] = Field(min_length=1)
    time: Scalar | None = None
    history: list[dict[str, Any]] | None = None


class ScoreResponse(BaseModel):
    user: Scalar
    scores: list[float]
    model_ms: float


class ClicksRequest(BaseModel):
    clicks: list[dict[str, Any]] = Field(min_length=1)


def create_app(model: Pipeline) -> FastAPI:
    """The app around a fitted pipeline (SequenceFeatureTransformer ... DINClassifier)."""
    app = FastAPI(title="sklearn-din scoring")
    transformer = model.steps[0][1]
    transformer = getattr(transformer, "estimator", transformer)  # FrozenEstimator
    one_writer = threading.Lock()

    @app.post("/score", response_model=ScoreResponse)
    def score(request: ScoreRequest) -> ScoreResponse:
        candidates = pd.DataFrame.from_records(request.candidates)
        history = None
        if request.history is not None:  # an empty list: a visitor without behaviours
            history = (pd.DataFrame.from_records(request.history) if request.history
                       else pd.DataFrame(columns=[*transformer.history_cols, transformer.time_col]))
        # The recency feature needs the request's time. A live server would use its clock
        # in the log's unit; this demo's log is historical, so "now" is just after the
        # latest stored behaviour.
        now = request.time
        if now is None and getattr(transformer, "recency", False):
            now = transformer.behaviour_store_.time_grid[-1] + transformer.recency_unit_
        start = time.perf_counter()
        try:
            scores = score_candidates(model, request.user, candidates, time=now,
                                      history=history)
        except (ValueError, TypeError) as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        return ScoreResponse(user=request.user, scores=scores.tolist(),
                             model_ms=(time.perf_counter() - start) * 1e3)

    @app.post("/clicks")
    def clicks(request: ClicksRequest) -> dict:
        frame = pd.DataFrame.from_records(request.clicks)
        with one_writer:
            try:
                transformer.partial_fit(frame)
            except (ValueError, TypeError) as exc:
                raise HTTPException(status_code=422, detail=str(exc)) from None
            return {"behaviours": transformer.n_behaviours_}

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "behaviours": transformer.n_behaviours_}

    return app


def demo_model(small: bool, seed: int = 0) -> tuple[Pipeline, pd.DataFrame]:
    """A DIN pipeline fitted on a generated log, and that log."""
    sizes = dict(n_users=100, n_items=80, mean_events=10) if small else dict(n_users=2000)
    log = make_interactions(**sizes, random_state=seed)
    rows = sample_negatives(log, random_state=seed)
    classifier = DINClassifier(max_epochs=1 if small else 3, verbose=0, random_state=seed)
    if small:
        classifier.set_params(attention_units=(16,), hidden_units=(16,))
    model = make_pipeline(SequenceFeatureTransformer(max_len=20 if small else 50), classifier)
    return model.fit(rows.drop(columns="label"), rows["label"]), log


def check(app: FastAPI, log: pd.DataFrame) -> bool:
    """A few requests through FastAPI's TestClient; prints what they return."""
    import warnings

    with warnings.catch_warnings():  # starlette's notice that it prefers httpx2 to httpx
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    client = TestClient(app)
    user = int(log["user_id"].value_counts().index[0])
    items = log[["item_id", "cate_id"]].drop_duplicates("item_id").head(5)
    candidates = items.to_dict(orient="records")
    first = client.post("/score", json={"user": user, "candidates": candidates}).json()
    print(f"POST /score user {user}, {len(candidates)} candidates: "
          f"{[round(s, 4) for s in first['scores']]} ({first['model_ms']:.2f} ms)")
    later = int(log["time"].max()) + 1
    click = {**candidates[0], "user_id": user, "time": later}
    appended = client.post("/clicks", json={"clicks": [click]}).json()
    print(f"POST /clicks: {appended['behaviours']:,} behaviours stored")
    second = client.post("/score", json={"user": user, "candidates": candidates}).json()
    changed = first["scores"] != second["scores"]
    print(f"POST /score again: {[round(s, 4) for s in second['scores']]} "
          f"(changed by the click: {changed})")
    stranger = client.post("/score", json={
        "user": "someone-new", "candidates": candidates,
        "history": [{**candidates[1], "time": 1}, {**candidates[2], "time": 2}]}).json()
    print(f"POST /score for a new visitor with 2 past behaviours in the request: "
          f"{[round(s, 4) for s in stranger['scores']]}")
    bad = client.post("/score", json={"user": user, "candidates": [{"item_id": 1}]})
    print(f"POST /score without cate_id: HTTP {bad.status_code}: {bad.json()['detail']}")
    return changed and bad.status_code == 422


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serve a DIN pipeline over HTTP.")
    parser.add_argument("--model", metavar="PATH", default=None,
                        help="a pipeline saved with sklearn_din.save_model (default: train a "
                             "demo model)")
    parser.add_argument("--small", action="store_true", help="a tiny demo model (seconds)")
    parser.add_argument("--check", action="store_true",
                        help="send a few requests through the TestClient and exit")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per request (default 1: a server scores many "
                             "requests at once)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.model:
        model, log = load_model(args.model), None
    else:
        model, log = demo_model(args.small)
    app = create_app(model)
    if args.check:
        if log is None:
            raise SystemExit("--check needs the demo model (no --model)")
        return 0 if check(app, log) else 1
    import uvicorn

    uvicorn.run(app, host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
