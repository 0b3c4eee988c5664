"""Under torchrun a command-level message prints once (rank 0), a rank's own error names its rank, the
peers' loss of a process that died reads as such, and the commands that do not share their work refuse
in one line before any work."""

import os
import pathlib
import pickle
import time
import types

import pytest
import torch
import torch.multiprocessing as mp

from maskrcnn.cli import main
from maskrcnn.engine import distributed as du


def _torchrun(monkeypatch, rank: int, world: int = 2) -> None:
    for k, v in {"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank)}.items():
        monkeypatch.setenv(k, v)



def _train_as(monkeypatch, tmp_path, rank: int, *, world_size: int, batch_size: int) -> int:
    """``maskrcnn train`` as process ``rank`` of ``world_size`` would run it (t.json does not exist)."""
    monkeypatch.setattr(du, "init_distributed", lambda device: (rank, world_size, torch.device("cpu")))
    return main(["train", "--config", "r18_fpn", "--train-json", str(tmp_path / "t.json"), "--train-images",
                 str(tmp_path), "--output", str(tmp_path / f"run{rank}"), "--device", "cpu", "--set",
                 f"solver.batch_size={batch_size}", "model.norm=bn", "model.freeze_at=0"])

@pytest.mark.parametrize("command", ["eval", "predict"])
def test_single_process_commands_refuse_under_torchrun_once(monkeypatch, capsys, tmp_path, command):
    args = {"eval": ["eval", "--weights", "w.pth", "--json", "gt.json", "--images", "im", "--output", "o"],
            "predict": ["predict", "--weights", "w.pth", "--output", "o", "a.jpg"]}[command]
    monkeypatch.chdir(tmp_path)
    said = []
    for rank in (0, 1):
        _torchrun(monkeypatch, rank)
        assert main(args) == 2
        said.append(capsys.readouterr().err)
    assert said[0].startswith(f"maskrcnn {command} runs in one process; start it without torchrun")
    assert said[0].count("\n") == 1 and said[1] == ""  # one line, from rank 0
    assert not (tmp_path / "o").exists()  # before any work


def test_shared_setup_error_prints_from_rank_zero_only(monkeypatch, capsys, tmp_path):
    # every rank meets "batch_size 3 is not divisible by 2 processes": printed twice, glued, before
    said = []
    for rank in (0, 1):
        _torchrun(monkeypatch, rank)
        assert _train_as(monkeypatch, tmp_path, rank, world_size=2, batch_size=3) == 1
        said.append(capsys.readouterr().err)
    shared = "maskrcnn train: error: solver.batch_size 3 is not divisible by 2 processes"
    assert said[0].count(shared) == 1 and said[0].count("error: ") == 1, said[0]
    # and it says the ways out: a batch that 2 processes share equally, or a process count that divides 3
    assert said[0].strip().endswith("by 2 processes, which take equal shares of the batch: --set "
                                    "solver.batch_size=4, or start a number of processes that divides 3 "
                                    "(1 or 3)"), said[0]
    assert said[1] == ""


def test_resuming_a_batch_that_the_processes_cannot_share_says_where_it_comes_from(monkeypatch, capsys,
                                                                                   tmp_path):
    # the probe: a run of batch 3 resumed under 2 processes, "solver.batch_size 3 is not divisible by 2
    # processes" and nothing else: the value is the run's (its config.yaml), not the command's
    from maskrcnn.config import load_config, save_config

    run = tmp_path / "run0"
    run.mkdir()
    save_config(load_config("r18_fpn", {"solver.batch_size": 3, "model.norm": "bn", "model.freeze_at": 0}),
                run / "config.yaml")
    _torchrun(monkeypatch, 0)
    monkeypatch.setattr(du, "init_distributed", lambda device: (0, 2, torch.device("cpu")))
    assert main(["train", "--config", "r18_fpn", "--train-json", str(tmp_path / "t.json"), "--train-images",
                 str(tmp_path), "--output", str(run), "--device", "cpu", "--resume"]) == 1
    err = capsys.readouterr().err
    assert err.count("error: ") == 1, err
    assert (f"error: solver.batch_size 3 (the run's, from {run / 'config.yaml'}) is not divisible by 2 "
            "processes: resume with a number of processes that divides 3 (1 or 3), or with --set "
            "solver.batch_size=4 (a batch of another size: the images drawn from then on differ from an "
            "uninterrupted run's)\n") in err, err


def _stopped_at_6() -> dict:
    return {"interrupted": True, "iteration": 6}


def test_interrupted_run_says_so_from_rank_zero_only(monkeypatch, capsys, tmp_path):
    from maskrcnn.engine import training

    said = []
    for rank in (0, 1):
        _torchrun(monkeypatch, rank)
        trainer = types.SimpleNamespace(is_main=rank == 0, train=_stopped_at_6)
        monkeypatch.setattr(training, "build_training", lambda cfg, trainer=trainer, **kw: (trainer, cfg))
        assert main(["train", "--config", "r18_fpn", "--train-json", "t.json", "--train-images",
                     str(tmp_path), "--output", str(tmp_path / "run"), "--device", "cpu"]) == 130  # stopped
        said.append(capsys.readouterr().out)
    assert said == ["stopped at iteration 6; continue with --resume\n", ""]


def test_a_ranks_own_error_names_its_rank():
    own = du.mark_own(RuntimeError("CUDA out of memory"))
    assert du.error_line(own, "CUDA out of memory", rank=1, world_size=2) == "rank 1: CUDA out of memory"
    assert du.error_line(own, "CUDA out of memory", rank=0, world_size=2) == "CUDA out of memory"
    own_file = du.mark_own(FileNotFoundError("x.jpg"))  # a file only this rank's share reads
    line = du.error_line(own_file, "x.jpg: no such file", rank=1, world_size=2)
    assert line == "rank 1: x.jpg: no such file"
    assert du.error_line(ValueError("bad"), "bad", rank=0, world_size=1) == "bad"


def _peer(rank: int, store: str, out: str) -> None:
    import torch.distributed as dist

    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # gloo would pick an interface from the host name
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    dist.barrier()
    # rank 1 may leave the barrier (and its connection set-up) before rank 0 has: it dies only once rank 0
    # says it is through, else rank 0 meets the loss inside the group's set-up instead of the collective
    ready = pathlib.Path(out + ".ready")
    if rank == 1:
        deadline = time.monotonic() + 120
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        os._exit(0)  # dies without leaving the group, as a crashed process
    ready.touch()
    try:
        dist.all_reduce(torch.ones(1))
        seen = None
    except Exception as e:  # the collective's error on the surviving rank
        seen = (type(e).__name__, str(e), du.is_peer_loss(e), du.error_line(e, str(e), rank=0, world_size=2),
                du.error_line(e, str(e), rank=1, world_size=2))
    with open(out, "wb") as f:
        pickle.dump(seen, f)
    os._exit(0)  # the group cannot be left cleanly without its peer


@pytest.mark.slow  # two processes
def test_peer_loss_of_gloo_reads_as_another_process_stopped(tmp_path):
    ctx = mp.start_processes(_peer, args=(str(tmp_path / "store"), str(tmp_path / "seen.pkl")), nprocs=2,
                             join=False, start_method="spawn")
    while not ctx.join(timeout=60):
        pass
    name, text, peer_loss, line0, line1 = pickle.loads((tmp_path / "seen.pkl").read_bytes())
    assert peer_loss, (name, text)
    assert line0.startswith("another process stopped (the connection to ") and line1 is None, line0
    assert "its error, if it printed one, is above or on its machine's console" in line0
    assert not du.is_peer_loss(RuntimeError("CUDA out of memory"))



def _train_on_each_rank(monkeypatch, capsys, tmp_path, error) -> list:
    """What ``maskrcnn train`` prints (stderr) on ranks 0 and 1 of 2 when ``trainer.train()`` raises
    ``error(rank)``."""
    from maskrcnn.engine import training

    def failing(rank):
        def train():
            raise error(rank)
        return train

    said = []
    for rank in (0, 1):
        _torchrun(monkeypatch, rank)
        trainer = types.SimpleNamespace(is_main=rank == 0, train=failing(rank))
        monkeypatch.setattr(training, "build_training", lambda cfg, trainer=trainer, **kw: (trainer, cfg))
        assert main(["train", "--config", "r18_fpn", "--train-json", "t.json", "--train-images",
                     str(tmp_path), "--output", str(tmp_path / "run"), "--device", "cpu"]) == 1
        said.append(capsys.readouterr().err)
    return said


def test_an_error_every_rank_raises_together_prints_once(monkeypatch, capsys, tmp_path):
    # a diverging loss: every rank judges the same all-reduced mean and stops at the same iteration; the
    # training loop marks what it raises as the rank's own, yet 8 GPUs must not print it 8 times
    from maskrcnn.engine.trainer import DivergenceError

    said = _train_on_each_rank(monkeypatch, capsys, tmp_path,
                               lambda rank: DivergenceError("the loss exploded at iteration 8"))
    assert said == ["maskrcnn train: error: the loss exploded at iteration 8\n", ""]
    # a rank's own error in the same loop still prints from each rank
    said = _train_on_each_rank(monkeypatch, capsys, tmp_path, lambda rank: RuntimeError("CUDA out of memory"))
    assert said == ["maskrcnn train: error: CUDA out of memory\n",
                    "maskrcnn train: error: rank 1: CUDA out of memory\n"]
    shared = du.mark_own(du.mark_shared(RuntimeError("non-finite weights after iteration 4")))  # either order
    assert du.error_line(shared, "w", rank=1, world_size=8, local_rank=1) is None
    assert du.error_line(shared, "w", rank=8, world_size=16, local_rank=0) is None
    assert du.error_line(shared, "w", rank=0, world_size=8, local_rank=0) == "w"


def test_a_setup_error_of_another_machine_prints_from_its_first_process(monkeypatch, capsys, tmp_path):
    # two machines of two processes: the second's disk lacks --train-json. Its first process (rank 2,
    # LOCAL_RANK 0) says so, its second stays quiet; rank 0 would only say "another process stopped"
    said = []
    for rank, local_rank in ((2, 0), (3, 1)):
        for k, v in {"RANK": rank, "WORLD_SIZE": 4, "LOCAL_RANK": local_rank}.items():
            monkeypatch.setenv(k, str(v))
        assert _train_as(monkeypatch, tmp_path, rank, world_size=4, batch_size=4) == 1
        said.append(capsys.readouterr().err)
    assert said[0].startswith("maskrcnn train: error: rank 2: ") and said[0].count("\n") == 1, said
    assert "t.json" in said[0]
    assert said[1] == ""
    # on one machine, rank 0 is the only LOCAL_RANK 0: printed once, as before
    assert du.error_line(OSError("t.json"), "t.json", rank=1, world_size=2, local_rank=1) is None
