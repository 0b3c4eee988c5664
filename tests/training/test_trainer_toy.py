"""Trainer mechanics on a toy model: exact resume after kill -9, NaN stop, DDP on gloo."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from maskrcnn.checkpoint import load_checkpoint
from maskrcnn.engine.logger import read_metrics
from maskrcnn.engine.trainer import NonFiniteLossError

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "toy_train.py"


def _env(**extra):
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}, **extra)
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        if k not in extra:
            env.pop(k, None)
    return env


def _run(*args, **env):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)],
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _losses(out_dir):
    return {r["iteration"]: (r["loss_a"], r["loss_b"]) for r in read_metrics(Path(out_dir) / "metrics.jsonl")}


def test_exact_resume_after_kill9(tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    common = ["--iters", "12", "--period", "4"]
    # The uninterrupted reference run goes on at the same time as the run that gets killed.
    ref = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--out", str(full), *common],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--out", str(cut), *common, "--sleep", "0.1"],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    pointer = cut / "last_checkpoint"
    deadline = time.time() + 90
    while time.time() < deadline:
        if pointer.is_file() and pointer.read_text().strip() == "model_0000008.pth":
            break
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.02)
    else:
        proc.kill()
        pytest.fail("the interrupted run never wrote its iteration-8 checkpoint")
    time.sleep(0.15)  # let it run (and log) past the checkpoint before the hard kill
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert not (cut / "model_final.pth").exists()
    assert 8 <= max(_losses(cut)) < 12
    r = _run("--out", cut, *common, "--resume")
    assert r.returncode == 0, r.stderr
    assert "resumed from" in r.stdout and "at iteration 8" in r.stdout
    _, err = ref.communicate(timeout=120)
    assert ref.returncode == 0, err
    a, b = _losses(full), _losses(cut)
    assert sorted(a) == sorted(b) == list(range(1, 13))  # records after the checkpoint were replaced
    for it in range(1, 13):
        assert a[it] == b[it], f"iteration {it}: {a[it]} != {b[it]}"
    wa = load_checkpoint(full / "model_final.pth")["model"]
    wb = load_checkpoint(cut / "model_final.pth")["model"]
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def test_sigterm_saves_and_exits_cleanly(tmp_path, capsys, toy):
    make = toy.make_batches_fn(rank=0, world_size=1, per_rank=2, sleep=0, nan_at=-1)

    def batches_then_sigterm(start_iter):
        for i, batch in enumerate(make(start_iter)):
            if i == 5:  # a real SIGTERM, delivered while the trainer's handler is installed
                os.kill(os.getpid(), signal.SIGTERM)
            yield batch

    from maskrcnn.config import load_config
    from maskrcnn.engine.trainer import build_trainer

    cfg = load_config("demo", {"solver.iters": 400, "solver.checkpoint_period": 1000})
    trainer = build_trainer(
        cfg,
        toy.Toy(),
        make_batches=batches_then_sigterm,
        output_dir=tmp_path,
        class_names=["__background__", "x"],
        tensorboard=False,
        plot=False,
    )
    previous = signal.getsignal(signal.SIGTERM)
    result = trainer.train()
    assert signal.getsignal(signal.SIGTERM) is previous  # handler restored
    assert result == {"iteration": 6, "interrupted": True, "eval": None}
    assert "stopped by a signal after iteration 6" in capsys.readouterr().out
    name = (tmp_path / "last_checkpoint").read_text().strip()
    ck = load_checkpoint(tmp_path / name)
    assert ck["iteration"] == 6 and ck["data_state"] == {"start_iter": 6}
    assert not (tmp_path / "model_final.pth").exists()


def test_nan_loss_stops_with_clear_error_and_keeps_last_checkpoint(tmp_path, toy):
    with pytest.raises(NonFiniteLossError) as info:
        toy.main(["--out", str(tmp_path), "--iters", "10", "--period", "3", "--nan-at", "8"])
    msg = str(info.value)
    assert "iteration 8" in msg and "loss_b=nan" in msg and "loss_a=" in msg
    assert (tmp_path / "last_checkpoint").read_text().strip() == "model_0000006.pth"
    assert load_checkpoint(tmp_path / "model_0000006.pth")["iteration"] == 6
    assert not (tmp_path / "model_final.pth").exists()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_gloo_two_processes_identical_weights(tmp_path):
    port = str(_free_port())
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(SCRIPT),
                "--out",
                str(tmp_path / "run"),
                "--iters",
                "6",
                "--period",
                "3",
                "--dump-weights",
                str(tmp_path / "w"),
            ],
            # GLOO_SOCKET_IFNAME: gloo otherwise picks an interface from the host name, which need not
            # reach 127.0.0.1 in a sandbox
            env=_env(
                RANK=str(r), WORLD_SIZE="2", LOCAL_RANK=str(r), MASTER_ADDR="127.0.0.1", MASTER_PORT=port,
                GLOO_SOCKET_IFNAME="lo",
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(2)
    ]
    for p in procs:
        _out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-3000:]
    w0, w1 = (
        torch.load(tmp_path / "w0.pt", weights_only=True),
        torch.load(tmp_path / "w1.pt", weights_only=True),
    )
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    # the ranks saw different data, so the weights moved from the common start, and only rank 0 logged
    assert len(read_metrics(tmp_path / "run" / "metrics.jsonl")) == 6
    ck = load_checkpoint(tmp_path / "run" / "model_final.pth")
    assert all(torch.equal(ck["model"][k], w0[k]) for k in w0)
