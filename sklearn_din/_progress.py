"""Progress of long operations: a tqdm bar in a terminal, plain lines elsewhere.

A tqdm bar redraws itself with carriage returns, which turn a log file or a CI log
into one very long line. When the stream is not a terminal (a file, a pipe, a
notebook's captured output), :class:`Progress` writes a plain line at every tenth
of the work instead: no carriage returns, no colour codes.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

import tqdm

# Plain-text mode writes a line each time another tenth of the total is done.
PLAIN_STEPS = 10


def is_terminal(stream: object) -> bool:
    """Whether ``stream`` is an interactive terminal (a TTY)."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class Progress:
    """Count units of work (batches, rows) towards ``total``.

    Parameters
    ----------
    total : int or None
        Units expected; None when unknown (plain mode then writes no lines until
        :meth:`close`).
    desc : str
        What is being counted, shown in front of the count.
    unit : str, default="it"
        Name of one unit, e.g. "batch" or "row".
    stream : text stream or None, default=None
        Where to write; None means ``sys.stderr`` at the time of each write.
    """

    def __init__(self, total: int | None, desc: str, *, unit: str = "it",
                 stream: TextIO | None = None) -> None:
        self.total = total
        self.desc = desc
        self.unit = unit
        self.stream = stream
        self.done = 0
        self.start = time.perf_counter()
        self.postfix: dict[str, float] = {}
        self.next_line = 1
        self.written: int | None = None  # the count the last plain line showed
        out = self._stream()
        self.bar = (tqdm.tqdm(total=total, desc=desc, unit=unit, leave=False, file=out)
                    if is_terminal(out) else None)

    def _stream(self) -> TextIO:
        return self.stream if self.stream is not None else sys.stderr

    def update(self, n: int = 1, **postfix: float) -> None:
        """Record ``n`` more units done, and values to show next to the count."""
        self.done += n
        self.postfix.update(postfix)
        if self.bar is not None:
            if postfix:
                self.bar.set_postfix(self.postfix, refresh=False)
            self.bar.update(n)
            return
        if self.total:
            # a line each time the count passes the next tenth of the total
            step = self.done * PLAIN_STEPS // self.total
            if step >= self.next_line:
                self.next_line = step + 1
                self._line()

    def _line(self) -> None:
        total = f"/{self.total:,}" if self.total else ""
        percent = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        values = "".join(f", {k}={v:.4g}" for k, v in self.postfix.items())
        self.written = self.done
        units = self.unit + ("es" if self.unit.endswith(("s", "sh", "ch", "x")) else "s")
        print(f"{self.desc}: {self.done:,}{total} {units}{percent}, "
              f"{time.perf_counter() - self.start:.1f}s{values}", file=self._stream(), flush=True)

    def close(self) -> None:
        """End the bar; in plain mode, write the final count if no line showed it yet."""
        if self.bar is not None:
            self.bar.close()
        elif self.written != self.done:
            self._line()
