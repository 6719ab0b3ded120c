"""GAUC against a brute-force reference, RelaImpr, and the mini-batch aware penalty."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from sklearn_din import DeepInterestNetwork
from sklearn_din.metrics import gauc_score, rela_impr


def _gauc_reference(y, score, groups):
    num = den = 0.0
    for group in np.unique(groups):
        rows = groups == group
        if len(np.unique(y[rows])) == 2:
            num += rows.sum() * roc_auc_score(y[rows], score[rows])
            den += rows.sum()
    return num / den if den else float("nan")


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_gauc_matches_brute_force(data):
    n = data.draw(st.integers(1, 60))
    y = np.array(data.draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    # few distinct scores: ties inside users must count as half-wins, as in roc_auc_score
    score = np.array(data.draw(st.lists(st.integers(0, 4), min_size=n, max_size=n))) / 4
    groups = np.array(data.draw(st.lists(st.sampled_from("abcde"), min_size=n, max_size=n)))
    expected = _gauc_reference(y, score, groups)
    got = gauc_score(y, score, groups=groups)
    if np.isnan(expected):
        assert np.isnan(got)
    else:
        assert got == pytest.approx(expected, abs=1e-12)


def test_gauc_weights_users_by_impressions():
    # user a: perfect (4 rows), user b: inverted (2 rows), user c: one class (skipped)
    y = np.array([1, 0, 1, 0, 1, 0, 1, 1])
    score = np.array([0.9, 0.1, 0.8, 0.2, 0.1, 0.9, 0.5, 0.4])
    groups = np.array(["a", "a", "a", "a", "b", "b", "c", "c"])
    assert gauc_score(y, score, groups=groups) == pytest.approx((4 * 1.0 + 2 * 0.0) / 6)


def test_gauc_rejects_non_binary_labels():
    with pytest.raises(ValueError, match="0/1"):
        gauc_score([0, 1, 2], [0.1, 0.2, 0.3], groups=[1, 1, 1])


def test_rela_impr():
    assert rela_impr(0.75, 0.70) == pytest.approx(25.0)
    assert rela_impr(0.70, 0.70) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        rela_impr(0.7, 0.5)


def test_mini_batch_aware_penalty_moves_only_batch_rows_scaled_by_frequency():
    frequencies = [np.array([0, 10, 4, 1, 2, 5]), np.array([0, 3, 3, 7]), np.array([0, 1, 8])]
    net = DeepInterestNetwork([6, 4], [3], 0, embed_dim=3, id_frequencies=frequencies)
    candidate = torch.tensor([[2, 1], [2, 3]])
    history = torch.tensor([[[3, 5, 4], [1, 2, 3]], [[4, 0, 0], [2, 0, 0]]])
    history_length = torch.tensor([2, 1])  # position 2 of row 0 (item 4) is padding
    sparse = torch.tensor([[2], [2]])
    penalty = net.embedding_penalty(candidate, history, history_length, sparse)
    penalty.backward()

    item = net.history_embeddings[0]
    used_items = {2, 3, 5, 4}  # candidates 2, 2; history 3, 5 (row 0) and 4 (row 1)
    for j in range(6):
        grad = item.weight.grad[j]
        if j in used_items:
            # d/dw_j of 0.5 * ||w_j||^2 / n_j = w_j / n_j
            torch.testing.assert_close(grad, item.weight[j].detach() / frequencies[0][j])
        else:
            assert torch.count_nonzero(grad) == 0
    cate = net.history_embeddings[1]
    assert torch.count_nonzero(cate.weight.grad[0]) == 0  # padding never penalised
    torch.testing.assert_close(cate.weight.grad[2], cate.weight[2].detach() / 3)
    user = net.sparse_embeddings[0]
    torch.testing.assert_close(user.weight.grad[2], user.weight[2].detach() / 8)
    assert torch.count_nonzero(user.weight.grad[1]) == 0


@pytest.mark.parametrize("item_table", [50, 100_000])  # a presence mask / a sort of the ids
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32])
def test_mini_batch_aware_penalty_equals_its_definition(item_table, dtype):
    generator = torch.Generator().manual_seed(0)
    frequencies = [np.arange(item_table) + 1.0, np.arange(9) + 1.0, np.arange(5) + 1.0]
    net = DeepInterestNetwork([item_table, 9], [5], 0, embed_dim=3, id_frequencies=frequencies)
    n_rows, max_len = 40, 6
    candidate = torch.stack([torch.randint(1, item_table, (n_rows,), generator=generator),
                             torch.randint(1, 9, (n_rows,), generator=generator)], 1)
    # Every position holds a real id, past each row's length too: those are padding.
    history = torch.stack([torch.randint(1, item_table, (n_rows, max_len), generator=generator),
                           torch.randint(1, 9, (n_rows, max_len), generator=generator)], 1)
    history_length = torch.randint(0, max_len + 1, (n_rows,), generator=generator)
    sparse = torch.randint(0, 5, (n_rows, 1), generator=generator)
    inputs = [t.to(dtype) for t in (candidate, history, history_length, sparse)]

    expected = 0.0
    for t, table in enumerate(net.embedding_tables()):
        if t < 2:
            used = set(candidate[:, t].tolist())
            used |= {int(history[r, t, k]) for r in range(n_rows)
                     for k in range(int(history_length[r]))}
        else:
            used = set(sparse[:, 0].tolist())
        used.discard(0)
        for j in used:
            expected += 0.5 * float(table.weight[j].double().pow(2).sum()) / frequencies[t][j]
    penalty = net.embedding_penalty(*inputs)
    assert float(penalty) == pytest.approx(expected, rel=1e-5)


def test_embedding_l2_changes_training_only_through_the_penalty():
    from sklearn_din import DINClassifier, SequenceFeatureTransformer
    from sklearn_din.datasets import make_interactions, sample_negatives

    rows = sample_negatives(make_interactions(n_users=60, n_items=40, random_state=0),
                            random_state=0)
    X = SequenceFeatureTransformer(max_len=5).fit_transform(rows.drop(columns="label"),
                                                            rows["label"])
    y = rows["label"]
    params = dict(embed_dim=4, attention_units=(8,), hidden_units=(8,), max_epochs=2,
                  verbose=0, random_state=0)
    from skorch import NeuralNetBinaryClassifier

    class NoPenalty(DINClassifier):  # the loss without any penalty term at all
        def get_loss(self, y_pred, y_true, X=None, training=False):
            return NeuralNetBinaryClassifier.get_loss(self, y_pred, y_true, X, training)

    plain = NoPenalty(**params).fit(X, y)
    zero = DINClassifier(embedding_l2=0.0, **params).fit(X, y)
    strong = DINClassifier(embedding_l2=10.0, **params).fit(X, y)
    np.testing.assert_array_equal(plain.predict_proba(X), zero.predict_proba(X))
    norm = lambda m: m.module_.history_embeddings[0].weight.norm().item()  # noqa: E731
    assert norm(strong) < norm(plain)
