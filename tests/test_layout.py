"""The input contract (_layout): the fitted input state learnt, merged and applied."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from sklearn_din import DINClassifier, fit_stream
from sklearn_din._layout import InputLayout, InputState

SMALL = {"embed_dim": 4, "attention_units": (8,), "hidden_units": (8,), "verbose": 0,
         "random_state": 0}


def _layout(X: pd.DataFrame) -> InputLayout:
    return InputLayout.from_columns(X.columns, user_col="user_id", categorical_cols=())


def test_learn_gives_the_sizes_and_counts_of_the_frame(small_frame):
    X, _ = small_frame
    layout = _layout(X)
    state, inputs = InputState.learn(layout, X, "test")
    assert state.layout is layout
    assert (state.history_vocab_sizes, state.sparse_vocab_sizes) == layout.vocab_sizes(X)
    items = X[["item_id", *[f"hist_item_id_{k}" for k in range(layout.max_len)]]].to_numpy()
    real = np.c_[np.ones(len(X), bool),
                 np.arange(layout.max_len)[None, :] < X["hist_len"].to_numpy()[:, None]]
    np.testing.assert_array_equal(
        state.id_frequencies[0], np.bincount(items[real], minlength=state.history_vocab_sizes[0]))
    for name, values in state.to_arrays(X).items():
        np.testing.assert_array_equal(values, inputs[name], err_msg=name)


@pytest.mark.parametrize("weighted", [False, True])
def test_merging_the_states_of_two_parts_gives_the_state_of_the_whole(small_frame, weighted):
    X, _ = small_frame
    weight = np.random.default_rng(0).uniform(0.1, 3.0, len(X)) if weighted else None
    # The largest item code only in the second part: the merged table must hold it.
    top = X["item_id"] == X["item_id"].max()
    first, second = X[~top], X[top]
    layout = _layout(X)
    whole, _ = InputState.learn(layout, X, "test", weight)
    parts = [InputState.learn(layout, part, "test",
                              None if weight is None else weight[mask])[0]
             for part, mask in ((first, ~top.to_numpy()), (second, top.to_numpy()))]
    merged = parts[0].merge(parts[1])
    assert merged.history_vocab_sizes == whole.history_vocab_sizes
    assert merged.sparse_vocab_sizes == whole.sparse_vocab_sizes
    for got, expected in zip(merged.id_frequencies, whole.id_frequencies, strict=True):
        assert got.dtype == expected.dtype
        np.testing.assert_allclose(got, expected)


def test_numeric_statistics_of_a_fit_of_parts_and_of_a_stream_are_the_whole_frames(small_frame):
    # standardize_numeric's mean and scale: learnt from the frame, summed over the parts of a
    # merge (fit_stream's chunks) to the same values; a constant column is centred only.
    X, y = small_frame
    rng = np.random.default_rng(0)
    X = X.assign(price=rng.normal(3000.0, 700.0, len(X)), year=2001.0)
    layout = _layout(X)
    whole, _ = InputState.learn(layout, X, "test")
    mean, scale = whole.dense_standardization()
    np.testing.assert_allclose(mean, X[["price", "year"]].to_numpy(np.float32).mean(axis=0))
    np.testing.assert_allclose(scale, [X["price"].to_numpy(np.float32).std(), 1.0], rtol=1e-6)
    first, _ = InputState.learn(layout, X.iloc[:700], "test")
    second, _ = InputState.learn(layout, X.iloc[700:], "test")
    for got, expected in zip(first.merge(second).dense_standardization(), (mean, scale),
                             strict=True):
        np.testing.assert_allclose(got, expected)
    stream = fit_stream(DINClassifier(max_epochs=0, **SMALL),
                        [X.assign(label=y).iloc[:700], X.assign(label=y).iloc[700:]])
    memory = DINClassifier(max_epochs=0, **SMALL).fit(X, y)
    for name in ("dense_mean_", "dense_scale_"):
        np.testing.assert_allclose(getattr(stream, name), getattr(memory, name), err_msg=name)
    np.testing.assert_allclose(memory.dense_mean_, mean)
    np.testing.assert_allclose(memory.module_.dense_scale, scale.astype(np.float32))


def test_states_of_different_layouts_do_not_merge(small_frame):
    X, _ = small_frame
    state, _ = InputState.learn(_layout(X), X, "test")
    other, _ = InputState.learn(_layout(X.drop(columns="hist_len")), X.drop(columns="hist_len"),
                                "test")
    with pytest.raises(ValueError, match="different layouts"):
        state.merge(other)


def test_a_weighted_stream_counts_ids_as_a_weighted_fit_does(small_frame):
    # Regression: fit_stream summed its chunks' weighted counts as integers, so a row of
    # weight 0.5 counted 0 (or 2.7 counted 2) where fit counts 0.5 (2.7).
    X, y = small_frame
    rows = X.assign(label=y, w=np.random.default_rng(1).uniform(0.1, 3.0, len(X)))
    chunks = [rows.iloc[:1000], rows.iloc[1000:]]
    stream = fit_stream(DINClassifier(max_epochs=0, **SMALL), chunks, weight_col="w")
    memory = DINClassifier(max_epochs=0, **SMALL).fit(X, y, sample_weight=rows["w"])
    for got, expected in zip(stream.id_frequencies_, memory.id_frequencies_, strict=True):
        np.testing.assert_allclose(got, expected)


def test_an_inconsistent_state_names_its_problem(small_frame):
    # What load_model checks of a file's fitted input state before building a model.
    X, _ = small_frame
    state, _ = InputState.learn(_layout(X), X, "test")
    assert state.problem() is None
    sizes = state.history_vocab_sizes
    broken = {
        "history_vocab_sizes_ must be": dict(history_vocab_sizes=sizes[:-1]),
        "sparse_vocab_sizes_ must be": dict(sparse_vocab_sizes=(1,) * len(
            state.sparse_vocab_sizes) or (5,)),
        "one count per id": dict(id_frequencies=state.id_frequencies[:-1]),
        "negative, NaN or inf": dict(id_frequencies=[-a for a in state.id_frequencies]),
    }
    for message, change in broken.items():
        problem = dataclasses.replace(state, **change).problem()
        assert problem is not None and message in problem, (message, problem)


def _by_column(layout: InputLayout, X: pd.DataFrame) -> dict[str, np.ndarray]:
    """The id matrices read column by column, as a reference."""
    groups = layout._groups()
    out = {role: np.stack([X[c].to_numpy() for c in cols], axis=1) if cols
           else np.zeros((len(X), 0)) for role, cols in groups.items()}
    out["history"] = out["history"].reshape(len(X), -1, layout.max_len)
    return out


@pytest.mark.parametrize("frame", ["transformer", "shuffled", "mixed_dtypes", "passthrough"])
def test_check_reads_every_id_matrix_once_and_right(small_frame, frame):
    X, _ = small_frame
    X = X.assign(price=np.linspace(0.0, 1.0, len(X)))
    if frame == "shuffled":  # same dtype, columns in another order: copies, same values
        X = X[list(np.random.default_rng(0).permutation(X.columns))]
    if frame == "mixed_dtypes":  # another dtype among the id columns: read role by role
        X = X.astype({"hist_item_id_3": np.int64, "cate_id": np.float64})
    if frame == "passthrough":  # a float column between the id columns
        X = X[["price", *[c for c in X.columns if c != "price"]]]
        X.insert(5, "score", np.arange(len(X), dtype=np.float64))
    layout = _layout(X)
    ids = layout.check(X, "test")
    expected = _by_column(layout, X)
    assert set(ids) == set(expected)
    for role, values in expected.items():
        np.testing.assert_array_equal(ids[role], values, err_msg=role)
    if frame == "transformer":  # one int32 block: every role is a view of X's memory
        block = X.iloc[:, :-1].to_numpy()
        assert all(np.shares_memory(ids[role], block) for role in ("candidate", "history"))
    # The arrays built from the checked ids are those built from X itself.
    state, _ = InputState.learn(layout, X, "test", ids=ids)
    for name, values in state.to_arrays(X).items():
        np.testing.assert_array_equal(state.to_arrays(X, ids)[name], values, err_msg=name)


def test_check_of_an_empty_frame_gives_empty_id_matrices(small_frame):
    X, _ = small_frame
    layout = _layout(X)
    ids = layout.check(X.iloc[:0], "test")
    assert ids["history"].shape == (0, len(layout.all_history_features), layout.max_len)
    assert ids["candidate"].shape == (0, len(layout.history_features))


@pytest.mark.parametrize("bad", ["negative", "float_nan", "float_fraction"])
def test_the_one_block_read_still_refuses_bad_ids_naming_the_column(small_frame, bad):
    # The transformer's single integer block skips the per-column dtype checks (no
    # integer column can hold NaN); the value checks stay, on the block's views.
    X, _ = small_frame
    layout = _layout(X)
    X = X.copy()
    if bad == "negative":
        X.loc[X.index[3], "hist_cate_id_2"] = -4
        pattern = "id column 'hist_cate_id_2' has negative values"
    else:  # every id column float: still one block, of a dtype that can hold NaN
        ids = [c for cols in layout._groups().values() for c in cols]
        X = X.astype(dict.fromkeys(ids, np.float64))
        X.loc[X.index[3], "item_id"] = np.nan if bad == "float_nan" else 2.5
        pattern = ("missing values" if bad == "float_nan"
                   else "id column 'item_id' has NaN, inf or non-integer values")
    with pytest.raises(ValueError, match=pattern):
        layout.check(X, "test")


def test_a_frame_with_fits_columns_in_another_order_or_name_is_refused(small_frame):
    X, y = small_frame
    model = DINClassifier(**SMALL, max_epochs=1).fit(X, y)
    swapped = X[[X.columns[1], X.columns[0], *X.columns[2:]]]
    with pytest.raises(ValueError, match="feature names"):
        model.predict_proba(swapped)
    with pytest.raises(ValueError, match="feature names"):
        model.predict_proba(X.rename(columns={"cate_id": "category"}))
    # Fit's columns as pandas' string dtype or as Python strings: the same predictions.
    as_str = X.set_axis(pd.Index(list(X.columns), dtype="str"), axis=1)
    as_object = X.set_axis(pd.Index(list(X.columns), dtype=object), axis=1)
    np.testing.assert_array_equal(model.predict_proba(as_str), model.predict_proba(as_object))
