"""GridSearchCV over a DIN pipeline in parallel processes: joblib's loky and a Dask cluster.

Both give the scores of the same search run in this process, exactly (same
random_state, same rows, one torch thread: the same floating-point steps), and neither
lets torch oversubscribe the cores: each worker's torch runs the threads the engine
allots it, which a scorer reads inside the worker.
"""

import os

import joblib
import numpy as np
import pytest
import torch
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import make_pipeline

from sklearn_din import DINClassifier, SequenceFeatureTransformer
from sklearn_din.datasets import make_interactions, sample_negatives

GRID = {"dinclassifier__embed_dim": [4, 8]}


def torch_threads(estimator, X, y):
    """A 'score' that reports the worker's torch intra-op threads."""
    return float(torch.get_num_threads())


@pytest.fixture(scope="module")
def search_data():
    """About 1,100 rows of 80 users, the behaviour store fitted once and frozen."""
    log = make_interactions(n_users=80, n_items=60, n_categories=6, mean_events=8,
                            random_state=0)
    rows = sample_negatives(log, random_state=0)
    X, y = rows.drop(columns="label"), rows["label"]
    store = SequenceFeatureTransformer(max_len=10).fit(X, y)
    model = make_pipeline(
        FrozenEstimator(store),
        DINClassifier(attention_units=(8,), hidden_units=(8,), max_epochs=1, batch_size=128,
                      verbose=0, random_state=0),
    )
    return model, X, y


def _search(model, n_jobs):
    return GridSearchCV(model, GRID, cv=GroupKFold(n_splits=2), n_jobs=n_jobs,
                        scoring={"auc": "roc_auc", "threads": torch_threads}, refit="auc")


@pytest.fixture(scope="module")
def sequential(search_data):
    model, X, y = search_data
    return _search(model, n_jobs=1).fit(X, y, groups=X["user_id"])


def _assert_same_search(search, reference):
    np.testing.assert_array_equal(search.cv_results_["split0_test_auc"],
                                  reference.cv_results_["split0_test_auc"])
    np.testing.assert_array_equal(search.cv_results_["split1_test_auc"],
                                  reference.cv_results_["split1_test_auc"])
    assert search.best_params_ == reference.best_params_
    # Not a constant: the two embedding sizes score differently.
    assert len(set(reference.cv_results_["mean_test_auc"])) == 2


def test_loky_processes_give_the_sequential_scores_without_oversubscription(
    search_data, sequential
):
    """loky starts each worker with OMP_NUM_THREADS = cores // n_jobs; torch reads it.

    (``joblib.parallel_config(backend="loky", inner_max_num_threads=k)`` sets another
    count the same way; on 2 cores the default is already 1.)
    """
    model, X, y = search_data
    search = _search(model, n_jobs=2).fit(X, y, groups=X["user_id"])
    _assert_same_search(search, sequential)
    threads = search.cv_results_["mean_test_threads"]
    assert np.all(threads >= 1) and np.all(threads <= max(1, (os.cpu_count() or 1) // 2))


def test_dask_cluster_gives_the_sequential_scores(search_data, sequential):
    """A LocalCluster of 2 worker processes stands in for a cluster of machines."""
    distributed = pytest.importorskip("distributed")
    model, X, y = search_data
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                 dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
        joblib.parallel_backend("dask"),
    ):
        search = _search(model, n_jobs=-1).fit(X, y, groups=X["user_id"])
        # The fits ran in the worker processes, not here.
        worker_pids = set(client.run(os.getpid).values())
    assert os.getpid() not in worker_pids and len(worker_pids) == 2
    _assert_same_search(search, sequential)
    # Dask's nanny starts workers with OMP_NUM_THREADS=1: one torch thread each.
    assert np.all(search.cv_results_["mean_test_threads"] == 1)
