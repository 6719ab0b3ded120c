"""Griffe extension: render two numpydoc habits of the docstrings in MkDocs.

1. Sphinx cross-reference roles (``:class:`DINClassifier```,
   ``:func:`~sklearn_din.datasets.sample_negatives```) read well in ``help()`` and
   in a Sphinx build, but mkdocstrings does not resolve them. Each is rewritten
   into a Markdown link to the object's API page when the object is documented
   there, and into plain code otherwise.
2. numpydoc allows one entry for several names (``user_col, item_col : str``);
   griffe's parser then shows one name's default for all of them. Such entries are
   split into one entry per name, each with the shared description.

Loaded from ``mkdocs.yml``; the package's docstrings themselves are not changed.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|exc|obj):`(~?)([^`]+)`")

# Objects that the API reference pages render, by the path used in their ::: directive.
_PUBLIC = [
    "sklearn_din.SequenceFeatureTransformer",
    "sklearn_din.DINClassifier",
    "sklearn_din.NoHistoryWarning",
    "sklearn_din.explain_attention",
    "sklearn_din.save_model",
    "sklearn_din.load_model",
    "sklearn_din.ModelFileError",
    "sklearn_din.StopOnNonFiniteLoss",
    "sklearn_din.NonFiniteLossError",
    "sklearn_din.DeepInterestNetwork",
    "sklearn_din.Dice",
    "sklearn_din.datasets.make_interactions",
    "sklearn_din.datasets.sample_negatives",
    "sklearn_din.datasets.leave_last_out_split",
    "sklearn_din.metrics.gauc_score",
    "sklearn_din.metrics.rela_impr",
    "sklearn_din.plotting.plot_attention",
    "sklearn_din.plotting.plot_training_curves",
    "sklearn_din.plotting.plot_calibration",
]
_BY_NAME = {path.rsplit(".", 1)[1]: path for path in _PUBLIC}


def _replace(match: re.Match[str]) -> str:
    short, target = match[1] == "~", match[2]
    name = target.rsplit(".", 1)[-1]
    shown = name if short else target
    path = target if target in _PUBLIC else _BY_NAME.get(target)
    return f"[`{shown}`][{path}]" if path else f"`{shown}`"


_SHARED_ENTRY = re.compile(r"^(\w+(?:\s*,\s*\w+)+)\s*:\s*(.+)$")
_ENTRY_SECTIONS = {"parameters", "other parameters", "returns", "yields", "receives", "attributes"}


def _split_shared_entries(text: str) -> str:
    """``a, b : int`` + indented description -> one entry per name, in entry sections."""
    lines = text.splitlines()
    out: list[str] = []
    section = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if i + 1 < len(lines) and line.strip() and set(lines[i + 1].strip()) == {"-"}:
            section = line.strip().lower()
        match = _SHARED_ENTRY.match(line) if section in _ENTRY_SECTIONS else None
        if match is None:
            out.append(line)
            i += 1
            continue
        j = i + 1
        while j < len(lines) and (lines[j].startswith((" ", "\t")) or (
                not lines[j].strip() and j + 1 < len(lines)
                and lines[j + 1].startswith((" ", "\t")))):
            j += 1
        for name in match[1].split(","):
            out += [f"{name.strip()} : {match[2]}", *lines[i + 1 : j]]
        i = j
    return "\n".join(out)


def _rewrite(obj: Any, seen: set[int]) -> None:
    if id(obj) in seen or obj.is_alias:
        return
    seen.add(id(obj))
    if obj.docstring is not None:
        value = _ROLE.sub(_replace, obj.docstring.value)
        obj.docstring.value = _split_shared_entries(value)
    for member in obj.members.values():
        _rewrite(member, seen)


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles in every docstring of a loaded package."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        _rewrite(pkg, set())
