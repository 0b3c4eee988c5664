"""Under torchrun, the setup every process does alike (the config, the annotation file) says its warnings
and skipped records once, from rank 0; a setup error of one process alone is printed by that process
(rank 0 did not report it); rank 0's line for a lost peer says what it knows; and a start that one
process refused leaves no file in the run folder."""

import contextlib
import io
import logging
import os
import pickle
import warnings

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image
from tiny_model import write_box_coco  # tests/ is on the path

from maskrcnn.cli import main
from maskrcnn.engine import distributed as du

_coco = write_box_coco  # (path, names) -> path


def _as_rank(monkeypatch, rank: int) -> None:
    for k, v in {"RANK": rank, "WORLD_SIZE": 2, "LOCAL_RANK": rank}.items():
        monkeypatch.setenv(k, str(v))
    monkeypatch.setattr(du, "init_distributed", lambda device: (rank, 2, torch.device("cpu")))


def test_setup_warnings_and_skipped_records_print_from_rank_zero_only(monkeypatch, capsys, caplog, tmp_path):
    # the probe's 4 copies of "given twice", 2 of "--train-images not given" and of each skipped record
    data = _coco(tmp_path / "data" / "train.json", ["a.png", "b.png"])  # no image file there
    caplog.set_level(logging.WARNING)
    said = {}
    for rank in (1, 0):
        _as_rank(monkeypatch, rank)
        caplog.clear()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rc = main(["train", "--config", "demo", "--train-json", str(data), "--output",
                       str(tmp_path / "run"), "--device", "cpu", "--set", "solver.iters=10", "solver.iters=3",
                       "solver.batch_size=2"])
        out, err = capsys.readouterr()
        logged = [r.getMessage() for r in caplog.records]
        said[rank] = (rc, out, err, [str(w.message) for w in caught], logged)
    rc, out, err, caught, logged = said[1]
    assert (rc, out, err, caught, logged) == (1, "", "", [], []), said[1]
    rc, out, err, caught, logged = said[0]  # rank 0 says each once
    assert rc == 1 and out.count("--train-images not given") == 1, out
    assert sum("solver.iters given twice" in w for w in caught) == 1, caught
    assert sum("2 missing_image_file" in w and "skipped" in w for w in caught) == 1, caught
    assert sum("not found" in line for line in logged) == 2, logged
    assert err.count("error: ") == 1 and "no usable training image" in err, err


@pytest.mark.parametrize("rank,local_rank,shown", [(0, 0, True), (1, 1, False), (2, 0, True)])
def test_each_machines_first_process_still_says_the_setup_warnings(monkeypatch, rank, local_rank, shown):
    # another machine's disk may lack files rank 0's has: its first process says so (as error_line
    # lets it print errors); the other processes of a machine are quiet
    for k, v in {"RANK": rank, "WORLD_SIZE": 4, "LOCAL_RANK": local_rank}.items():
        monkeypatch.setenv(k, str(v))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with du.setup_said_by_rank0():
            warnings.warn("images.json: image id 4 not found; skipped", stacklevel=2)
    assert len(caught) == int(shown)


def test_the_setup_writes_nothing_before_every_process_has_set_up(monkeypatch, tmp_path):
    # rank 0 wrote config.yaml before the DDP wrapper's collectives; another process's setup error then
    # had torchrun end rank 0 (SIGTERM, no clean-up) and the corrected retry was "already holds a training
    # run". The folder is written only after the barrier that every process reaches once set up.
    from maskrcnn.config import load_config
    from maskrcnn.engine import trainer as trainer_module
    from maskrcnn.engine.training import build_training

    names = ["a.png", "b.png"]
    (tmp_path / "pics").mkdir()
    for i, n in enumerate(names):
        Image.fromarray(np.full((24, 24, 3), 40 * (i + 1), np.uint8)).save(tmp_path / "pics" / n)
    train = _coco(tmp_path / "train.json", names)
    run = tmp_path / "run"
    seen = []
    real_build = trainer_module.build_trainer

    def build_trainer(*args, **kwargs):  # where DistributedDataParallel syncs with the other processes
        seen.append(("build_trainer", sorted(p.name for p in run.glob("*"))))
        return real_build(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "build_trainer", build_trainer)
    monkeypatch.setattr(du, "barrier",
                        lambda: seen.append(("barrier", sorted(p.name for p in run.glob("*")))))
    cfg = load_config("demo", {"model.backbone": "resnet18", "model.fpn_dim": 8, "data.num_workers": 0})
    build_training(cfg, train_json=train, train_images=tmp_path / "pics", output=run,
                   trainer_kwargs={"tensorboard": False})
    assert seen == [("build_trainer", []), ("barrier", [])], seen
    assert (run / "config.yaml").is_file()  # written once every process got there


def _rank_process(rank: int, port: int, tmp: str, jsons: list, out: str) -> None:
    """Process ``rank`` of 2 as torchrun starts it (its agent's store, env:// initialisation): ``maskrcnn
    train`` on ``jsons[rank]``, or for None a rank 0 that set up and waits in a collective, as in
    ``build_training``'s barrier."""
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                       "TORCHELASTIC_USE_AGENT_STORE": "True",
                       "GLOO_SOCKET_IFNAME": "lo"})  # gloo would pick an interface from the host name
    du.SETUP_ERROR_WAIT = 1.5  # a shared error reaches the store within moments
    if jsons[rank] is None:
        try:
            # rank 1 may fail and exit while this process is still connecting: the loss then surfaces
            # here rather than in the barrier, and reads the same
            du.init_distributed("cpu")
            du.barrier()
            seen = None
        except Exception as e:  # the peer's exit, as gloo reports it
            seen = du.error_line(e, str(e), rank=0, world_size=2)
    else:
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            rc = main(["train", "--config", "demo", "--train-json", jsons[rank], "--train-images", tmp,
                       "--output", os.path.join(tmp, "run"), "--device", "cpu", "--set",
                       "solver.batch_size=2"])
        seen = (rc, err.getvalue())
    import torch.distributed as dist

    with open(os.path.join(out, f"rank{rank}.pkl"), "wb") as f:
        pickle.dump((seen, not dist.is_initialized()), f)  # the group left after the error line?
    os._exit(0)  # the group cannot be left cleanly without its peer


def _two_ranks(tmp_path, jsons: list) -> dict:
    from torch.distributed import TCPStore

    for old in tmp_path.glob("rank*.pkl"):  # an earlier call's
        old.unlink()
    store = TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)  # as torchrun's agent holds it
    ctx = mp.start_processes(_rank_process, args=(store.port, str(tmp_path), jsons, str(tmp_path)), nprocs=2,
                             join=False, start_method="spawn")
    while not ctx.join(timeout=60):
        pass
    said = {rank: pickle.loads((tmp_path / f"rank{rank}.pkl").read_bytes()) for rank in (0, 1)}
    # what each printed under its rank; under "leftN" whether process N had left the group at the end
    return {**{rank: seen for rank, (seen, _) in said.items()},
            **{f"left{rank}": left for rank, (_, left) in said.items()}}


@pytest.mark.slow  # two pairs of processes (5-7 s on one core)
def test_a_setup_error_of_one_process_alone_is_printed_and_rank_zero_names_the_lost_peer(tmp_path):
    # rank 1's --train-json is missing on its side alone: it printed nothing ("rank 0 has it too"), and
    # rank 0 said "another process stopped; its error is above" with nothing above
    said = _two_ranks(tmp_path, [None, str(tmp_path / "gone" / "t.json")])
    rc, err = said[1]
    gone = tmp_path / "gone" / "t.json"
    assert rc == 1 and err == f"maskrcnn train: error: rank 1: {gone}: no such annotation file\n", err
    line = said[0]
    assert line.startswith("another process stopped (the connection to 127.0.0.1:"), line
    assert "its error, if it printed one, is above" in line and "its error is above" not in line
    # an error every process meets still prints once: rank 0 reported the same
    missing = str(tmp_path / "t.json")
    said = _two_ranks(tmp_path, [missing, missing])
    assert said[0] == (1, f"maskrcnn train: error: {missing}: no such annotation file\n"), said
    assert said[1] == (1, ""), said
    # each left the group after the error line (a group kept to the interpreter's exit can abort it)
    assert said["left0"] and said["left1"], said
