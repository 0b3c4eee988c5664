"""Under torchrun every rank trains its linear layers on rank 0's engine (``ops.gemm_rates``): each process
measures torch.mm against oneDNN for itself, on a shared machine at the same moment, and may answer
otherwise; only rank 0's engine is written to the checkpoint, which a resume then puts on every rank."""

import datetime
import io
import json
import multiprocessing as mp
import os
import sys
from pathlib import Path

import pytest
import torch

from maskrcnn.ops.onednn_linear import onednn_linear_available

pytestmark = pytest.mark.skipif(not onednn_linear_available(), reason="no oneDNN linear in this build")

HERE = Path(__file__).resolve().parent


def _rank(rank: int, store: str, out: str, report: str, pin_on_resume: str = "") -> None:
    """Rank ``rank`` of 2 in a gloo group joined through the file ``store``: rank 0 built its model on
    oneDNN, rank 1 on torch.mm (as their measurements answered); a crash after one iteration, a resume
    (both measuring torch.mm this time; rank 1 with ``MASKRCNN_MATMUL=pin_on_resume`` when given) to the
    end; its engines and its log to ``report``."""
    import torch.distributed as dist

    if str(HERE) not in sys.path:  # a spawned process: pytest's path is not its
        sys.path.insert(0, str(HERE))
    import toy_train
    from test_resume_linear_engine import Wide

    from maskrcnn.config import load_config
    from maskrcnn.engine.trainer import _linear_engine, build_trainer
    from maskrcnn.modeling.fuse import use_onednn_linear

    torch.set_num_threads(1)
    # gloo otherwise picks an interface from the host name, which need not reach 127.0.0.1 in a sandbox
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2,
                            timeout=datetime.timedelta(seconds=60))  # a hang guard only

    def trainer_for(built: str, stop_before: int):
        torch.manual_seed(0)
        model = Wide()
        if built == "onednn":
            use_onednn_linear(model)
        cfg = load_config("demo", {"solver.iters": 2, "solver.checkpoint_period": 1, "solver.log_period": 1,
                                   "solver.warmup_iters": 1, "solver.lr": 0.1})
        batches = toy_train.crashing_batches_fn(stop_before=stop_before)
        trainer = build_trainer(cfg, model, make_batches=batches, output_dir=out,
                                class_names=["__background__", "x"], tensorboard=False, plot=False,
                                log_stream=stream)
        return trainer, model

    stream = io.StringIO()

    try:
        built = "onednn" if rank == 0 else "plain"
        trainer, model = trainer_for(built, stop_before=2)
        trained_on = _linear_engine(model)
        try:
            trainer.train()
        except RuntimeError as e:  # both ranks, at the same batch: as a crash of the whole run
            assert "crash" in str(e)
        # the resume: both processes measured torch.mm this time
        if rank == 1 and pin_on_resume:  # this machine's environment pins an engine
            os.environ["MASKRCNN_MATMUL"] = pin_on_resume
        trainer, model = trainer_for("plain", stop_before=-1)
        assert trainer.resume() and trainer.iteration == 1
        resumed_on = _linear_engine(model)
        trainer.train()
    finally:  # the library's own way out (a bare destroy_process_group could abort this process at exit)
        from maskrcnn.engine import distributed as du

        du.cleanup(wait_for_peers=False)
    Path(report).write_text(json.dumps({"built": built, "trained": trained_on, "resumed": resumed_on,
                                         "log": stream.getvalue()}))


@pytest.mark.usefixtures("single_thread")
def _two_ranks(tmp_path, pin_on_resume: str = "") -> list:
    store, out = str(tmp_path / "store"), str(tmp_path / "run")
    # rank 1 in a spawned process, rank 0 here (one process start fewer)
    peer = mp.get_context("spawn").Process(target=_rank, args=(1, store, out, str(tmp_path / "rank1.json"),
                                                               pin_on_resume))
    peer.start()
    try:
        _rank(0, store, out, str(tmp_path / "rank0.json"))
    finally:
        peer.join(timeout=60)
        if peer.is_alive():
            peer.kill()
    assert peer.exitcode == 0
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]


@pytest.mark.usefixtures("single_thread")
def test_every_rank_trains_on_rank_zeros_linear_engine_and_the_checkpoint_says_it(tmp_path, monkeypatch):
    monkeypatch.delenv("MASKRCNN_MATMUL", raising=False)
    out = str(tmp_path / "run")
    ranks = _two_ranks(tmp_path)
    assert [r["built"] for r in ranks] == ["onednn", "plain"]  # the two measurements disagreed
    assert [r["trained"] for r in ranks] == ["onednn", "onednn"]  # one engine: rank 0's
    ckpt = torch.load(Path(out) / "model_0000001.pth", weights_only=False)
    assert ckpt["linear_engine"] == "onednn"  # rank 0's, which is every rank's
    assert [r["resumed"] for r in ranks] == ["onednn", "onednn"]  # the checkpoint's, on every rank


@pytest.mark.usefixtures("single_thread")
def test_a_pin_on_one_machine_does_not_split_the_ranks_after_a_resume(tmp_path, monkeypatch):
    # the resume kept each rank's own pin after the engines were agreed: rank 1 (MASKRCNN_MATMUL=blas)
    # resumed on torch.mm, rank 0 on the checkpoint's oneDNN, and nothing was said
    monkeypatch.delenv("MASKRCNN_MATMUL", raising=False)
    ranks = _two_ranks(tmp_path, pin_on_resume="blas")
    assert [r["resumed"] for r in ranks] == ["onednn", "onednn"]  # rank 0's, on every rank
    assert "rank 1: linear layers on oneDNN, rank 0's engine" in ranks[1]["log"], ranks[1]["log"]
    assert "MASKRCNN_MATMUL=blas" in ranks[1]["log"] and "rank 1:" not in ranks[0]["log"]
