"""The README's main job, `python -m sklearn_din`, at a small size."""

import subprocess
import sys

from sklearn_din._demo import main


def test_demo_reports_every_model_and_the_attention(capsys):
    assert main(["--users", "200", "--epochs", "1", "--max-len", "10", "--quiet",
                 "--threads", "1"]) == 0
    out = capsys.readouterr().out
    for model in ("no history", "pooled history (base model)", "DIN (attention)"):
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
