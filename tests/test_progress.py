"""What a fit prints: the epoch table by default, a batch bar on request, nothing at verbose=0."""

from skorch.callbacks import ProgressBar

from sklearn_din import DINClassifier, SequenceFeatureTransformer
from sklearn_din.datasets import make_interactions, sample_negatives

SMALL = dict(embed_dim=4, attention_units=(8,), hidden_units=(8,), max_epochs=2, batch_size=64,
             random_state=0)


def _data():
    rows = sample_negatives(make_interactions(n_users=40, n_items=60, random_state=0),
                            random_state=0)
    X = SequenceFeatureTransformer(max_len=4).fit_transform(rows.drop(columns="label"),
                                                            rows["label"])
    return X, rows["label"]


def test_default_prints_the_epoch_table(capsys):
    X, y = _data()
    DINClassifier(**SMALL).fit(X, y)
    out = capsys.readouterr().out
    assert "epoch" in out and "train_loss" in out
    assert len([line for line in out.splitlines() if line.strip()[:1].isdigit()]) == 2


def test_verbose_zero_prints_nothing(capsys):
    X, y = _data()
    DINClassifier(verbose=0, **SMALL).fit(X, y)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_progress_bar_counts_our_batches(capsys):
    X, y = _data()
    model = DINClassifier(verbose=0, callbacks=[ProgressBar(batches_per_epoch="auto")], **SMALL)
    model.fit(X, y)
    err = capsys.readouterr().err
    n_batches = -(-len(X) // 64)
    if len(X) % 64 == 1:
        n_batches -= 1  # a last batch of one row is merged into the previous one
    # the bar knows how many batches our iterator yields, and both epochs ran it
    assert err.count(f" 0/{n_batches} ") == 2


def test_long_transforms_report_progress(capsys, monkeypatch):
    import sklearn_din._transformer as transformer_module

    rows = sample_negatives(make_interactions(n_users=40, n_items=60, random_state=0),
                            random_state=0)
    X = rows.drop(columns="label")
    monkeypatch.setattr(transformer_module, "TRANSFORM_CHUNK_ROWS", 500)
    quiet = SequenceFeatureTransformer(max_len=4).fit(X).transform(X)
    assert capsys.readouterr().out == ""
    loud = SequenceFeatureTransformer(max_len=4, verbose=1).fit(X).transform(X)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == -(-len(X) // 500)
    assert lines[-1].startswith(f"[SequenceFeatureTransformer] {len(X):,} / {len(X):,} rows")
    assert loud.equals(quiet)  # chunking changes nothing in the output
