"""scikit-learn's repr conventions; warnings at the user's line; messages through logging."""

from __future__ import annotations

import logging
import re
import warnings

import numpy as np
import pytest
from sklearn.model_selection import cross_validate
from sklearn.pipeline import make_pipeline

from sklearn_din import (
    DINClassifier,
    NoHistoryWarning,
    SequenceFeatureTransformer,
    UnknownUsersWarning,
    fit_stream,
)

SMALL = dict(embed_dim=4, attention_units=(8,), hidden_units=(8,), max_epochs=1, batch_size=128,
             verbose=0, random_state=0)


# ------------------------------------------------------------------ repr
def user_set_rows(html: str) -> list[str]:
    """Names of the parameters the HTML repr marks as set by the user."""
    rows = re.finditer(r'<tr class="([^"]*)">(.*?)</tr>', html, re.S)
    return [re.sub(r"<[^>]+>", " ", m[2]).split()[0] for m in rows if "user-set" in m[1]]


def test_text_repr_shows_only_changed_parameters():
    assert repr(DINClassifier()) == "DINClassifier()"
    assert repr(DINClassifier(embed_dim=32, lr=0.01)) == "DINClassifier(embed_dim=32, lr=0.01)"
    assert repr(DINClassifier(warm_start=True, optimizer__weight_decay=0.1)) == (
        "DINClassifier(optimizer__weight_decay=0.1, warm_start=True)")
    pipe = make_pipeline(SequenceFeatureTransformer(max_len=10), DINClassifier(embed_dim=32))
    assert " ".join(repr(pipe).split()) == (
        "Pipeline(steps=[('sequencefeaturetransformer', SequenceFeatureTransformer(max_len=10)), "
        "('dinclassifier', DINClassifier(embed_dim=32))])")


def test_repr_is_the_same_after_fit(tiny_log):
    X, y = tiny_log
    model = make_pipeline(SequenceFeatureTransformer(max_len=4), DINClassifier(**SMALL))
    before = repr(model)
    assert before == repr(model.fit(X, y))
    assert "uninitialized" not in before and "initialized" not in before


def test_html_repr_marks_only_the_parameters_set():
    assert user_set_rows(DINClassifier(embed_dim=32)._repr_html_()) == ["embed_dim"]
    pipe = make_pipeline(SequenceFeatureTransformer(), DINClassifier(embed_dim=32, lr=0.01))
    html = pipe._repr_html_()
    assert user_set_rows(html) == ["steps", "embed_dim", "lr"]
    assert "callbacks__print_log" not in html  # skorch's callback internals stay out


# ------------------------------------------------------------------ warnings
def warning_at(record, category):
    [found] = [w for w in record if issubclass(w.category, category)]
    return found.filename, found.lineno


def test_classifier_warnings_point_at_the_users_line(tiny_log):
    X, y = tiny_log
    features = SequenceFeatureTransformer(max_len=4).fit_transform(X, y)
    ids = features[["user_id", "item_id"]]
    with pytest.warns(NoHistoryWarning) as record:
        line = _line() + 1  # the next line's
        DINClassifier(**SMALL).fit(ids, y)
    assert warning_at(record, NoHistoryWarning) == (__file__, line)
    with pytest.warns(UserWarning, match="user_col 'visitor'") as record:
        line = _line() + 1  # the next line's
        DINClassifier(**SMALL, user_col="visitor").fit(features, y)
    assert {(w.filename, w.lineno) for w in record} == {(__file__, line)}
    with pytest.warns(NoHistoryWarning) as record:
        line = _line() + 1  # the next line's
        DINClassifier(**SMALL).fit(ids.to_numpy(), y)
    assert warning_at(record, NoHistoryWarning) == (__file__, line)


def test_warnings_inside_a_pipeline_and_cross_validate_point_at_the_users_line(tiny_log):
    X, y = tiny_log
    pipe = make_pipeline(SequenceFeatureTransformer(max_len=4, history_cols=("item_id",)),
                         DINClassifier(**SMALL, user_col="visitor"))
    with pytest.warns(UserWarning, match="visitor") as record:
        line = _line() + 1  # the next line's
        pipe.fit(X, y)
    assert {(w.filename, w.lineno) for w in record} == {(__file__, line)}
    with pytest.warns(UserWarning, match="visitor") as record:
        line = _line() + 1  # the next line's
        cross_validate(pipe, X, y, cv=2)
    assert {(w.filename, w.lineno) for w in record if "visitor" in str(w.message)} == {
        (__file__, line)}


def test_transformer_warning_points_at_the_users_line_through_set_output(tiny_log):
    X, y = tiny_log
    users = X["user_id"].to_numpy()
    t = SequenceFeatureTransformer(max_len=4).set_output(transform="pandas")
    t.fit(X[users < 10])
    with pytest.warns(UnknownUsersWarning) as record:
        line = _line() + 1  # the next line's
        t.transform(X[users >= 10])
    assert warning_at(record, UnknownUsersWarning) == (__file__, line)


def _line() -> int:
    """Line number of the caller's line."""
    import inspect

    return inspect.currentframe().f_back.f_lineno


# ------------------------------------------------------------------ logging
def test_library_messages_go_through_logging_not_print(tiny_log, capsys, caplog):
    X, y = tiny_log
    with caplog.at_level(logging.INFO, logger="sklearn_din"):
        features = SequenceFeatureTransformer(max_len=4).fit(X, y).transform(X)
        fit_stream(DINClassifier(**SMALL), [features.assign(label=y)])
    messages = [r.getMessage() for r in caplog.records if r.name == "sklearn_din"]
    assert any(m.startswith("SequenceFeatureTransformer.fit: ") and "behaviours" in m
               for m in messages)
    assert f"fit_stream: scanned {len(X):,} rows in 1 chunk(s)" in messages
    assert capsys.readouterr() == ("", "")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and nothing of it is a warning
        SequenceFeatureTransformer(max_len=4).fit(X, y).transform(X)
    assert np.isfinite(features.to_numpy(dtype=float)).all()
