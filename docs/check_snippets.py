"""Run the Python examples of the documentation pages.

Every fenced block that opens with exactly three backticks and ``python`` is run;
the blocks of one page run in order in one namespace, so later blocks can use what
earlier ones defined. Blocks that cannot run here (a GPU, a file of yours) are
fenced as ``py`` instead: highlighted the same, not run.

Usage, from the repository root::

    python docs/check_snippets.py                       # every page
    python docs/check_snippets.py docs/user-guide/tuning.md

Exits non-zero when a block raises. Runs in a temporary directory, with one torch
thread and matplotlib's Agg backend.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path

DOCS = Path(__file__).resolve().parent
BLOCK = re.compile(r"^(?P<indent>[ ]*)```python[ ]*\n(?P<body>.*?)^(?P=indent)```[ ]*$",
                   re.MULTILINE | re.DOTALL)


def blocks(page: Path) -> list[tuple[int, str]]:
    """(line number, dedented source) of each runnable block of ``page``."""
    text = page.read_text(encoding="utf-8")
    found = []
    for match in BLOCK.finditer(text):
        indent = len(match["indent"])
        lines = [line[indent:] for line in match["body"].splitlines()]
        found.append((text.count("\n", 0, match.start()) + 1, "\n".join(lines)))
    return found


def run_page(page: Path) -> bool:
    namespace: dict = {"__name__": "__main__"}
    for line, source in blocks(page):
        start = time.perf_counter()
        try:
            exec(compile(source, f"{page.relative_to(DOCS)}:{line}", "exec"), namespace)
        except Exception:
            traceback.print_exc()
            print(f"FAILED {page.relative_to(DOCS)}, block at line {line}")
            return False
        print(f"ok     {page.relative_to(DOCS)}:{line} ({time.perf_counter() - start:.1f} s)")
    return True


def main(argv: list[str]) -> int:
    import matplotlib
    import torch

    matplotlib.use("Agg")
    torch.set_num_threads(1)
    pages = [Path(p).resolve() for p in argv] or sorted(DOCS.rglob("*.md"))
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            for page in pages:
                if not run_page(page):
                    failed.append(page)
                import matplotlib.pyplot as plt

                plt.close("all")
        finally:
            os.chdir(cwd)
    print(f"{len(pages) - len(failed)} page(s) passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
