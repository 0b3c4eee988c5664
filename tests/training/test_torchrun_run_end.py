"""Under torchrun (two gloo processes on the CPU), the end of a run is the run's, not each process's: every
process exits with the status of the signal that stopped the run, whichever process got it; the training
images that could not be read are counted in one line for the run, from rank 0; and what a process other
than rank 0 warns of while it trains names its rank."""

import contextlib
import io
import os
import pickle
import signal
import sys
import types
import warnings
from pathlib import Path

import pytest
import torch.multiprocessing as mp

HERE = Path(__file__).resolve().parent


def _join_as(rank: int, port: int) -> None:
    """Set the environment torchrun gives process ``rank`` of 2 (its agent's store at ``port``)."""
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1",
                       "TORCHELASTIC_USE_AGENT_STORE": "True",
                       "GLOO_SOCKET_IFNAME": "lo"})  # gloo would pick an interface from the host name


def _two_ranks(tmp_path, target) -> dict:
    """Run ``target(rank, port, tmp)`` in two spawned processes; {rank: what each pickled to rank{N}.pkl}."""
    from torch.distributed import TCPStore

    store = TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)  # as torchrun's agent holds it
    ctx = mp.start_processes(target, args=(store.port, str(tmp_path)), nprocs=2, join=False,
                             start_method="spawn")
    while not ctx.join(timeout=60):
        pass
    return {rank: pickle.loads((tmp_path / f"rank{rank}.pkl").read_bytes()) for rank in (0, 1)}


def _signalled_rank(rank: int, port: int, tmp: str) -> None:
    """Train the toy model; rank 0 alone gets a SIGTERM (while its 4th batch is fetched)."""
    _join_as(rank, port)
    sys.path.insert(0, str(HERE))
    import toy_train

    from maskrcnn.commands.train import exit_status
    from maskrcnn.config import load_config
    from maskrcnn.engine import distributed as du
    from maskrcnn.engine.trainer import build_trainer

    du.init_distributed("cpu")
    make = toy_train.make_batches_fn(rank=rank, world_size=2, per_rank=2, nan_at=-1)

    def batches(start_iter):
        for i, batch in enumerate(make(start_iter)):
            if i == 3 and rank == 0:  # a real SIGTERM, to this process only, its handler installed
                os.kill(os.getpid(), signal.SIGTERM)
            yield batch

    cfg = load_config("demo", {"solver.iters": 400, "solver.checkpoint_period": 1000, "solver.batch_size": 4})
    trainer = build_trainer(cfg, toy_train.Toy(), make_batches=batches, output_dir=os.path.join(tmp, "run"),
                            class_names=["__background__", "x"], tensorboard=False, plot=False,
                            log_stream=io.StringIO())
    result = trainer.train()
    du.cleanup()
    with open(os.path.join(tmp, f"rank{rank}.pkl"), "wb") as f:
        pickle.dump((result["iteration"], result["signal"], exit_status(result)), f)
    os._exit(0)


@pytest.mark.slow  # two processes
def test_every_rank_exits_with_the_signal_that_stopped_the_run(tmp_path):
    # the probe: SIGTERM to rank 0 alone; rank 1 exited 130 (Ctrl-C's status), torchrun's "root cause"
    said = _two_ranks(tmp_path, _signalled_rank)
    assert said[0] == (4, signal.SIGTERM, 143), said
    assert said[1] == (4, signal.SIGTERM, 143), said


BAD = "cannot decode image (image file is truncated); using another image instead"


def _unread_rank(rank: int, port: int, tmp: str) -> None:
    """``maskrcnn train`` with a stand-in trainer: each rank warns of and could not read its own images
    (c.png on both: each process notes it once)."""
    _join_as(rank, port)
    from maskrcnn.cli import main
    from maskrcnn.engine import distributed as du
    from maskrcnn.engine import training

    du.init_distributed("cpu")
    mine = {0: ["a.png", "c.png"], 1: ["b.png", "c.png", "d.png"]}[rank]

    def train():
        warnings.warn(f"{mine[0]}: {BAD}", stacklevel=1)
        return {"interrupted": False, "iteration": 10}

    trainer = types.SimpleNamespace(is_main=rank == 0, train=train, unread_images=dict.fromkeys(mine))
    training.build_training = lambda cfg, **kw: (trainer, cfg)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["train", "--config", "r18_fpn", "--train-json", "t.json", "--train-images", tmp,
                   "--output", os.path.join(tmp, "run"), "--device", "cpu"])
    with open(os.path.join(tmp, f"rank{rank}.pkl"), "wb") as f:
        pickle.dump((rc, out.getvalue(), err.getvalue()), f)
    os._exit(0)


@pytest.mark.slow  # two processes
def test_unread_images_are_counted_once_for_the_run_and_a_ranks_warnings_name_it(tmp_path):
    # the probe: "warning: 3 training image(s) could not be used ... (rank 1's share)", then rank 0's
    said = _two_ranks(tmp_path, _unread_rank)
    (rc0, out0, err0), (rc1, out1, err1) = said[0], said[1]
    assert rc0 == rc1 == 0, said
    line = [x for x in out0.splitlines() if "could not be used" in x]
    assert line == ["warning: 4 training image(s) could not be used (unreadable, or not the size their "
                    "record gives) and were replaced by other images: a.png, c.png, b.png, d.png"], out0
    assert "could not be used" not in out1 and "share" not in out0 + out1, (out0, out1)
    # (warned from this file: "warning (test_torchrun_run_end): ...", as another package's would read)
    said0, said1 = err0.split(": ", 1)[1], err1.split(": ", 1)[1]
    assert said0 == f"a.png: {BAD}\n", err0
    assert said1 == f"rank 1: b.png: {BAD}\n", err1
