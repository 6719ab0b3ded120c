"""polars in and out: the same features and the same predictions as with pandas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest
from sklearn.pipeline import make_pipeline

from sklearn_din import DINClassifier, SequenceFeatureTransformer, fit_stream
from sklearn_din.datasets import leave_last_out_split, make_interactions, sample_negatives

SMALL = dict(embed_dim=4, attention_units=(8,), hidden_units=(8,), max_epochs=2, batch_size=128,
             verbose=0, random_state=0)


@pytest.fixture(scope="module")
def split():
    rows = sample_negatives(make_interactions(n_users=80, n_items=60, random_state=0),
                            random_state=0)
    rows = rows.assign(device=np.where(rows.index % 3 == 0, "app", "web"),
                       price=(rows["item_id"] % 7) / 7.0)
    train, _, test = leave_last_out_split(rows)
    return train, test


def test_transformer_reads_polars_and_writes_polars(split):
    train, test = split
    t = SequenceFeatureTransformer(max_len=5, categorical_cols=("device",))
    test = test.drop(columns="label")
    expected = t.fit(train.drop(columns="label"), train["label"]).transform(test)
    polars_t = SequenceFeatureTransformer(max_len=5, categorical_cols=("device",))
    polars_t.set_output(transform="polars")
    got = polars_t.fit(pl.from_pandas(train.drop(columns="label")),
                       pl.from_pandas(train["label"])).transform(pl.from_pandas(test))
    assert isinstance(got, pl.DataFrame)
    assert got.columns == list(expected.columns)
    # The names are compared above (polars' come back as pandas' string dtype, pandas'
    # output holds them as Python strings).
    pd.testing.assert_frame_equal(got.to_pandas(), expected.reset_index(drop=True),
                                  check_dtype=False, check_column_type=False)


def test_pipeline_on_polars_predicts_like_pandas(split):
    train, test = split
    X_train, y_train = train.drop(columns="label"), train["label"]
    X_test = test.drop(columns="label")
    on_pandas = make_pipeline(SequenceFeatureTransformer(max_len=5, categorical_cols=("device",)),
                              DINClassifier(**SMALL)).fit(X_train, y_train)
    on_polars = make_pipeline(SequenceFeatureTransformer(max_len=5, categorical_cols=("device",)),
                              DINClassifier(**SMALL)).set_output(transform="polars")
    on_polars.fit(pl.from_pandas(X_train), pl.from_pandas(y_train))
    # the classifier read the polars frame's names: the same layout, not a plain MLP
    assert on_polars[-1].layout_ == on_pandas[-1].layout_
    assert on_polars[-1].layout_.history_features == ("item_id", "cate_id")
    np.testing.assert_array_equal(on_polars.predict_proba(pl.from_pandas(X_test)),
                                  on_pandas.predict_proba(X_test))
    np.testing.assert_array_equal(on_polars[-1].attention_weights(on_polars[0].transform(
        pl.from_pandas(X_test))), on_pandas[-1].attention_weights(on_pandas[0].transform(X_test)))


def test_fit_stream_reads_polars_chunks(split):
    train, _ = split
    features = SequenceFeatureTransformer(max_len=5).fit_transform(
        train.drop(columns=["label", "device"]), train["label"]).assign(label=train["label"])
    chunks = [features.iloc[:500], features.iloc[500:]]
    on_pandas = fit_stream(DINClassifier(**SMALL), chunks)
    on_polars = fit_stream(DINClassifier(**SMALL), [pl.from_pandas(c) for c in chunks])
    np.testing.assert_array_equal(on_polars.predict_proba(features.drop(columns="label")),
                                  on_pandas.predict_proba(features.drop(columns="label")))
