"""The README's main job, `python -m sklearn_din`, at a small size."""

import subprocess
import sys

from sklearn_din._demo import main


def test_demo_reports_every_model_and_the_attention(capsys):
    assert main(["--users", "200", "--epochs", "1", "--max-len", "10", "--quiet",
                 "--threads", "1"]) == 0
    out = capsys.readouterr().out
    for model in ("item only (no history)", "pooled history, sum (base model)",
                  "pooled history, mean (base model)", "DIN (attention)"):
        assert model in out
    assert "test AUC" in out and "test GAUC" in out and "fit s" in out
    assert "What DIN attended to" in out and "clicks ago" in out


def test_demo_reads_a_csv(tmp_path, capsys):
    from sklearn_din.datasets import make_interactions

    path = tmp_path / "log.csv"
    make_interactions(n_users=120, random_state=1).to_csv(path, index=False)
    assert main(["--csv", str(path), "--epochs", "1", "--max-len", "5", "--quiet",
                 "--threads", "1"]) == 0
    assert "reading the log" in capsys.readouterr().out


def test_demo_help_and_version_as_a_module():
    help_text = subprocess.run([sys.executable, "-m", "sklearn_din", "--help"],
                               capture_output=True, text=True, check=True).stdout
    assert "--scale" in help_text and "--csv" in help_text and "--device" in help_text
    version = subprocess.run([sys.executable, "-m", "sklearn_din", "--version"],
                             capture_output=True, text=True, check=True).stdout
    assert version.startswith("sklearn-din ")


def test_demo_baselines_are_built_as_strongly_as_din():
    """Item-only embeds its ids (never numbers fed to the MLP); pooled differs in pooling only."""
    import argparse

    from sklearn.base import clone

    from sklearn_din._demo import MODELS, _pipeline
    from sklearn_din.datasets import leave_last_out_split, make_interactions, sample_negatives

    args = argparse.Namespace(max_len=None, device="cpu", quiet=True, seed=0, epochs=None,
                              embed_dim=None)
    din = _pipeline("attention", args).named_steps["din"].get_params(deep=False)
    for history in ("sum", "mean"):
        pooled = _pipeline(history, args).named_steps["din"].get_params(deep=False)
        assert {k for k in din if din[k] != pooled[k]} == {"pooling"}
    rows = sample_negatives(make_interactions(n_users=150, random_state=2), random_state=2)
    train, _, _ = leave_last_out_split(rows)
    item_only = clone(_pipeline(MODELS["item only (no history)"], args)).set_params(
        din__max_epochs=1, din__early_stopping=False)
    item_only.fit(train.drop(columns="label"), train["label"])
    layout = item_only.named_steps["din"].layout_
    assert layout.dense_cols == () and layout.history_features == ()
    assert set(layout.sparse_cols) == {"item_id", "cate_id"}
    assert layout.user_col == "user_id"  # the user: found, not embedded, as in DIN's defaults
