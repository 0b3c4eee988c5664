"""Under torchrun: a partial torchrun environment is refused naming its variables, before anything is
written; processes given other data or other settings than rank 0 are refused at setup, naming what
differs; a resume under another process count says it is not bit-exact."""

import contextlib
import io
import os
import pickle

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image
from tiny_model import write_box_coco  # tests/ is on the path

from maskrcnn.cli import main
from maskrcnn.engine import distributed as du
from maskrcnn.engine.same_setup import config_fingerprint, setup_differences

_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def _env(monkeypatch, **values) -> None:
    for name in _VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("values,named", [
    ({"RANK": "1"}, "RANK=1 is set but WORLD_SIZE is not"),
    ({"LOCAL_RANK": "1"}, "LOCAL_RANK=1 is set but WORLD_SIZE is not"),
    ({"WORLD_SIZE": "2"}, "WORLD_SIZE=2 is set but RANK is not"),
    ({"RANK": "2", "WORLD_SIZE": "2"}, "RANK=2 is not in [0, WORLD_SIZE=2)"),
    ({"RANK": "one", "WORLD_SIZE": "2"}, "RANK='one' is not a whole number"),
])
def test_a_partial_torchrun_environment_is_refused_naming_it(monkeypatch, values, named):
    _env(monkeypatch, **values)
    with pytest.raises(ValueError, match=named.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        du.env_world()


def test_one_process_environments_stay_accepted(monkeypatch):
    _env(monkeypatch)
    assert du.env_world() == (0, 1, 0)
    _env(monkeypatch, RANK="0", LOCAL_RANK="0")  # one process, as without them
    assert du.env_world() == (0, 1, 0)
    _env(monkeypatch, RANK="1", WORLD_SIZE="2", LOCAL_RANK="1")
    assert du.env_world() == (1, 2, 1)


def test_rank_without_world_size_writes_nothing_and_the_retry_starts(monkeypatch, capsys, tmp_path):
    # the probe: "rank 1 is not in [0, world_size=1)" from the sampler, once run.json was written; the
    # corrected command (RANK unset) was then "already holds a training run"
    names = ["a.png", "b.png"]
    for i, n in enumerate(names):
        (tmp_path / "pics").mkdir(exist_ok=True)
        Image.fromarray(np.full((24, 24, 3), 40 * (i + 1), np.uint8)).save(tmp_path / "pics" / n)
    train = write_box_coco(tmp_path / "train.json", names)
    run = tmp_path / "run"
    _env(monkeypatch, RANK="1")
    args = ["train", "--config", "demo", "--train-json", str(train), "--train-images", str(tmp_path / "pics"),
            "--output", str(run), "--device", "cpu", "--set", "solver.batch_size=2"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("maskrcnn train: error: the environment variable RANK=1 is set but WORLD_SIZE is "
                          "not: start the processes with torchrun"), err
    assert "unset RANK" in err and err.count("\n") == 1
    assert not run.exists() or not any(run.iterdir())  # nothing there: the retry needs no --overwrite


@pytest.mark.parametrize("local_rank", ["", "x"])
@pytest.mark.parametrize("command", ["train", "eval"])
def test_a_stray_local_rank_leaves_an_error_one_line(monkeypatch, capsys, tmp_path, command, local_rank):
    # the error handler read LOCAL_RANK again with int(): an empty or stray value raised inside it, and a
    # missing file read as a traceback. ("x" for train is refused up front, itself one line.)
    _env(monkeypatch, LOCAL_RANK=local_rank)
    missing = tmp_path / "nope.json"
    args = (["train", "--config", "demo", "--train-json", str(missing), "--output", str(tmp_path / "run")]
            if command == "train" else
            ["eval", "--weights", str(tmp_path / "nope.pth"), "--json", str(missing)])
    assert main(args + ["--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"maskrcnn {command}: error: ") and err.count("\n") == 1, err
    assert "nope" in err or (command, local_rank) == ("train", "x"), err


def test_a_missing_rendezvous_address_is_named(monkeypatch):
    _env(monkeypatch, RANK="1", WORLD_SIZE="2", LOCAL_RANK="1", MASTER_PORT="29500")
    with pytest.raises(ValueError, match="WORLD_SIZE=2 is set but MASTER_ADDR is not") as caught:
        du.init_distributed("cpu")
    assert du.error_line(caught.value, str(caught.value), rank=1, world_size=2, local_rank=1).startswith(
        "rank 1: ")  # each process started by hand says it: rank 0 may not be there
    assert not du.is_initialized()


def _fingerprint(images=3, objects=None, names="abc", lr="0.01", annotations="f00"):
    per_class = [0, images] if objects is None else objects
    data = {"json": "t.json", "images": images, "names": names, "annotations": annotations,
            "objects": sum(per_class[1:]), "per_class": per_class}
    return {"train": data, "val": None, "config": {"solver.lr": lr, "seed": "0"}}


def test_the_differences_name_each_rank_and_what_differs():
    same = _fingerprint()
    assert setup_differences([same, dict(same, train=dict(same["train"], json="/other/mount/t.json"))]) == ""
    said = setup_differences([same, same, _fingerprint(images=2, names="abd"), _fingerprint(lr="0.02")])
    assert said.startswith("the processes did not set up alike: the training set differs (--train-json / "
                           "--train-images): rank 0: t.json (3 usable images, 3 objects, file names hash "
                           "abc, objects hash f00); rank 2: t.json (2 usable images"), said
    assert "rank 1" not in said and "rank 3's config differs: solver.lr 0.02 (rank 0: 0.01)" in said
    # the same images with other annotations (a class's objects changed)
    assert "training set differs" in setup_differences([same, _fingerprint(objects=[0, 2])])
    assert "objects hash f01" in setup_differences([same, _fingerprint(annotations="f01")])  # a box edited
    val = dict(same, val=same["train"])
    assert "validation set differs (--val-json / --val-images): rank 0: t.json" in setup_differences(
        [val, same])


def test_the_config_fingerprint_leaves_out_what_each_process_holds_its_own_of():
    from maskrcnn.config import load_config

    a = load_config("demo", {"device": "cpu", "model.init_weights": "/node0/w.pth", "data.num_workers": 2})
    b = load_config("demo", {"device": "cuda", "model.init_weights": "/node1/w.pth", "data.num_workers": 8})
    assert config_fingerprint(a) == config_fingerprint(b)
    c = load_config("demo", {"solver.lr": 0.5})
    assert {k for k in config_fingerprint(a) if config_fingerprint(a)[k] != config_fingerprint(c)[k]} == {
        "solver.lr"}


def test_the_same_annotations_laid_out_otherwise_are_the_same_training_set(tmp_path):
    # the JSON's byte size was compared: the same file re-serialised with indent=1 was refused, its
    # message showing only equal fields; an edited box with the same counts must still differ
    import json

    from maskrcnn.data.coco import CocoDataset
    from maskrcnn.engine.same_setup import dataset_fingerprint

    names = ["a.png", "b.png"]
    (tmp_path / "pics").mkdir()
    for i, n in enumerate(names):
        Image.fromarray(np.full((24, 24, 3), 40 * (i + 1), np.uint8)).save(tmp_path / "pics" / n)
    plain = write_box_coco(tmp_path / "plain.json", names)
    coco = json.loads(plain.read_text())
    (tmp_path / "indented.json").write_text(json.dumps(coco, indent=1))
    coco["annotations"][0]["bbox"][0] += 1
    (tmp_path / "edited.json").write_text(json.dumps(coco))

    def fingerprint(name):
        path = tmp_path / name
        dataset = CocoDataset(json_path=path, image_dir=tmp_path / "pics")
        return {"train": dataset_fingerprint(dataset, path), "val": None, "config": {}}

    first = fingerprint("plain.json")
    assert setup_differences([first, fingerprint("indented.json")]) == ""
    edited = setup_differences([first, fingerprint("edited.json")])
    assert "training set differs" in edited and "objects hash" in edited, edited


def _rank_process(rank: int, port: int, tmp: str, runs: list, out: str) -> None:
    """Process ``rank`` of 2 as torchrun starts it: ``maskrcnn train`` with ``runs[rank]`` (its JSON, its
    extra --set values)."""
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                       "TORCHELASTIC_USE_AGENT_STORE": "True", "GLOO_SOCKET_IFNAME": "lo"})
    torch.set_num_threads(1)
    train_json, extra = runs[rank]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(["train", "--config", "demo", "--train-json", train_json, "--train-images", tmp,
                   "--output", os.path.join(tmp, "run"), "--device", "cpu", "--set", "solver.batch_size=2",
                   "solver.iters=1", "solver.eval_period=0", "solver.checkpoint_period=0", *extra])
    with open(os.path.join(out, f"rank{rank}.pkl"), "wb") as f:
        pickle.dump((rc, err.getvalue()), f)
    os._exit(0)


@pytest.mark.slow  # two processes (about 5 s on one core)
def test_processes_given_other_data_or_settings_are_refused_at_setup(tmp_path):
    # the probe: rank 1 given a 6-image JSON beside rank 0's 16 trained on, both exiting 0, nothing said
    from torch.distributed import TCPStore

    names = ["a.png", "b.png", "c.png"]
    for i, n in enumerate(names):
        Image.fromarray(np.full((24, 24, 3), 40 * (i + 1), np.uint8)).save(tmp_path / n)
    full = write_box_coco(tmp_path / "full" / "train.json", names)
    part = write_box_coco(tmp_path / "part" / "train.json", names[:2])  # a stale copy on rank 1's machine
    store = TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)  # as torchrun's agent holds it
    runs = [(str(full), []), (str(part), ["solver.lr=0.5"])]
    ctx = mp.start_processes(_rank_process, args=(store.port, str(tmp_path), runs, str(tmp_path)), nprocs=2,
                             join=False, start_method="spawn")
    # bounded: a regression that leaves one process waiting in a collective must fail, not hang the suite
    # for the 60-minute collective timeout (the run itself takes a few seconds)
    for _ in range(3):
        if ctx.join(timeout=60):
            break
    else:
        for process in ctx.processes:
            if process.is_alive():
                process.kill()
        pytest.fail("the two processes had not ended after 180 s: one waits for the other (a collective "
                    "not paired across ranks?)")
    said = {rank: pickle.loads((tmp_path / f"rank{rank}.pkl").read_bytes()) for rank in (0, 1)}
    rc, err = said[0]
    assert rc == 1 and err.count("maskrcnn train: error: the processes did not set up alike:") == 1, err
    assert f"rank 0: {full} (3 usable images, 3 objects" in err and f"rank 1: {part} (2 usable images" in err
    assert "rank 1's config differs: solver.lr 0.5 (rank 0: " in err, err
    assert said[1] == (1, ""), said[1]  # one message, from rank 0
    run = tmp_path / "run"
    assert not run.exists() or not any(run.iterdir())  # refused before any write


def test_a_resume_under_another_process_count_says_it_is_not_bit_exact(tmp_path, toy):
    from maskrcnn.config import load_config
    from maskrcnn.engine.trainer import LAST_CHECKPOINT, build_trainer

    cfg = load_config("demo", {"solver.iters": 2, "solver.checkpoint_period": 2, "solver.warmup_iters": 0,
                               "solver.eval_period": 0})

    def trainer(stream):
        batches = toy.make_batches_fn(rank=0, world_size=1, per_rank=2, nan_at=-1)
        return build_trainer(cfg, toy.Toy(), make_batches=batches,
                             output_dir=tmp_path, class_names=["__background__", "x"], tensorboard=False,
                             plot=False, log_stream=stream)

    trainer(io.StringIO()).train()
    path = tmp_path / (tmp_path / LAST_CHECKPOINT).read_text().strip()
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["world_size"] == 1  # recorded
    stream = io.StringIO()
    assert trainer(stream).resume()
    assert "note: resumed with" not in stream.getvalue()  # the same count: exact, nothing said
    ckpt["world_size"] = 2  # as a 2-process run wrote it
    torch.save(ckpt, path)
    stream = io.StringIO()
    assert trainer(stream).resume()
    assert ("note: resumed with 1 process, the run had 2 processes: each iteration trains on the same "
            "images, but the random sampling draws (anchors, RoIs) differ, so the resume is not bit-exact"
            in stream.getvalue()), stream.getvalue()
