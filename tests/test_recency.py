"""Recency of each behaviour (``recency=True``): built leak-free by the transformer, embedded
as a context feature by the network, and usable by the attention."""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from sklearn_din import DeepInterestNetwork, DINClassifier, SequenceFeatureTransformer
from sklearn_din._layout import RECENCY_OCTAVES
from sklearn_din.datasets import leave_last_out_split, make_interactions, sample_negatives


def test_gap_buckets_are_log2_of_the_gap_to_the_row_in_the_smallest_time_step():
    log = pd.DataFrame({"user_id": ["u"] * 4 + ["v"], "item_id": list("abcda"),
                        "cate_id": list("xyxyx"), "time": [10, 12, 15, 30, 10]})
    t = SequenceFeatureTransformer(max_len=3, recency=True).fit(log)
    assert t.recency_unit_ == 2.0  # the smallest step between distinct times (10 -> 12)
    out = t.transform(log)
    gaps = out[[f"hist_gap_{k}" for k in range(3)]].to_numpy()
    # Row at 15: gaps 3, 5 -> log2(gap / 2) = 0.6, 1.3; at 30: gaps 15, 18, 20 -> 2.9, 3.2, 3.3.
    assert gaps.tolist() == [[0, 0, 0], [2, 0, 0], [2, 3, 0], [4, 5, 5], [0, 0, 0]]
    assert (gaps > 0).sum(axis=1).tolist() == out["hist_len"].tolist()  # padding stays 0
    assert list(out.columns).index("hist_gap_0") > list(out.columns).index("hist_cate_id_2")


def test_datetime_gaps_and_partial_fit_keep_the_unit_of_fit():
    times = pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-05", "2024-02-01"])
    log = pd.DataFrame({"user_id": 1, "item_id": [1, 2, 3, 4], "cate_id": 1, "time": times})
    t = SequenceFeatureTransformer(max_len=4, recency=True).fit(log.iloc[:2])
    day = 86_400e9
    assert t.recency_unit_ == day
    t.partial_fit(log.iloc[2:3].assign(time=times[1] + pd.Timedelta("1h")))
    assert t.recency_unit_ == day  # new behaviours never re-number the buckets
    out = t.transform(log.iloc[[3]])
    # 2024-02-01 against 01-02 1h, 01-02, 01-01: 29.96, 30, 31 days -> octave 4 of a day.
    assert out[["hist_gap_0", "hist_gap_1", "hist_gap_2"]].to_numpy().tolist() == [[6, 6, 6]]


def test_recency_never_sees_the_future_or_the_rows_own_time():
    log = make_interactions(n_users=50, mean_events=10, random_state=4)
    t = SequenceFeatureTransformer(max_len=10, recency=True).fit(log)
    out = t.transform(log)
    times = t.history_times(log)
    real = ~np.isnan(times)
    assert (times[real] < np.repeat(log["time"].to_numpy()[:, None], 10, 1)[real]).all()
    gaps = out[[f"hist_gap_{k}" for k in range(10)]].to_numpy()
    assert ((gaps >= 2) == real).all()


def test_history_cols_cannot_take_the_recency_name():
    log = pd.DataFrame({"user_id": [1], "item_id": [1], "gap": [1], "time": [1]})
    with pytest.raises(ValueError, match="'gap'"):
        SequenceFeatureTransformer(history_cols=("item_id", "gap")).fit(log)


@pytest.fixture(scope="module")
def recency_rows():
    log = make_interactions(n_users=500, n_items=200, mean_events=12, random_state=0)
    return leave_last_out_split(sample_negatives(log, random_state=0))


def test_classifier_embeds_recency_as_a_context_feature(recency_rows):
    train, _, test = recency_rows
    t = SequenceFeatureTransformer(max_len=20, recency=True).fit(
        train.drop(columns="label"), train["label"])
    X, Xt = t.transform(train.drop(columns="label")), t.transform(test.drop(columns="label"))
    model = DINClassifier(embed_dim=4, attention_units=(8,), hidden_units=(16,), max_epochs=2,
                          lr=1e-2, verbose=0, random_state=0).fit(X, train["label"])
    assert model.layout_.context_features == ("gap",)
    assert model.layout_.history_features == ("item_id", "cate_id")
    (table,) = model.module_.context_embeddings
    assert table.num_embeddings == 2 + RECENCY_OCTAVES  # every bucket, seen in fit or not
    assert roc_auc_score(test["label"], model.predict_proba(Xt)[:, 1]) > 0.6
    # A gap longer than any seen in fit keeps its own bucket rather than becoming unknown.
    inputs = model.layout_.to_arrays(Xt.assign(hist_gap_0=np.where(Xt["hist_len"] > 0, 30, 0)),
                                     model.history_vocab_sizes_, model.sparse_vocab_sizes_)
    assert (inputs["history"][:, 2, 0][Xt["hist_len"].to_numpy() > 0] == 30).all()


def test_the_attention_reads_the_context_and_padding_cannot_change_a_prediction():
    torch.manual_seed(0)
    net = DeepInterestNetwork([10, 5], context_vocab_sizes=[8], embed_dim=4,
                              attention_units=(6,), hidden_units=(6,), activation="prelu",
                              attention_normalization="softmax").eval()
    candidate = torch.tensor([[3, 2], [3, 2]])
    history = torch.tensor([[[5, 6, 7], [2, 3, 4], [2, 3, 4]],
                            [[5, 6, 7], [2, 3, 4], [5, 6, 7]]])  # same items, other recency
    length = torch.tensor([3, 3])
    empty = torch.zeros(2, 0)
    _, pooled, weights = net.attend(candidate, history, length)
    assert pooled.shape == (2, 3 * 4)  # item, category, then recency embeddings
    assert not torch.allclose(weights[0], weights[1])  # recency moves the attention
    padded = torch.cat([history[:, :, :2], torch.full((2, 3, 5), 7)], dim=2)
    logits = net(candidate, padded, torch.tensor([2, 2]), empty.long(), empty)
    assert torch.equal(logits, net(candidate, history[:, :, :2], torch.tensor([2, 2]),
                                   empty.long(), empty))


def test_recency_survives_save_and_load(recency_rows, tmp_path):
    from sklearn.pipeline import make_pipeline

    from sklearn_din import load_model, save_model

    train, _, test = recency_rows
    model = make_pipeline(SequenceFeatureTransformer(max_len=10, recency=True),
                          DINClassifier(embed_dim=4, attention_units=(8,), hidden_units=(8,),
                                        max_epochs=1, verbose=0, random_state=0))
    model.fit(train.drop(columns="label"), train["label"])
    save_model(model, tmp_path / "m.npz")
    loaded = load_model(tmp_path / "m.npz")
    assert loaded[0].recency_unit_ == model[0].recency_unit_
    X = test.drop(columns="label")
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_a_transformer_pickled_before_recency_keeps_its_columns():
    """A 0.1 pickle has no ``recency`` attribute: it loads as ``recency=False``."""
    import pickle

    log = pd.DataFrame({"user_id": [1, 1, 2], "item_id": [1, 2, 3], "cate_id": 1,
                        "time": [1, 2, 3]})
    t = SequenceFeatureTransformer(max_len=2, recency=False).fit(log)
    state = t.__getstate__()
    for name in ("recency", "recency_unit_"):
        state.pop(name)  # what a 0.1 pickle holds
    old = SequenceFeatureTransformer.__new__(SequenceFeatureTransformer)
    old.__setstate__(state)
    assert old.recency is False
    pd.testing.assert_frame_equal(old.transform(log), t.transform(log))
    assert pickle.loads(pickle.dumps(old)).transform(log).shape == (3, 3 + 2 * 2 + 1)
