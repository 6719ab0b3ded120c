"""Peak memory one epoch of ``DINClassifier.fit`` adds to a process holding ~900k rows.

Issue 18's target: the peak RSS a 1M-row fit adds <= 1x its int arrays (the training
DataFrame's int32 block plus the int8 labels). ``speed.py`` measures it once among its speed
runs; this script measures it alone, repeatably, with the same data builder (``speed.py``'s
``click_log``, ``transformed_rows``, ``save_rows``: a synthetic-short log, per-user time
split, one negative per click, histories of 50 with recency) and the same worker
(``speed.py``'s ``worker`` and ``fit_memory``: tutorial sizes, 1 epoch, batch 1024, the rows
loaded from ``.npy`` and the high-water mark reset before ``fit``), each run in a fresh
process, one at a time:

* ``early_stopping=False``: speed.py's setting (every row trains);
* ``early_stopping="auto"``: what a user gets at this size (a 10% time-respecting
  validation split, scored at the epoch's end).

``--trace`` adds one run per setting that records, per stage of ``fit`` (validation and
``InputState.learn``, the split, the iterators, the training steps, the validation scoring),
the peak RSS above the stage's start and the RSS it keeps, by resetting the kernel's
high-water mark (``/proc/self/clear_refs``) at each stage's start.

Usage::

    python benchmarks/fit_memory.py                   # 2 repeats x 2 settings, ~10 min
    python benchmarks/fit_memory.py --repeats 1 --trace
    python benchmarks/fit_memory.py --rows 100000     # quicker, smaller

Writes ``benchmarks/results/fit_memory.md`` and ``.json`` (``--out`` to change). The workers
import ``sklearn_din`` from ``--checkout`` (default: the checkout holding this script, not an
installed copy); ``--baseline DIR`` also measures the package in DIR, each job right after the
checkout's (e.g. ``git archive main sklearn_din | tar -x -C DIR``). The report names the
package each worker imported.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import (  # noqa: E402
    DATA,
    RESULTS,
    ROOT,
    add_worker_arguments,
    answer_worker,
    machine_info,
    machine_line,
    mark_end,
    markdown_table,
    run_worker,
    write_report,
)
from memory import _maxrss, _reset_peak, _rss, _status  # noqa: E402
from speed import FIT_MEMORY, click_log, save_rows, transformed_rows  # noqa: E402

MB = 2**20
SETTINGS = {"off": False, "auto": "auto"}


# ================================================================================ in the worker
class StageTracker:
    """Peak RSS above each stage's start, by resetting VmHWM as a stage begins.

    Stages nest: entering one first folds the high-water mark so far into the enclosing
    stage's peak, so a reset never hides the outer stage's peak.
    """

    def __init__(self) -> None:
        self.stack: list[dict] = []
        self.stages: dict[str, dict] = {}

    def _fold(self) -> None:
        if self.stack:
            self.stack[-1]["peak"] = max(self.stack[-1]["peak"], _status()["VmHWM"])

    def enter(self, name: str) -> None:
        self._fold()
        _reset_peak()
        rss = _rss()
        self.stack.append({"name": name, "start": rss, "peak": rss})

    def exit(self) -> None:
        self._fold()
        frame = self.stack.pop()
        if self.stack:
            self.stack[-1]["peak"] = max(self.stack[-1]["peak"], frame["peak"])
        stage = self.stages.setdefault(frame["name"], {"calls": 0, "peak_above_start": 0,
                                                       "kept": 0, "start": frame["start"]})
        stage["calls"] += 1
        stage["peak_above_start"] = max(stage["peak_above_start"], frame["peak"] - frame["start"])
        stage["kept"] = max(stage["kept"], _rss() - frame["start"])

    def wrap(self, owner: object, attribute: str, name: str | None = None) -> None:
        original = getattr(owner, attribute)
        label = name or attribute

        @functools.wraps(original)
        def traced(*args: object, **kwargs: object) -> object:
            self.enter(label)
            try:
                return original(*args, **kwargs)
            finally:
                self.exit()

        setattr(owner, attribute, traced)


def install_tracing() -> StageTracker:
    """Wrap the stages of fit that hold or build arrays."""
    from skorch import NeuralNet

    from sklearn_din import _batching, _classifier, _layout
    from sklearn_din._classifier import DINClassifier

    tracker = StageTracker()
    tracker.wrap(DINClassifier, "fit")
    tracker.wrap(DINClassifier, "_training_inputs")
    tracker.wrap(_layout.InputLayout, "check", "InputLayout.check")
    tracker.wrap(_layout.InputLayout, "vocab_sizes", "InputLayout.vocab_sizes")
    tracker.wrap(_layout.InputLayout, "to_arrays", "InputLayout.to_arrays")
    tracker.wrap(_layout, "id_frequencies")
    tracker.wrap(DINClassifier, "_early_stopping_rows")
    tracker.wrap(DINClassifier, "initialize")
    tracker.wrap(DINClassifier, "get_split_datasets")
    tracker.wrap(DINClassifier, "get_iterator")
    tracker.wrap(_batching.TensorBatchIterator, "__init__", "TensorBatchIterator.__init__")
    tracker.wrap(NeuralNet, "run_single_epoch")
    tracker.wrap(DINClassifier, "train_step")
    tracker.wrap(NeuralNet, "validation_step")
    tracker.wrap(_classifier, "_valid_auc")
    tracker.wrap(DINClassifier, "predict_proba")
    return tracker


def worker(spec: dict) -> dict:
    """speed.py's fit_memory worker, with the stages traced when ``spec["trace"]``."""
    import speed

    import sklearn_din

    tracker = install_tracing() if spec.get("trace") else None
    result = {**speed.worker(spec), "sklearn_din_file": sklearn_din.__file__}
    if tracker is not None:
        result["stages"] = tracker.stages
    return result


# ================================================================================ in the parent
def int_arrays_mb(meta: dict) -> float:
    return meta["train_int_mb"]


def ratio(run: dict, meta: dict, key: str = "hwm_mb") -> float:
    return (run[key] - run["rss_before_mb"]) / int_arrays_mb(meta)


def build_data(args: argparse.Namespace, directory: Path) -> dict:
    meta_path = directory / "meta.json"
    if meta_path.exists():
        return json.loads(meta_path.read_text())
    log = click_log("synthetic-short", args.rows, args.seed, args.data_dir)
    meta = save_rows(transformed_rows(log, args.seed), directory, log)
    meta_path.write_text(json.dumps(meta))
    return meta


def render(report: dict) -> str:
    meta = report["data"]
    lines = [
        "# Fit memory: the peak RSS one epoch of `fit` adds (issue 18)", "",
        f"Command: `{report['command']}` (runtime {report['runtime_s'] / 60:.1f} min)", "",
        machine_line(report["machine"]), "",
        f"Data: speed.py's synthetic-short rows ({meta['n_train']:,} training rows of "
        f"{meta['users']:,} users, mean history {meta['mean_hist_len']:.1f} of 50); int arrays "
        f"= the int32 block plus int8 labels = {int_arrays_mb(meta):,.0f} MB. Each run a fresh "
        f"process ({report['threads']} torch thread(s)): load the rows, reset the high-water "
        "mark, one epoch of `fit` (tutorial sizes, batch 1024). `VmHWM` = the kernel's "
        "high-water mark after the reset (the fit's own peak); `ru_maxrss` also holds the "
        "peak of any thread that exited before the reset and the parent's peak, copied at "
        f"`exec` (this parent's: {report['parent_maxrss_mb']:,.0f} MB): speed.py's figure. "
        "MB = 2^20 bytes.",
        "",
    ]
    lines += [f"Code: {', '.join(f'{k} = `{v}`' for k, v in report['code'].items())}.", ""]
    rows = []
    for run in report["runs"]:
        if "error" in run:
            rows.append([run["code"], run["setting"], "failed", run["error"][-200:], "", "", "",
                         "", ""])
            continue
        rows.append([run["code"], f"`early_stopping={SETTINGS[run['setting']]!r}`",
                     str(run["repeat"]),
                     f"{run['rss_before_mb']:,.0f}", f"{run['hwm_mb']:,.0f}",
                     f"{run['hwm_mb'] - run['rss_before_mb']:,.0f}",
                     f"**{ratio(run, meta):.2f}x**",
                     f"{run['peak_mb']:,.0f} ({ratio(run, meta, 'peak_mb'):.2f}x)",
                     f"{run['fit_s']:.0f}"])
    lines += markdown_table(["code", "setting", "repeat", "RSS before fit MB", "VmHWM MB",
                             "added MB", f"added / int arrays (target <= {FIT_MEMORY:g}x)",
                             "ru_maxrss MB (ratio)", "fit s"], rows) + [""]
    for name in report["code"]:
        for setting in SETTINGS:
            ratios = [ratio(r, meta) for r in report["runs"] if "error" not in r
                      and r["code"] == name and r["setting"] == setting]
            if ratios:
                lines.append(f"- {name}, `early_stopping={SETTINGS[setting]!r}`: added / int "
                             f"arrays {', '.join(f'{x:.2f}x' for x in ratios)} (median "
                             f"{statistics.median(ratios):.2f}x, target <= {FIT_MEMORY:g}x: "
                             f"{'PASS' if max(ratios) <= FIT_MEMORY else 'MISS'})")
    for run in report["traces"]:
        if "error" in run:
            continue
        added = run["stages"]["fit"]["peak_above_start"] / MB
        lines += ["", f"### Stages of `fit` ({run['code']}), "
                      f"`early_stopping={SETTINGS[run['setting']]!r}` "
                      f"(traced run: `fit` added {added:,.0f} MB = "
                      f"{added / int_arrays_mb(meta):.2f}x)", "",
                  "Peak above start: the highest RSS during the stage (its nested stages "
                  "included) minus RSS at its start; kept: RSS at its end minus at its start "
                  "(the largest over its calls).", ""]
        stage_rows = [[f"`{name}`", str(s["calls"]),
                       f"{(s['start'] - run['rss_before_mb'] * MB) / MB:,.0f}",
                       f"{s['peak_above_start'] / MB:,.0f}", f"{s['kept'] / MB:,.0f}"]
                      for name, s in run["stages"].items()]
        lines += markdown_table(["stage", "calls", "RSS at first start - before fit MB",
                                 "peak above start MB", "kept MB"], stage_rows)
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000,
                   help="training rows asked of speed.py's click_log (its --fit-rows)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--settings", default="off,auto", help="comma list of off,auto")
    p.add_argument("--trace", action="store_true",
                   help="one traced run per setting (of the checkout)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rows-dir", type=Path, default=None,
                   help="keep (and reuse) the built rows here instead of a temporary folder")
    p.add_argument("--data-dir", type=Path, default=DATA)
    p.add_argument("--checkout", type=Path, default=ROOT,
                   help="folder holding the sklearn_din package the workers measure")
    p.add_argument("--baseline", type=Path, default=None,
                   help="folder of another sklearn_din package, measured after each job")
    p.add_argument("--out", type=Path, default=RESULTS / "fit_memory.md")
    add_worker_arguments(p)
    args = p.parse_args(argv)
    args.settings = args.settings.split(",")
    if set(args.settings) - set(SETTINGS):
        p.error(f"--settings: choose from {list(SETTINGS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if answer_worker(args, worker):
        return 0
    command = "python benchmarks/fit_memory.py " + " ".join(sys.argv[1:] if argv is None
                                                            else argv)
    began = time.perf_counter()
    code = {"checkout": args.checkout.resolve()}
    if args.baseline is not None:
        code["baseline"] = args.baseline.resolve()
    report = {"command": command.strip(), "machine": machine_info(), "threads": args.threads,
              "code": {k: str(v) for k, v in code.items()}, "runs": [], "traces": []}
    with tempfile.TemporaryDirectory(prefix="din_fit_memory_") as tmp:
        rows_dir = args.rows_dir or Path(tmp) / "rows"
        meta = build_data(args, rows_dir)
        report["data"] = meta
        # A child's getrusage maximum starts from this (Linux copies it at exec).
        report["parent_maxrss_mb"] = _maxrss() / MB
        print(f"rows: {meta['n_train']:,} ({int_arrays_mb(meta):,.0f} MB of int arrays) "
              f"in {time.perf_counter() - began:.0f} s", flush=True)
        jobs = [(s, r, False) for r in range(args.repeats) for s in args.settings]
        jobs += [(s, 0, True) for s in args.settings] if args.trace else []
        # Traced runs of the checkout only: the stages say where its memory goes.
        pairs = [(job, name) for job in jobs for name in code if not job[2] or name == "checkout"]
        for (setting, repeat, trace), name in pairs:
            spec = {"system": "fit_memory", "size": "tutorial", "data": meta["dir"],
                    "threads": args.threads, "seed": args.seed, "trace": trace,
                    "early_stopping": SETTINGS[setting],
                    "tag": f"{name}-{setting}-{repeat}{'-trace' if trace else ''}"}
            run = {"code": name, "setting": setting, "repeat": repeat,
                   **run_worker(Path(__file__), spec, Path(tmp), threads=args.threads,
                                env={"PYTHONPATH": str(code[name])})}
            if "error" not in run and Path(run["sklearn_din_file"]).parents[1] != code[name]:
                raise RuntimeError(f"{name}: the worker imported {run['sklearn_din_file']}")
            (report["traces"] if trace else report["runs"]).append(run)
            if "error" in run:
                print(f"  {spec['tag']}: {run['error'][-2000:]}", flush=True)
            elif trace:  # the stages reset the high-water mark: the fit's peak is its stage's
                added = run["stages"]["fit"]["peak_above_start"] / MB
                print(f"  {spec['tag']}: added {added:,.0f} MB = "
                      f"{added / int_arrays_mb(meta):.2f}x", flush=True)
            else:
                print(f"  {spec['tag']}: added {run['hwm_mb'] - run['rss_before_mb']:,.0f} MB "
                      f"= {ratio(run, meta):.2f}x (ru_maxrss {ratio(run, meta, 'peak_mb'):.2f}x"
                      f", reset {'worked' if run['peak_reset'] else 'failed'}), "
                      f"fit {run['fit_s']:.0f} s", flush=True)
    report["runtime_s"] = time.perf_counter() - began
    mark_end(report["machine"])
    markdown = render(report)
    print(markdown)
    write_report(args.out.parent, args.out.stem, markdown, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
