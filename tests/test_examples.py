"""The scripts in examples/ run at --small size and print their key results."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ELECTRONICS_SAMPLE = Path(
    "/work/shared/data/amazon-electronics-sample/amazon_electronics_sample.csv"
)
AUC = r"0\.\d{4}|1\.0000"

EXPECTED = {
    "tutorial_amazon_electronics": [
        r"create_seq_features: split +datasets\.leave_last_out_split",
        r"SparseFeature, SequenceFeature",
        r"test rows also in train: 0 ",
        rf"valid AUC ({AUC})",
        rf"test AUC +({AUC}) \(\+/- ",
        rf"baseline +({AUC})",
    ],
    "grid_search": [
        r"mean history length of held-out users: 0\.0 with the transformer fitted inside",
        r"GridSearchCV: 8 fits \+ refit .*GroupKFold, 2 folds by user_id",
        r"embed_dim hidden_units +lr +mean AUC",
        rf"best: \{{'embed_dim': \d+, 'hidden_units': \(16,\), 'lr': [\d.]+\}}  CV AUC {AUC}",
        rf"test AUC of the refit best model: ({AUC})",
        r"Why GroupKFold and not KFold",
        rf"CV AUC with plain KFold: ({AUC})",
    ],
    "tabular_workflow": [
        r"columns \['user_id', 'item_id', 'time', 'cate_id', 'price'\]",
        rf"cross_val_score \(GroupKFold by user, 3 folds\): AUC ({AUC})",
        r"price scaled",
        rf"uncalibrated pipeline +({AUC}) +0\.\d{{4}}",
        rf"CalibratedClassifierCV\(cv=3 grp\) +({AUC}) +0\.\d{{4}}",
        rf"calibrated on the valid split +({AUC}) +0\.\d{{4}}",
        r"joblib: .*reloaded: predictions identical: True",
        r"save_model \(no pickle.*reloaded: predictions identical: True",
    ],
}


def _load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_small(name, capsys):
    module = _load(name)
    assert module.__doc__ and len(module.__doc__) > 200, "a module docstring explains the example"
    assert module.main(["--small", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    for pattern in EXPECTED[name]:
        assert re.search(pattern, out), f"{name}: no line matches {pattern!r} in:\n{out}"


def test_tutorial_explain_and_mapping_in_docstring():
    module = _load("tutorial_amazon_electronics")
    for step in ("create_seq_features", "SparseFeature", "SequenceFeature", "df_to_dict",
                 "DataGenerator", "DIN(", "CTRTrainer", "fit(", "evaluate("):
        assert step in module.__doc__, step
        assert any(step.split("(")[0] in rechub for rechub, _ in module.STEP_TABLE), step
    assert "Notes on the steps" in module.EXPLAIN


@pytest.mark.skipif(not ELECTRONICS_SAMPLE.exists(), reason="the tutorial's 100-row file")
def test_tutorial_script_on_the_tutorial_csv():
    """As a user runs it: a subprocess, the tutorial's 100-row file, a noise warning."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "tutorial_amazon_electronics.py"), "--small",
         "--csv", str(ELECTRONICS_SAMPLE)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "100 clicks, 17 users" in result.stdout
    assert re.search(rf"test AUC +({AUC})", result.stdout)
    assert "is noise, not a measurement" in result.stdout


@pytest.mark.parametrize("name", sorted(p.stem for p in EXAMPLES.glob("*.py")))
def test_example_help_shows_no_path_of_this_machine(name, capsys):
    module = _load(name)
    with pytest.raises(SystemExit):
        module.parse_args(["--help"])
    text = capsys.readouterr().out + (module.__doc__ or "")
    assert "usage:" in text
    # an absolute path (/work/..., /home/..., C:\...) would be this machine's, not the reader's
    assert not re.search(r"(?<![\w.])(/[A-Za-z]\w*/|[A-Z]:\\)", text), text
