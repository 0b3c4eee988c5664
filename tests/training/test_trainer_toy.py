"""Trainer mechanics on a toy model: exact resume after kill -9, NaN stop, divergence stop, DDP on gloo (with
gradient accumulation)."""

import errno
import os
import queue
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from maskrcnn.checkpoint import load_checkpoint
from maskrcnn.engine.logger import read_metrics
from maskrcnn.engine.trainer import DivergenceError, NonFiniteLossError

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
        timeout=300,  # a hang guard only
    )


def _losses(out_dir):
    return {r["iteration"]: (r["loss_a"], r["loss_b"]) for r in read_metrics(Path(out_dir) / "metrics.jsonl")}


def _wait_for_line(proc, wanted: str, timeout: float = 300.0) -> threading.Thread:
    """Read ``proc``'s merged stdout/stderr until the line ``wanted``; fail if the process ends first.
    Returns the reader thread, which ends at the end of the output (join it before closing stdout).

    The timeout only guards against a hang: nothing here depends on how fast the process runs."""
    lines: queue.Queue = queue.Queue()

    def pump():
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)  # end of output: the process has exited

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    seen = []
    while True:
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            proc.kill()
            pytest.fail(f"no {wanted!r} within {timeout} s; output so far:\n{''.join(seen)[-3000:]}")
        if line is None:
            proc.wait()
            pytest.fail(f"exited ({proc.returncode}) before {wanted!r}:\n{''.join(seen)[-3000:]}")
        if line.strip() == wanted:
            return reader
        seen.append(line)


@pytest.mark.slow
def test_exact_resume_after_kill9(tmp_path, toy):
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
    # The run to kill stops after iteration 9 and says so: past its iteration-8 checkpoint, with one
    # logged iteration that the resumed run must redo. Killing it there, not after a sleep, makes the
    # state at the kill the same on a loaded machine as on an idle one.
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--out", str(cut), *common, "--stall-at", "9"],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    reader = _wait_for_line(proc, toy.STALL_MESSAGE.format(9))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    reader.join()  # the killed process's output ends: the reader is done with the pipe
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert (cut / "last_checkpoint").read_text().strip() == "model_0000008.pth"
    assert not (cut / "model_final.pth").exists()
    assert max(_losses(cut)) == 9  # logged after the checkpoint: to be dropped and redone
    r = _run("--out", cut, *common, "--resume")
    assert r.returncode == 0, r.stderr
    assert "resumed from" in r.stdout and "at iteration 8" in r.stdout
    _, err = ref.communicate(timeout=300)
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
    make = toy.make_batches_fn(rank=0, world_size=1, per_rank=2, nan_at=-1)

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
    assert result == {"iteration": 6, "interrupted": True, "signal": signal.SIGTERM, "eval": None,
                      "stopped_early": False, "best": None}
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


def test_a_loss_exploding_yet_finite_stops_and_keeps_the_last_good_checkpoint(tmp_path, toy):
    # lr 100 with the demo's gradient clipping: the loss leaps from 0.5 to 1e4..1e9, never NaN
    with pytest.raises(DivergenceError) as info:
        toy.main(["--out", str(tmp_path), "--iters", "30", "--period", "2", "--lr", "100"])
    msg = str(info.value)
    losses = {r["iteration"]: r["loss"] for r in read_metrics(tmp_path / "metrics.jsonl")}
    assert sorted(losses) == list(range(1, 9))  # logged up to the iteration that stopped it
    # iteration 3 is in the reference (too few losses to judge it); 4..8 are above 20x its median
    median = sorted(losses[i] for i in (1, 2, 3))[1]
    assert all(losses[i] > 20 * median for i in range(4, 9)) and losses[2] < 1.0
    assert max(losses.values()) < float("inf")
    assert msg.startswith("training diverged at iteration 8: the total loss has been above 20x its median "
                          f"over the last 3 good iterations ({median:.4g}) since iteration 4, 5 iterations "
                          f"in a row (now {losses[8]:.4g}; learning rate 100); not saved; ")
    assert "solver.lr" in msg and "solver.warmup_iters" in msg and "solver.clip_grad_norm" in msg
    # the checkpoints due at 4, 6 and 8 (inside the explosion) were put off, never written
    assert f"the last good checkpoint is {tmp_path / 'model_0000002.pth'}" in msg
    assert "written just before the first exploded loss" not in msg  # loss 3 is not judged exploded
    assert (tmp_path / "last_checkpoint").read_text().strip() == "model_0000002.pth"
    assert sorted(p.name for p in tmp_path.glob("*.pth")) == ["model_0000002.pth"]
    ck = load_checkpoint(tmp_path / "model_0000002.pth")
    assert ck["iteration"] == 2 and ck["divergence"] == {"history": [losses[1], losses[2]], "streak": 0}
    # a checkpoint written at iteration 3 holds the weights that gave the first exploded loss: said so
    with pytest.raises(DivergenceError) as info:
        toy.main(["--out", str(tmp_path / "p3"), "--iters", "30", "--period", "3", "--lr", "100"])
    assert (f"the last good checkpoint is {tmp_path / 'p3' / 'model_0000003.pth'} (written just before the "
            "first exploded loss: if it diverges again, use the one before)") in str(info.value)


def test_a_normal_noisy_run_is_not_stopped_and_factor_0_turns_the_guard_off(tmp_path, toy):
    # lr 1: a noisy run whose loss jumps 7x between iterations (0.14 -> 0.99), never 20x for 5
    assert toy.main(["--out", str(tmp_path / "noisy"), "--iters", "30", "--period", "10", "--lr", "1"]) == 0
    losses = [r["loss"] for r in read_metrics(tmp_path / "noisy" / "metrics.jsonl")]
    assert len(losses) == 30 and max(losses) > 5 * min(losses[:5])
    ck = load_checkpoint(tmp_path / "noisy" / "model_0000030.pth")
    assert ck["divergence"] == {"history": losses[-20:], "streak": 0}  # the window, for exact resume
    # off: the exploding run trains to its end and writes the garbage
    assert toy.main(["--out", str(tmp_path / "off"), "--iters", "12", "--period", "6", "--lr", "100",
                     "--set", "solver.divergence_factor=0"]) == 0  # fmt: skip
    assert min(r["loss"] for r in read_metrics(tmp_path / "off" / "metrics.jsonl")[3:]) > 1000
    assert (tmp_path / "off" / "model_final.pth").is_file()


def _ephemeral_ports():
    """The kernel's range for outgoing connections and bind(0) (Linux; the usual default elsewhere)."""
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


def _bindable_everywhere(port: int) -> bool:
    """True if ``port`` can be bound on the IPv4 and (where there is one) IPv6 wildcard addresses."""
    for family, addr in ((socket.AF_INET, ""), (socket.AF_INET6, "::")):
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.bind((addr, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return False
            if family == socket.AF_INET:  # IPv6 may be missing, IPv4 may not
                raise
    return True


def _free_port():
    """A port for the DDP rendezvous that no other process will take before rank 0 binds it.

    Rank 0's TCPStore listens on the wildcard address, seconds after this choice (it imports torch
    first). A port from ``bind(("127.0.0.1", 0))`` is only known to be free on loopback, and it lies in
    the ephemeral range, where any process's outgoing connection (from any local address) or bind(0)
    can take it meanwhile: rank 0 then dies with EADDRINUSE. A port below the ephemeral range, free on
    the wildcard addresses, is never handed out implicitly."""
    lo, hi = _ephemeral_ports()
    candidates = [p for p in range(10000, 65536) if not lo <= p <= hi]
    pick = random.Random()  # the OS's entropy, not the seeded global RNG: concurrent suites differ
    for port in pick.sample(candidates, min(200, len(candidates))):
        if _bindable_everywhere(port):
            return port
    raise RuntimeError(f"no free port outside the ephemeral range {lo}-{hi}")


@pytest.mark.slow
def test_ddp_gloo_two_processes_identical_weights(tmp_path, toy):
    port = str(_free_port())
    logs = [tmp_path / f"rank{r}.log" for r in range(2)]
    procs = []
    for r, log in enumerate(logs):
        with open(log, "w") as out:  # a file, not a pipe: a rank never blocks on output nobody reads
            procs.append(subprocess.Popen(
                [sys.executable, str(SCRIPT), "--out", str(tmp_path / "run"), "--iters", "8", "--period", "3",
                 "--dump-weights", str(tmp_path / "w"), "--scripted-eval", "2:5,4:4,6:3",
                 # each rank's 2 images in 2 micro-batches: the first backward in no_sync, the second
                 # all-reduces what both summed (the ranks' weights stay equal only if it does)
                 "--set", "solver.eval_period=2", "solver.early_stop_patience=2", "solver.accumulate=2"],
                # GLOO_SOCKET_IFNAME: gloo otherwise picks an interface from the host name, which need not
                # reach 127.0.0.1 in a sandbox
                env=_env(RANK=str(r), WORLD_SIZE="2", LOCAL_RANK=str(r), MASTER_ADDR="127.0.0.1",
                         MASTER_PORT=port, GLOO_SOCKET_IFNAME="lo"),
                stdout=out,
                stderr=subprocess.STDOUT,
            ))
    deadline = time.monotonic() + 300  # a hang guard only
    try:
        # until both ended, one failed (its peer would wait for it for the store's 30 minutes), or the guard
        while any(p.poll() is None for p in procs) and not any(p.poll() for p in procs):
            assert time.monotonic() < deadline, "the ranks hung; logs:\n" + logs[0].read_text()[-2000:]
            time.sleep(0.1)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    report = "\n".join(f"rank {r} exited {p.returncode}:\n{log.read_text()[-2000:]}"
                       for r, (p, log) in enumerate(zip(procs, logs)))
    assert all(p.returncode == 0 for p in procs), report
    w0, w1 = (
        torch.load(tmp_path / "w0.pt", weights_only=True),
        torch.load(tmp_path / "w1.pt", weights_only=True),
    )
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    # That only means something if the ranks saw different data (each rank's shard of the batches)
    # and the weights moved from their common start: then only averaged gradients keep them equal.
    with torch.random.fork_rng(devices=[]):
        shards = [next(toy.make_batches_fn(rank=r, world_size=2, per_rank=2, nan_at=-1)(0)) for r in range(2)]
        torch.manual_seed(0)  # as toy_train.main seeds before building the model
        start = toy.Toy()
    assert not torch.equal(torch.stack(shards[0][0]), torch.stack(shards[1][0]))
    moved = {name: not torch.equal(p.detach(), w0[name]) for name, p in start.named_parameters()}
    assert all(moved.values()), moved
    # only rank 0 logged (two ranks writing would double the records) and saved
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["iteration"] for r in records if "loss" in r] == [1, 2, 3, 4, 5, 6]
    ck = load_checkpoint(tmp_path / "run" / "model_final.pth")
    assert all(torch.equal(ck["model"][k], w0[k]) for k in w0)
    # rank 0 alone evaluated (2: the best; 4 and 6: no gain) and decided: both ranks stopped after 6 of 8
    assert [r["iteration"] for r in records if "segm/AP" in r] == [2, 4, 6] and ck["iteration"] == 6
    assert "stopped early after iteration 6 of 8" in logs[0].read_text()
    assert load_checkpoint(tmp_path / "run" / "model_best.pth")["iteration"] == 2


def test_reductions_go_where_the_backend_reduces(monkeypatch):
    # NCCL reduces CUDA tensors only: any_true / all_reduce_mean put theirs on the process's GPU without
    # being told (no CUDA needed to check where: the device is only named); gloo and one process: CPU.
    from maskrcnn.engine import distributed as du

    assert du.reduce_device() is None  # no process group
    monkeypatch.setattr(du, "is_initialized", lambda: True)
    monkeypatch.setattr(du.dist, "get_backend", lambda group=None: "nccl")
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    assert du.reduce_device() == torch.device("cuda", 3)
    monkeypatch.setattr(du.dist, "get_backend", lambda group=None: "gloo")
    assert du.reduce_device() is None


def test_reduced_loss_terms_keep_the_order_they_came_in(monkeypatch):
    # sorted for the reduction, they were returned sorted: under torchrun the terms printed (and went to
    # metrics.jsonl) as box cls mask rpn_box rpn_cls, with one process rpn_cls rpn_box cls box mask
    from maskrcnn.engine import distributed as du

    monkeypatch.setattr(du, "is_initialized", lambda: True)
    monkeypatch.setattr(du, "get_world_size", lambda: 2)
    monkeypatch.setattr(du.dist, "all_reduce", lambda t: t.mul_(2))  # two ranks of the same values
    values = {"loss_rpn_cls": 0.5, "loss_rpn_box": 0.25, "loss_cls": 1.5, "loss_box": 0.125, "loss_mask": 2.0}
    reduced = du.all_reduce_mean(values, device="cpu")
    assert list(reduced.items()) == list(values.items())
