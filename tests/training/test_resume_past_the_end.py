"""A resume that lengthens a finished run (``--resume --set solver.iters=8`` after it ended at 4) sets the
earlier end's ``model_final.pth`` aside before training on: stopped before its own end, the run no longer
leaves iteration 4's weights under the name that means "the last weights" beside newer checkpoints (the
README's next command, ``eval --weights RUN/model_final.pth``, evaluated them without a word). Removed when
the checkpoint resumed from holds the same weights, else renamed after its iteration; ``model_best.pth``
(the best so far, named by best.json) stays. The toy model through the real Trainer."""

import io
import json
import random

import numpy as np
import pytest
import torch

from maskrcnn.checkpoint import load_checkpoint
from maskrcnn.config import load_config
from maskrcnn.engine.trainer import build_trainer, checkpoint_candidates


def _trainer(toy, out, *, iters, stop_before=-1):
    """A toy trainer evaluated every 2 iterations (segm/AP = the iteration: each evaluation a new best),
    a checkpoint every 2; ``stop_before``: the batches fail (a crash, as a kill leaves the folder) when
    iteration ``stop_before`` is asked for."""
    cfg = load_config("demo", {
        "solver.iters": iters, "solver.checkpoint_period": 2, "solver.eval_period": 2, "solver.log_period": 1,
        "solver.lr": 0.1, "solver.warmup_iters": 0, "solver.steps": (100,),
    })  # fmt: skip
    batches = toy.crashing_batches_fn(stop_before=stop_before)

    box = []
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    trainer = build_trainer(
        cfg, toy.Toy(), make_batches=batches, output_dir=out, class_names=["__background__", "thing"],
        evaluate_fn=lambda model: {"segm": {"AP": float(box[0].iteration)}}, tensorboard=False, plot=False,
        log_stream=io.StringIO(),
    )  # fmt: skip
    box.append(trainer)
    return trainer


def _log(trainer) -> str:
    return trainer.logger.stream.getvalue()


def test_a_lengthened_run_stopped_before_its_end_leaves_no_stale_final_weights(tmp_path, toy):
    _trainer(toy, tmp_path, iters=4).train()
    assert load_checkpoint(tmp_path / "model_final.pth")["iteration"] == 4
    before = (tmp_path / "model_final.pth").stat().st_mtime_ns
    same = _trainer(toy, tmp_path, iters=4)  # a resume that trains nothing leaves the end as it is
    assert same.resume()
    same.train()
    assert (tmp_path / "model_final.pth").stat().st_mtime_ns == before
    assert "model_final.pth (" not in _log(same)

    longer = _trainer(toy, tmp_path, iters=8, stop_before=7)
    assert longer.resume() and longer.iteration == 4
    log = _log(longer)
    assert ("removed model_final.pth (iteration 4's weights, where the run ended before this resume): this "
            "run goes on to iteration 8 and writes its own at its end; model_0000004.pth, resumed from, "
            "holds the same weights") in log, log
    assert "model_best.pth (iteration 4, segm/AP 4.00) stays: the best so far" in log
    with pytest.raises(RuntimeError, match="crash"):  # stopped after iteration 6, before its end
        longer.train()
    names = sorted(p.name for p in tmp_path.glob("model_*.pth"))
    assert names == ["model_0000002.pth", "model_0000004.pth", "model_0000006.pth", "model_best.pth"]
    assert load_checkpoint(tmp_path / "model_best.pth")["iteration"] == 6  # replaced by a better one
    assert json.loads((tmp_path / "best.json").read_text())["iteration"] == 6

    again = _trainer(toy, tmp_path, iters=8)  # and the run finishes as any resumed one does
    assert again.resume() and again.iteration == 6
    again.train()
    assert load_checkpoint(tmp_path / "model_final.pth")["iteration"] == 8


def test_final_weights_no_checkpoint_holds_are_renamed_after_their_iteration(tmp_path, toy):
    _trainer(toy, tmp_path, iters=4).train()
    (tmp_path / "model_0000004.pth").unlink()  # the end's checkpoint gone: resumed from iteration 2
    (tmp_path / "last_checkpoint").unlink()
    final = load_checkpoint(tmp_path / "model_final.pth")["model"]
    longer = _trainer(toy, tmp_path, iters=8)
    assert longer.resume() and longer.iteration == 2
    assert ("renamed model_final.pth (iteration 4's weights) to model_final_0000004.pth: this run goes on to "
            "iteration 8 and writes its own at its end") in _log(longer)
    assert not (tmp_path / "model_final.pth").exists()
    kept = load_checkpoint(tmp_path / "model_final_0000004.pth")
    assert kept["iteration"] == 4 and all(torch.equal(kept["model"][k], v) for k, v in final.items())
    # never taken for a checkpoint to resume from
    assert [p.name for p in checkpoint_candidates(tmp_path)] == ["model_0000002.pth"]


def test_a_name_to_set_weights_aside_under_is_never_one_taken(tmp_path):
    from maskrcnn.engine.trainer import _free_name

    assert _free_name(tmp_path, "model_final_0000004") == "model_final_0000004.pth"
    (tmp_path / "model_final_0000004.pth").write_bytes(b"set aside before")
    (tmp_path / "model_final_0000004_2.pth").write_bytes(b"and again")
    assert _free_name(tmp_path, "model_final_0000004") == "model_final_0000004_3.pth"
