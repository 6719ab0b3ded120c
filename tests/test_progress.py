"""What a fit prints: the epoch table by default, batch progress with verbose=2 (a bar in a
terminal, plain lines elsewhere), nothing at verbose=0; no colour codes off a terminal."""

from skorch.callbacks import ProgressBar
from skorch.dataset import ValidSplit

from sklearn_din import DINClassifier, SequenceFeatureTransformer, fit_stream
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


def test_long_transforms_report_progress_on_stderr_in_plain_lines(capsys, monkeypatch):
    import sklearn_din._transformer as transformer_module

    rows = sample_negatives(make_interactions(n_users=40, n_items=60, random_state=0),
                            random_state=0)
    X = rows.drop(columns="label")
    monkeypatch.setattr(transformer_module, "TRANSFORM_CHUNK_ROWS", 500)
    quiet = SequenceFeatureTransformer(max_len=4).fit(X).transform(X)
    assert capsys.readouterr() == ("", "")
    loud = SequenceFeatureTransformer(max_len=4, verbose=1).fit(X).transform(X)
    out, err = capsys.readouterr()
    assert out == ""  # stdout stays the user's
    lines = err.splitlines()
    assert 1 <= len(lines) <= -(-len(X) // 500)
    assert lines[-1].startswith(f"[SequenceFeatureTransformer] transform: {len(X):,}/{len(X):,} "
                                "rows (100%)")
    assert "\r" not in err and "\x1b" not in err
    assert loud.equals(quiet)  # chunking changes nothing in the output


def batches_per_epoch(n_rows, batch_size=64):
    n_batches = -(-n_rows // batch_size)
    return n_batches - 1 if n_rows % batch_size == 1 else n_batches  # a 1-row batch is merged


def test_verbose_2_shows_batch_progress_as_plain_lines_off_a_terminal(capsys):
    X, y = _data()
    DINClassifier(**{**SMALL, "verbose": 2}).fit(X, y)
    out, err = capsys.readouterr()
    n = batches_per_epoch(len(X))
    assert "train_loss" in out  # the epoch table as with verbose=1
    lines = err.splitlines()
    assert [line for line in lines if line.startswith(f"epoch 1: {n}/{n} batches (100%)")]
    assert [line for line in lines if line.startswith(f"epoch 2: {n}/{n} batches (100%)")]
    assert all(line.startswith(("epoch 1: ", "epoch 2: ")) for line in lines)
    assert len(lines) <= 2 * 10  # a line per tenth, not per batch
    assert "train_loss=" in lines[-1]
    assert "\r" not in err and "\x1b" not in err


def test_verbose_2_in_a_terminal_is_a_tqdm_bar_with_the_exact_batch_count(capsys, monkeypatch):
    import sklearn_din._progress as progress_module

    monkeypatch.setattr(progress_module, "is_terminal", lambda stream: True)
    X, y = _data()
    DINClassifier(**{**SMALL, "verbose": 2}).fit(X, y)
    err = capsys.readouterr().err
    n = batches_per_epoch(len(X))
    assert err.count(f" 0/{n} ") == 2 and "\r" in err


def test_verbose_1_shows_no_batch_progress(capsys):
    X, y = _data()
    DINClassifier(**SMALL).fit(X, y)
    assert capsys.readouterr().err == ""


def test_epoch_table_has_no_colour_codes_off_a_terminal(capsys, monkeypatch):
    import sklearn_din._callbacks as callbacks_module

    X, y = _data()
    model = DINClassifier(**{**SMALL, "max_epochs": 3}, train_split=ValidSplit(0.2, random_state=0))
    model.fit(X, y)
    out = capsys.readouterr().out
    assert "valid_auc" in out and "\x1b" not in out
    logged = []
    model.set_params(callbacks__print_log__sink=logged.append).fit(X, y)
    assert logged and not any("\x1b" in line for line in logged)
    # in a terminal skorch's colours stay (the first epoch is always the best so far)
    monkeypatch.setattr(callbacks_module, "is_terminal", lambda stream: True)
    model.set_params(callbacks__print_log__sink=print).fit(X, y)
    assert "\x1b[" in capsys.readouterr().out


def test_progress_in_fit_stream(capsys):
    X, y = _data()
    chunks = [X.assign(label=y).iloc[:300], X.assign(label=y).iloc[300:]]
    # skorch's own ProgressBar needs the stream's length: it no longer crashes
    fit_stream(DINClassifier(verbose=0, callbacks=[ProgressBar()], **SMALL), chunks)
    assert capsys.readouterr().err.count(f"/{-(-len(X) // 64)} ") >= 2
    fit_stream(DINClassifier(**{**SMALL, "verbose": 2}), chunks)
    err = capsys.readouterr().err
    n = batches_per_epoch(300) + batches_per_epoch(len(X) - 300)  # batches stay within chunks
    assert f"epoch 1: {n}/{n} batches (100%)" in err and f"epoch 2: {n}/{n} batches" in err
