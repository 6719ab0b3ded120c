"""The documentation site builds without warnings (broken links, bad references)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
