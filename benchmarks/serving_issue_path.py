"""The serving path as it was when issue 16 was filed, timed beside today's in one run.

Issue 16 measured ``pipeline.predict_proba`` on 200 candidate rows at the commit on main
when it was filed (p50 9.6 ms, p99 12.5 ms on that session's machine) and set the target
``score_candidates`` p99 <= 3 ms, "(>= 4x today's pipeline path)": the 4x is against that
path. Absolute milliseconds depend on the machine (the same old path takes 3-4x longer on
some of the machines this project runs on), so ``serving.py`` times the old path itself,
in the same run and on the same requests, and judges the speed-up against it.

The old package cannot be imported beside today's (both are ``sklearn_din``), so it runs
in a worker process: :class:`IssuePath` extracts the commit's ``sklearn_din`` with
``git archive`` into a temporary folder, starts this file as a script with that folder
first on ``PYTHONPATH``, and talks to it over pipes (pickled messages). The worker fits
its own pipeline on the same rows with the settings the old code accepts, and times
``predict_proba`` on the requests it is sent, each call back to back as in
``serving.py``'s steady state, on one torch thread. Only one process works at a time: the
parent waits while the worker times.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# main when issue 16 was filed (the parent of its first commit, e81fa7c's b08a3df).
ISSUE_COMMIT = "45147fe"


def _send(stream, message) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(len(data).to_bytes(8, "little") + data)
    stream.flush()


def _receive(stream):
    size = stream.read(8)
    if len(size) < 8:
        raise EOFError("the worker closed its pipe")
    return pickle.loads(stream.read(int.from_bytes(size, "little")))


class IssuePath:
    """``pipeline.predict_proba`` of ``commit``'s package, in a worker process.

    Parameters
    ----------
    commit : str
        A commit of this repository whose ``sklearn_din`` the worker imports.
    threads : int
        torch threads in the worker.
    """

    def __init__(self, commit: str = ISSUE_COMMIT, threads: int = 1) -> None:
        self.commit = commit
        archive = subprocess.run(["git", "archive", commit, "sklearn_din"], cwd=ROOT,
                                 capture_output=True, check=True).stdout
        self._folder = tempfile.TemporaryDirectory(prefix="sklearn-din-issue16-")
        subprocess.run(["tar", "-x", "-C", self._folder.name], input=archive, check=True)
        env = {**os.environ, "PYTHONPATH": self._folder.name}
        self._process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), str(threads)], env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=self._folder.name)

    def _ask(self, message):
        _send(self._process.stdin, message)
        answer = _receive(self._process.stdout)
        if isinstance(answer, BaseException):
            raise RuntimeError(f"the worker at {self.commit} failed") from answer
        return answer

    def fit(self, X, y, classifier: dict, transformer: dict) -> dict:
        """Fit the old pipeline on (X, y) with the settings it accepts; returns those."""
        return self._ask(("fit", X, y, classifier, transformer))

    def time_block(self, requests: list) -> list[tuple[float, float]]:
        """(wall, CPU) seconds of ``predict_proba`` on each DataFrame, back to back."""
        return self._ask(("time", requests))

    def close(self) -> None:
        if self._process.poll() is None:
            _send(self._process.stdin, ("quit",))
            self._process.wait(timeout=60)
        self._folder.cleanup()

    def __enter__(self) -> IssuePath:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _serve(threads: int) -> None:
    """The worker's loop: answer the parent's messages until it says quit."""
    import numpy as np
    import torch
    from sklearn.pipeline import make_pipeline

    import sklearn_din
    from sklearn_din import DINClassifier, SequenceFeatureTransformer

    torch.set_num_threads(threads)
    here = Path(os.environ["PYTHONPATH"]).resolve()
    assert Path(sklearn_din.__file__).resolve().is_relative_to(here), sklearn_din.__file__
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # anything the old code prints must not reach the pipe
    model = None
    while True:
        message = _receive(stdin)
        try:
            if message[0] == "quit":
                return
            if message[0] == "fit":
                _, X, y, classifier, transformer = message
                known = DINClassifier().get_params()
                known_t = SequenceFeatureTransformer().get_params()
                classifier = {k: v for k, v in classifier.items() if k in known}
                transformer = {k: v for k, v in transformer.items() if k in known_t}
                model = make_pipeline(SequenceFeatureTransformer(**transformer),
                                      DINClassifier(**classifier)).fit(X, y)
                answer = {"classifier": classifier, "transformer": transformer}
            else:
                answer = []
                for rows in message[1]:
                    wall, cpu = time.perf_counter(), time.thread_time()
                    proba = model.predict_proba(rows)
                    answer.append((time.perf_counter() - wall, time.thread_time() - cpu))
                    assert proba.shape == (len(rows), 2) and np.isfinite(proba).all()
        except Exception as error:  # sent back, raised in the parent
            answer = error
        _send(stdout, answer)


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
