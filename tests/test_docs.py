"""The documentation site builds without warnings (broken links, bad references); the README's
code runs, its commands agree with the installation page, and the package ships py.typed."""

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from sklearn_din.datasets import make_interactions, sample_negatives

ROOT = Path(__file__).resolve().parents[1]


def test_mkdocs_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs", reason='install the docs extra: pip install -e ".[docs]"')
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "index.html").exists()
    # the API pages are rendered from the docstrings
    api = (tmp_path / "api" / "classifier" / "index.html").read_text()
    assert "embed_dim" in api and "attention_normalization" in api
    # the example scripts are rendered in full, and the README's results table is reused
    examples = (tmp_path / "examples" / "index.html").read_text()
    for script in sorted((ROOT / "examples").glob("*.py")):
        assert f"examples/{script.name}</summary>" in examples, script.name
    assert examples.count("parse_args") >= 4
    assert "DIN as shipped" in (tmp_path / "benchmarks" / "index.html").read_text()


README = ROOT / "README.md"


def _python_block(section: str) -> str:
    """The fenced Python block of the README section headed ``## {section}``."""
    text = README.read_text(encoding="utf-8").split(f"\n## {section}\n")[1].split("\n## ")[0]
    return re.search(r"```python\n(.*?)```", text, re.S)[1]


def test_readme_own_csv_example_runs_on_a_csv(tmp_path, monkeypatch, capsys):
    rows = sample_negatives(make_interactions(n_users=150, random_state=0), random_state=0)
    rng = np.random.default_rng(0)
    rows = rows.assign(device=rng.choice(["app", "web"], len(rows))).rename(columns={
        "user_id": "customer", "item_id": "product", "cate_id": "category", "time": "ts",
        "label": "clicked"})
    rows.to_csv(tmp_path / "impressions.csv", index=False)
    monkeypatch.chdir(tmp_path)
    source = _python_block("Your own CSV")
    assert len(source.strip().splitlines()) <= 16  # a front-page example stays short
    exec(compile(source, str(README), "exec"), {"__name__": "__main__"})
    out = capsys.readouterr().out
    assert re.search(r"test AUC 0\.\d+", out)
    assert "product" in out and "weight" in out  # the explanation's table


def test_readme_is_a_front_page():
    text = README.read_text(encoding="utf-8")
    assert len(text.split()) < 1500
    headers = [line for line in text.splitlines() if line.startswith("| test AUC")]
    assert len(headers) == 1  # one small results table
    for page in ("docs/benchmarks.md", "docs/user-guide/tuning.md", "docs/user-guide/scaling.md",
                 "docs/internals.md"):
        assert f"]({page})" in text and (ROOT / page).exists(), page


def _bash_commands(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return [line for block in re.findall(r"```bash\n(.*?)```", text, re.S)
            for line in block.splitlines() if line.startswith("python3 -m pip install torch")]


def test_installation_page_gives_the_readmes_set_up_commands_and_real_extras():
    readme = _bash_commands(README)
    assert readme == [
        "python3 -m pip install torch==2.13.0 && python3 -m pip install -e . && "
        "python3 -m sklearn_din",
        'python3 -m pip install torch==2.13.0 && python3 -m pip install -e ".[test,docs]" && '
        "python3 -m pytest",
    ]
    assert _bash_commands(ROOT / "docs" / "installation.md") == readme
    assert readme[1].split("&& ")[-1] == (ROOT / ".ci" / "run").read_text().split("&& ")[-1].strip()
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"])
    install = (ROOT / "docs" / "installation.md").read_text(encoding="utf-8")
    named = set(re.findall(r'-e "\.\[([\w,]+)\]"', install))
    assert named and {e for group in named for e in group.split(",")} <= extras
    assert {"plot", "parquet", "test", "docs"} <= extras


def test_package_ships_py_typed():
    assert (ROOT / "sklearn_din" / "py.typed").is_file()
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["sklearn_din"]


def test_tuning_guides_defaults_table_states_the_real_defaults():
    # The table of "The defaults, and how they were chosen" is where users read what they
    # get; each row's value must be the constructor's (the one source of truth).
    import ast

    from sklearn_din import DINClassifier, SequenceFeatureTransformer

    text = (ROOT / "docs" / "user-guide" / "tuning.md").read_text(encoding="utf-8")
    section = text.split("## The defaults, and how they were chosen", 1)[1].split("\n### ", 1)[0]
    rows = re.findall(r"^\| `(\w+)(?:\((\w+)=(\w+)\))?` \| `?([^`|]+)`?[^|]* \|", section, re.M)
    classifier = DINClassifier().get_params()
    transformer = SequenceFeatureTransformer().get_params()
    checked = set()
    for name, parameter, value, stated in rows:
        if parameter:  # "SequenceFeatureTransformer(recency=True)"
            assert name == "SequenceFeatureTransformer"
            assert transformer[parameter] == ast.literal_eval(value), parameter
            checked.add(parameter)
            continue
        assert name in classifier, f"{name} is not a DINClassifier parameter"
        assert classifier[name] == ast.literal_eval(stated.strip()), name
        checked.add(name)
    assert {"lr", "weight_averaging", "n_iter_no_change", "behaviour_dropout", "embed_dim",
            "attention_sink", "recency"} <= checked
