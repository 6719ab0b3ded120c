"""scikit-learn's estimator checks, each expected failure with its reason."""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.utils import estimator_checks as checks
from sklearn.utils import get_tags
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_din import DINClassifier, SequenceFeatureTransformer, _kernels

torch.set_num_threads(1)

CLASSIFIER_EXPECTED_FAILURES = {
    "check_no_attributes_set_in_init": (
        "skorch's NeuralNet.__init__ sets history_, initialized_ and virtual_params_."
    ),
    "check_do_not_raise_errors_in_init_or_set_params": (
        "skorch's set_params builds callbacks at once, so set_params(callbacks=-1) raises "
        "there instead of in fit."
    ),
    "check_sample_weight_equivalence_on_dense_data": (
        "a row of weight k trains exactly like k copies within one full batch (tested in "
        "test_sample_weight.py), but with mini-batches copies change the batches and the "
        "number of steps, so the check's mini-batch fits differ."
    ),
}
if _kernels.compiled_ops(torch.zeros(1, 1)) is None:
    # The compiled inference MLP (_fused_mlp.py) computes each row on its own; torch's
    # matrix products do not.
    CLASSIFIER_EXPECTED_FAILURES["check_methods_subset_invariance"] = (
        "float32 matrix products round differently for different batch sizes (about 1e-7 "
        "relative), above the check's rtol=1e-7; predictions agree to float32 precision."
    )


def _classifier():
    # Small, fast and sure to fit the checks' toy problems: a plain MLP on numeric columns.
    return DINClassifier(
        hidden_units=(16,), activation="relu", lr=0.05, max_epochs=20, batch_size=64,
        verbose=0, random_state=0,
    )


@parametrize_with_checks(
    [_classifier()],
    expected_failed_checks=lambda est: CLASSIFIER_EXPECTED_FAILURES,
)
def test_classifier_estimator_checks(estimator, check):
    check(estimator)


# ------------------------------------------------------------ the transformer
# SequenceFeatureTransformer finds the user, item and time columns by name, so its X must
# be a DataFrame with those columns: its tags say two_d_array=False, and scikit-learn's
# generic checks (which build numpy arrays) are not run for it. The checks that need no
# data run as they are; every check that feeds it a numpy array is run too and must fail
# only with the transformer's own clear refusal of arrays (the reason it is expected).
TRANSFORMER_API_CHECKS = [
    checks.check_estimator_cloneable,
    checks.check_estimator_tags_renamed,
    checks.check_valid_tag_types,
    checks.check_estimator_repr,
    checks.check_no_attributes_set_in_init,
    checks.check_estimators_unfitted,
    checks.check_do_not_raise_errors_in_init_or_set_params,
    checks.check_mixin_order,
    checks.check_transformers_unfitted,
    checks.check_transformer_n_iter,
    checks.check_parameters_default_constructible,
    checks.check_get_params_invariance,
    checks.check_set_params,
    checks.check_param_validation,  # parameters are validated before X is looked at
    checks.check_get_feature_names_out_error,
    # sparse matrices are refused saying so
    checks.check_estimator_sparse_tag,
    checks.check_estimator_sparse_array,
    checks.check_estimator_sparse_matrix,
]
ARRAYS = "the check passes a numpy array; X must be a DataFrame with named columns"
TRANSFORMER_EXPECTED_FAILURES = {
    name: ARRAYS for name in [
        "check_fit_score_takes_y", "check_estimators_overwrite_params",
        "check_dont_overwrite_parameters", "check_estimators_fit_returns_self",
        "check_readonly_memmap_input", "check_n_features_in_after_fitting",
        "check_positive_only_tag_during_fit", "check_estimators_dtypes",
        "check_complex_data", "check_dtype_object", "check_estimators_empty_data_messages",
        "check_pipeline_consistency", "check_estimators_nan_inf", "check_estimators_pickle",
        "check_f_contiguous_array_estimator", "check_transformer_data_not_an_array",
        "check_transformer_general", "check_methods_sample_order_invariance",
        "check_methods_subset_invariance", "check_fit2d_1sample", "check_fit2d_1feature",
        "check_dict_unchanged", "check_fit_idempotent", "check_fit_check_is_fitted",
        "check_n_features_in", "check_fit1d", "check_fit2d_predict1d",
    ]
}


def test_transformer_tags_are_true():
    tags = get_tags(SequenceFeatureTransformer())
    assert not tags.input_tags.two_d_array  # a 2-D array is refused: see below
    assert tags.input_tags.string and tags.input_tags.categorical  # ids of any type
    assert not tags.input_tags.allow_nan and not tags.input_tags.sparse
    assert not tags.target_tags.required and tags.requires_fit
    assert tags.transformer_tags.preserves_dtype == []  # the output is int32 codes


@pytest.mark.parametrize("check", TRANSFORMER_API_CHECKS, ids=lambda c: c.__name__)
def test_transformer_api_checks(check):
    check("SequenceFeatureTransformer", SequenceFeatureTransformer())


def _chain(error: BaseException) -> str:
    messages = []
    while error is not None:
        messages.append(str(error))
        error = error.__cause__ or error.__context__
    return " | ".join(messages)


@pytest.mark.parametrize("name", sorted(TRANSFORMER_EXPECTED_FAILURES))
def test_transformer_array_checks_fail_only_for_their_reason(name):
    with pytest.raises(Exception) as info:  # noqa: PT011  (the check's own error type)
        getattr(checks, name)("SequenceFeatureTransformer", SequenceFeatureTransformer())
    # some checks catch the refusal and report in their own words: it is in the chain
    assert "expects a DataFrame with named columns" in _chain(info.value)


def test_transformer_contract_on_dataframes():
    """What the array checks would have checked, on the DataFrames the transformer reads."""
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"user_id": rng.integers(0, 5, 60), "item_id": rng.integers(0, 9, 60),
                      "cate_id": rng.integers(0, 3, 60), "time": rng.integers(0, 20, 60),
                      "price": rng.normal(size=60)})
    y = rng.integers(0, 2, 60)
    transformer = SequenceFeatureTransformer(max_len=4)
    params = transformer.get_params()
    assert transformer.fit(X, y) is transformer  # fit returns self
    assert transformer.get_params() == params  # and leaves the parameters alone
    assert transformer.n_features_in_ == 5
    out = transformer.transform(X)
    state = {k: v for k, v in vars(transformer).items()}
    # rows are transformed independently of each other: any subset, in any order
    order = rng.permutation(60)
    pd.testing.assert_frame_equal(transformer.transform(X.iloc[order]), out.iloc[order])
    pd.testing.assert_frame_equal(transformer.transform(X.iloc[:7]), out.iloc[:7])
    assert vars(transformer).keys() == state.keys()  # transform changes nothing
    assert all(vars(transformer)[k] is v for k, v in state.items())
    # fitting twice gives the same result; a clone fits to the same result too
    pd.testing.assert_frame_equal(transformer.fit(X, y).transform(X), out)
    pd.testing.assert_frame_equal(clone(transformer).fit_transform(X, y), out)
    # fit_transform in a pipeline equals fit then transform
    from sklearn.pipeline import make_pipeline

    pd.testing.assert_frame_equal(make_pipeline(clone(transformer)).fit(X, y).transform(X), out)
