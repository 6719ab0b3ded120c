"""Train DINClassifier data-parallel with torchrun, and compare with a one-process fit.

``DINClassifier(distributed=True)`` trains with PyTorch's
``DistributedDataParallel`` in every process of a ``torch.distributed`` job.
Each process builds the same training rows, calls ``fit`` with them and
trains on its shard of every batch of ``batch_size`` rows; the gradients are
averaged over the processes after each backward pass, so the steps are those of
a one-process fit with the same ``batch_size``. Prediction stays local: here
rank 0 scores the test rows and writes them out.

Run without ``torchrun``, the script launches itself under ``torchrun``
(``python -m torch.distributed.run --standalone``) with ``--nproc`` processes,
then fits the same models in this one process and prints the difference: the
check that data-parallel training changes the speed, not the model. With
``activation="prelu"`` the steps are the same up to floating-point rounding
(after hundreds of steps as far apart as two one-process fits with different
thread counts); with the default Dice activation the batch statistics of each
process's shard differ from those of the whole batch, and the models differ more
(less than two seeds do). Behaviour dropout is off here (``--behaviour-dropout 0``, the
default's 0.4 otherwise): each process draws the behaviours it leaves out for its own
shard, so with it the two fits differ as two seeds do.

On CPU the processes talk over the ``gloo`` backend; on GPUs use ``nccl`` and
one GPU per process (``--device cuda``: process ``LOCAL_RANK`` trains on
``cuda:LOCAL_RANK``).

Usage::

    python examples/ddp_train.py                   # 2 CPU processes vs 1, then compares
    python examples/ddp_train.py --small           # a few seconds (used by the tests)
    torchrun --standalone --nproc-per-node 2 examples/ddp_train.py      # as a user runs it
    torchrun --standalone --nproc-per-node 8 examples/ddp_train.py --device cuda   # 8 GPUs
    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d \\
        --rdzv-endpoint node0:29400 examples/ddp_train.py --device cuda       # 2 machines
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from sklearn.metrics import roc_auc_score

from sklearn_din import DINClassifier, SequenceFeatureTransformer
from sklearn_din.datasets import leave_last_out_split, make_interactions, sample_negatives


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Data-parallel DINClassifier training with torchrun.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--small", action="store_true",
                        help="tiny data, 2 epochs (a few seconds; used by the tests)")
    parser.add_argument("--n-users", type=int, default=None,
                        help="users of the generated log (default 3000, 150 with --small)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs (default 3, 2 with --small)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="global batch size (default 1024, 256 with --small)")
    parser.add_argument("--activations", default="prelu,dice",
                        help="comma-separated activations; one model is fitted per activation")
    parser.add_argument("--behaviour-dropout", type=float, default=0.0,
                        help="DINClassifier's behaviour_dropout (0: the fits can match)")
    parser.add_argument("--embedding-l2", type=float, default=0.01,
                        help="the paper's mini-batch aware regularisation")
    parser.add_argument("--nproc", type=int, default=2,
                        help="processes to launch when run without torchrun")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cuda: one GPU per process and the nccl backend")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--out", default=None,
                        help="folder for rank 0's predictions (default: a temporary folder)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and the models")
    args = parser.parse_args(argv)
    args.n_users = args.n_users or (150 if args.small else 3000)
    args.epochs = args.epochs or (2 if args.small else 3)
    args.batch_size = args.batch_size or (256 if args.small else 1024)
    args.activations = [a.strip() for a in args.activations.split(",") if a.strip()]
    return args


def make_data(args: argparse.Namespace) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame,
                                                  np.ndarray]:
    """The same training and test rows in every process (a seeded generated log)."""
    log = make_interactions(n_users=args.n_users, n_items=max(100, args.n_users // 5),
                            n_categories=20, random_state=args.seed)
    train, _, test = leave_last_out_split(sample_negatives(log, random_state=args.seed))
    features = SequenceFeatureTransformer(max_len=20)
    X_train = features.fit_transform(train.drop(columns="label"), train["label"])
    X_test = features.transform(test.drop(columns="label"))
    return X_train, train["label"].to_numpy(), X_test, test["label"].to_numpy()


def make_model(args: argparse.Namespace, activation: str, *, distributed: bool,
               device: str = "cpu") -> DINClassifier:
    return DINClassifier(
        activation=activation, embedding_l2=args.embedding_l2, max_epochs=args.epochs,
        behaviour_dropout=args.behaviour_dropout,
        batch_size=args.batch_size, device=device, distributed=distributed,
        verbose=0, random_state=args.seed,
    )


def parameter_spread(model: DINClassifier) -> float:
    """Largest difference of any parameter or buffer between the processes."""
    flat = torch.cat([t.detach().double().reshape(-1)
                      for t in model.module_.state_dict().values()])
    high, low = flat.clone(), -flat
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    dist.all_reduce(low, op=dist.ReduceOp.MAX)
    return float((high + low).max())


def worker(args: argparse.Namespace) -> int:
    """One process of the torchrun job."""
    torch.set_num_threads(args.threads)
    local_rank = int(os.environ["LOCAL_RANK"])
    device = "cpu"
    if args.device == "cuda":
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if args.device == "cuda" else "gloo")
    try:
        rank, world_size = dist.get_rank(), dist.get_world_size()
        X_train, y_train, X_test, _ = make_data(args)
        out = Path(args.out) if args.out else None
        for activation in args.activations:
            model = make_model(args, activation, distributed=True, device=device)
            dist.barrier()  # time the fit, not the slowest process's data preparation
            start = time.perf_counter()
            model.fit(X_train, y_train)
            seconds = time.perf_counter() - start
            spread = parameter_spread(model)
            if rank == 0:
                proba = model.predict_proba(X_test)[:, 1]
                print(f"{activation}: data-parallel fit on {world_size} processes "
                      f"({dist.get_backend()}): {seconds:.1f} s, {len(X_train):,} rows, "
                      f"largest parameter difference between processes: {spread:g}")
                if out is not None:
                    np.savez(out / f"ddp_{activation}.npz", proba=proba, seconds=seconds,
                             spread=spread, world_size=world_size,
                             train_loss=np.array(model.history[:, "train_loss"]))
        # Leave together: a process that tears down its connections while another still
        # uses them can abort (gloo).
        dist.barrier()
    finally:
        dist.destroy_process_group()
    return 0


def launch(args: argparse.Namespace, argv: list[str], out: Path) -> float:
    """Run this script under torchrun; returns the wall time of the whole job."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", str(args.nproc), str(Path(__file__).resolve()),
               *argv, "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if "LOCAL_RANK" in os.environ:  # started by torchrun
        status = worker(args)
        # Leave without the interpreter's teardown. With torch 2.13, gloo's threads outlive
        # destroy_process_group once DDP has run, and tearing them down at exit aborted
        # about 1 process in 15 here ("terminate called without an active exception"),
        # after everything was written; torchrun then reports the job as failed.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)

    with tempfile.TemporaryDirectory(prefix="ddp_train_") as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        argv = [a for i, a in enumerate(argv)
                if a != "--out" and (i == 0 or argv[i - 1] != "--out")]
        print(f"launching: torchrun --standalone --nproc-per-node {args.nproc} "
              f"examples/ddp_train.py ({args.threads} torch thread(s) per process)")
        job_seconds = launch(args, argv, out)
        print(f"torchrun job: {job_seconds:.1f} s in all (process start, data, fits)")

        torch.set_num_threads(args.threads)
        X_train, y_train, X_test, y_test = make_data(args)
        print()
        print("activation  processes  fit s  test AUC  |p_ddp - p_one|: max, mean")
        for activation in args.activations:
            ddp = np.load(out / f"ddp_{activation}.npz")
            model = make_model(args, activation, distributed=False)
            start = time.perf_counter()
            model.fit(X_train, y_train)
            seconds = time.perf_counter() - start
            proba = model.predict_proba(X_test)[:, 1]
            np.save(out / f"one_{activation}.npy", proba)
            difference = np.abs(ddp["proba"] - proba)
            print(f"{activation:<10}  {int(ddp['world_size']):>9}  {float(ddp['seconds']):5.1f}  "
                  f"{roc_auc_score(y_test, ddp['proba']):.4f}    "
                  f"{difference.max():.1e}, {difference.mean():.1e}")
            print(f"{activation:<10}  {1:>9}  {seconds:5.1f}  "
                  f"{roc_auc_score(y_test, proba):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
