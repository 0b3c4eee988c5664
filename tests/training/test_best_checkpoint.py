"""The best checkpoint and early stopping: model_best.pth / best.json on improvement only, early stop after
the patience, exact resume of both, unknown metric names; the loop with scripted metrics on the toy
model, one run through ``maskrcnn train``'s builder with the real evaluation."""

import io
import json
import random

import numpy as np
import pytest
import torch
from tiny_model import small_training  # tests/ is on the path

from maskrcnn.checkpoint import load_checkpoint
from maskrcnn.config import load_config
from maskrcnn.engine.best_model import BestTracker
from maskrcnn.engine.logger import read_metrics
from maskrcnn.engine.trainer import build_trainer
from maskrcnn.engine.training import check_best_metric


class Scripted:
    """An ``evaluate_fn`` whose segm/AP at each iteration is given; it records what it saw."""

    def __init__(self, values: dict, trainer_box: list):
        self.values, self.box = values, trainer_box
        self.calls, self.weights = [], {}

    def __call__(self, model):
        it = self.box[0].iteration
        self.calls.append(it)
        self.weights[it] = {k: v.clone() for k, v in model.state_dict().items()}
        ap = self.values[it]
        return {"bbox": {"AP": ap / 2, "AP50": 50.0}, "segm": {"AP": ap, "AP50": 60.0}}


def _trainer(toy, out, values, *, iters, eval_period=2, period=4, stop_before=-1, **solver):
    """A toy trainer evaluated by ``Scripted(values)``; ``stop_before``: the batches fail (a crash) when
    iteration ``stop_before`` is asked for."""
    cfg = load_config("demo", {
        "solver.iters": iters, "solver.checkpoint_period": period, "solver.eval_period": eval_period,
        "solver.log_period": 1, "solver.lr": 0.1, "solver.warmup_iters": 0, "solver.steps": (iters,),
        **{f"solver.{k}": v for k, v in solver.items()},
    })  # fmt: skip
    batches = toy.crashing_batches_fn(stop_before=stop_before)

    box = []
    evaluate = Scripted(values, box)
    torch.manual_seed(0)  # the same start (weights, and every RNG the toy loss draws from) for each run
    np.random.seed(0)
    random.seed(0)
    trainer = build_trainer(
        cfg, toy.Toy(), make_batches=batches, output_dir=out, class_names=["__background__", "thing"],
        evaluate_fn=evaluate, tensorboard=False, plot=False, log_stream=io.StringIO(),
        checkpoint_extra={"label_to_category_id": {1: 7}},
    )  # fmt: skip
    box.append(trainer)
    return trainer, evaluate


def _best_lines(trainer):
    return [line for line in trainer.logger.stream.getvalue().splitlines() if line.startswith("new best")]


def test_best_written_on_improvement_only_and_the_final_evaluation_counts(tmp_path, toy):
    # 6 is worse, 8 only ties: neither writes; the final evaluation (iteration 10) is the best
    values = {2: 10.0, 4: 30.0, 6: 20.0, 8: 30.0, 10: 40.0}
    trainer, evaluate = _trainer(toy, tmp_path, {**values, 10: 25.0}, iters=10)
    writes = []
    real = trainer._write_weights
    trainer._write_weights = lambda path, state, **kw: (writes.append((path.name, trainer.iteration)),
                                                        real(path, state, **kw))
    result = trainer.train()
    assert evaluate.calls == [2, 4, 6, 8, 10]
    best = [w for w in writes if w[0] == "model_best.pth"]
    assert best == [("model_best.pth", 2), ("model_best.pth", 4)]  # the final 25 beats nothing
    assert json.loads((tmp_path / "best.json").read_text()) == {
        "metric": "segm/AP", "value": 30.0, "iteration": 4, "file": "model_best.pth"}
    ck = load_checkpoint(tmp_path / "model_best.pth")  # what predict / eval load
    assert ck["iteration"] == 4 and ck["best_model"] == {"metric": "segm/AP", "value": 30.0, "iteration": 4}
    assert ck["class_names"] == ["__background__", "thing"] and ck["label_to_category_id"] == {1: 7}
    assert ck["config"]["solver"]["best_metric"] == "auto" and "optimizer" not in ck
    for k, v in evaluate.weights[4].items():  # the weights evaluated at iteration 4, not later ones
        assert torch.equal(ck["model"][k], v), k
    final = load_checkpoint(tmp_path / "model_final.pth")["model"]
    assert not torch.equal(ck["model"]["fc.weight"], final["fc.weight"])
    assert result["best"] == {"metric": "segm/AP", "value": 30.0, "iteration": 4}
    assert not result["stopped_early"]
    assert len(_best_lines(trainer)) == 2

    # the final evaluation counts: a best there is written too
    trainer, _ = _trainer(toy, tmp_path / "b", values, iters=10, best_metric="bbox/AP")
    trainer.train()
    assert json.loads((tmp_path / "b" / "best.json").read_text()) == {
        "metric": "bbox/AP", "value": 20.0, "iteration": 10, "file": "model_best.pth"}
    assert load_checkpoint(tmp_path / "b" / "model_best.pth")["iteration"] == 10


def test_best_metric_none_and_no_periodic_evaluation_write_no_best(tmp_path, toy):
    values = {2: 10.0, 4: 30.0}
    _trainer(toy, tmp_path / "off", values, iters=4, best_metric="none")[0].train()
    _trainer(toy, tmp_path / "end", values, iters=4, eval_period=0)[0].train()  # only the final one
    for run in ("off", "end"):
        assert (tmp_path / run / "model_final.pth").is_file()
        assert not (tmp_path / run / "model_best.pth").exists()
        assert not (tmp_path / run / "best.json").exists()


def test_early_stop_after_the_patience_ends_the_run_normally(tmp_path, toy):
    # min_delta 1: 4 beats 2 by 0.5 (a new best, but no reset), 6 by 0.2 over the reference: 2 misses
    values = {2: 10.0, 4: 10.5, 6: 10.2, 8: 50.0}
    trainer, evaluate = _trainer(toy, tmp_path, values, iters=20, early_stop_patience=2,
                                 early_stop_min_delta=1.0)
    result = trainer.train()
    assert result["stopped_early"] and result["iteration"] == 6 and not result["interrupted"]
    assert evaluate.calls == [2, 4, 6]  # no final evaluation of the weights evaluated at 6
    final = load_checkpoint(tmp_path / "model_final.pth")
    assert final["iteration"] == 6
    assert (tmp_path / "last_checkpoint").read_text().strip() == "model_0000006.pth"
    full = load_checkpoint(tmp_path / "model_0000006.pth")
    assert full["best_model"]["waited"] == 2 and full["best_model"]["iteration"] == 4
    assert json.loads((tmp_path / "best.json").read_text())["iteration"] == 4
    log = trainer.logger.stream.getvalue()
    assert (f"stopped early after iteration 6 of 20: 2 evaluations in a row without a gain of at least 1 in "
            f"segm/AP; the best, segm/AP 10.50 at iteration 4, is {tmp_path / 'model_best.pth'}") in log, log

    # resuming the stopped run trains no further with the same patience
    again, evaluate = _trainer(toy, tmp_path, values, iters=20, early_stop_patience=2,
                               early_stop_min_delta=1.0)
    assert again.resume()
    result = again.train()
    assert result["iteration"] == 6 and result["stopped_early"] and evaluate.calls == []
    assert "nothing to train: the run had stopped early at iteration 6" in again.logger.stream.getvalue()


def test_tracker_resets_the_count_by_min_delta_from_its_reference():
    t = BestTracker(metric="segm/AP", patience=3, min_delta=1.0)
    # creeping gains add up against the value that last reset the count (Keras's and Lightning's rule)
    steps = [(10.0, True, 0), (10.6, True, 1), (11.2, True, 0), (11.2, False, 1), (float("nan"), False, 1),
             (12.1, True, 2), (12.15, True, 3)]
    for i, (value, improved, waited) in enumerate(steps):
        assert t.update(value, i) is improved and t.waited == waited, (i, value)
    assert t.stop and t.value == 12.15 and t.iteration == 6 and t.evaluated_at == 6
    copy = BestTracker(metric="segm/AP", patience=3, min_delta=1.0)
    copy.load_state_dict(t.state_dict())
    assert copy.state_dict() == t.state_dict()
    assert not BestTracker(metric="segm/AP", patience=0).stop  # 0: never


def test_resume_keeps_best_and_patience_identical_to_an_uninterrupted_run(tmp_path, toy):
    # best at 8; then 3 evaluations without improvement stop the run at 14
    values = {2: 5.0, 4: 7.0, 6: 6.0, 8: 8.0, 10: 7.5, 12: 7.0, 14: 7.1, 16: 9.0}
    opts = dict(iters=20, early_stop_patience=3)
    full, _ = _trainer(toy, tmp_path / "full", values, **opts)
    a = full.train()
    # killed after the evaluation at 8 (its best written), whose checkpoint was written just before it
    cut, _ = _trainer(toy, tmp_path / "cut", values, stop_before=9, **opts)
    with pytest.raises(RuntimeError, match="crash"):
        cut.train()
    assert (tmp_path / "cut" / "last_checkpoint").read_text().strip() == "model_0000008.pth"
    resumed, evaluate = _trainer(toy, tmp_path / "cut", values, **opts)
    assert resumed.resume() and resumed.iteration == 8
    b = resumed.train()
    # the evaluation the checkpoint predates had run (record and best.json written): counted, not redone
    assert evaluate.calls == [10, 12, 14]
    assert a["iteration"] == b["iteration"] == 14 and a["stopped_early"] and b["stopped_early"]
    assert a["best"] == b["best"] == {"metric": "segm/AP", "value": 8.0, "iteration": 8}
    for run in ("full", "cut"):
        assert json.loads((tmp_path / run / "best.json").read_text())["iteration"] == 8
    wa, wb = (load_checkpoint(tmp_path / run / "model_best.pth")["model"] for run in ("full", "cut"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    sa, sb = (load_checkpoint(tmp_path / run / "model_0000014.pth")["best_model"] for run in ("full", "cut"))
    assert sa == sb and sa["waited"] == 3
    # one evaluation record per evaluation: the killed run's at 8 kept
    evals = [[r for r in read_metrics(tmp_path / run / "metrics.jsonl") if "segm/AP" in r]
             for run in ("full", "cut")]
    assert evals[0] == evals[1] and [r["iteration"] for r in evals[0]] == [2, 4, 6, 8, 10, 12, 14]


def test_a_resume_counts_an_evaluation_on_record_and_redoes_one_whose_best_was_not_written(tmp_path, toy):
    """The README's journey: a run of 6 iterations (its final evaluation at 6, after the checkpoint),
    resumed with solver.iters=8, evaluated iteration 6 again although metrics.jsonl held its record."""
    values = {3: 5.0, 6: 7.0, 8: 6.0}
    # torn: killed between the evaluation's record and its best.json; stale: a best.json of iteration 6
    # with another value than the record leads to (not this evaluation's): both evaluated again
    for run, best_on_disk in (("kept", None), ("torn", (5.0, 3)), ("stale", (6.5, 6))):
        drop_best = best_on_disk is not None
        _trainer(toy, tmp_path / run, values, iters=6, eval_period=3, period=3)[0].train()
        if drop_best:
            (tmp_path / run / "best.json").write_text(json.dumps(
                {"metric": "segm/AP", "value": best_on_disk[0], "iteration": best_on_disk[1],
                 "file": "model_best.pth"}))
        resumed, evaluate = _trainer(toy, tmp_path / run, values, iters=8, eval_period=3, period=3)
        assert resumed.resume() and resumed.iteration == 6
        result = resumed.train()
        log = resumed.logger.stream.getvalue()
        assert evaluate.calls == ([6, 8] if drop_best else [8]), run
        assert ("iteration 6 was evaluated before the resume" in log) is not drop_best, log
        assert result["best"] == {"metric": "segm/AP", "value": 7.0, "iteration": 6}
        assert json.loads((tmp_path / run / "best.json").read_text())["iteration"] == 6
        evals = [r["iteration"] for r in read_metrics(tmp_path / run / "metrics.jsonl") if "segm/AP" in r]
        assert evals == [3, 6, 8], run  # one record each: the one at 6 kept, or replaced when redone


def test_unknown_metric_names_are_errors(tmp_path, toy):
    # at the first evaluation, naming those the evaluation reports
    trainer, _ = _trainer(toy, tmp_path, {2: 1.0}, iters=4, best_metric="keypoints/AP")
    with pytest.raises(ValueError) as info:
        trainer.train()
    assert str(info.value) == (
        "solver.best_metric keypoints/AP: the evaluation does not report it; it reports bbox/AP, bbox/AP50, "
        "segm/AP, segm/AP50 (choose one of them, or none)")
    assert not (tmp_path / "model_0000004.pth").exists() and not (tmp_path / "best.json").exists()
    # in the config: a name no evaluation has
    with pytest.raises(ValueError, match=r"best_metric must be .*got 'segm/ap' \(did you mean segm/AP\?\)"):
        load_config("demo", {"solver.best_metric": "segm/ap"})
    with pytest.raises(ValueError, match="solver.best_metric is empty: give auto, none or iou_type/metric"):
        load_config("demo", {"solver.best_metric": ""})  # an unset shell variable, not "off"
    # before training: a metric this model's evaluation cannot report, early stopping without validation
    cfg = load_config("r50_fpn", {"model.roi_heads.mask_on": False, "solver.eval_period": 10})
    check_best_metric(cfg, has_val=True)  # auto: bbox/AP
    with pytest.raises(ValueError, match=r"^solver.best_metric segm/AP: this model is evaluated on bbox "
                                         r"only; choose one of bbox/AP, bbox/AP50, .*bbox/APl \(or none\)$"):
        check_best_metric(load_config("r50_fpn", {"model.roi_heads.mask_on": False, "solver.eval_period": 10,
                                                  "solver.best_metric": "segm/AP"}), has_val=True)
    with pytest.raises(ValueError, match="needs a validation set to evaluate on: give --val-json"):
        check_best_metric(load_config("r50_fpn", {"solver.eval_period": 10, "solver.early_stop_patience": 3}),
                          has_val=False)
    with pytest.raises(ValueError, match="solver.early_stop_patience 3 counts periodic evaluations"):
        load_config("r50_fpn", {"solver.eval_period": 0, "solver.early_stop_patience": 3})


@pytest.mark.slow
def test_best_checkpoint_through_the_training_builder(tmp_path):
    from maskrcnn.data.shapes import generate_shapes_dataset
    from maskrcnn.engine.training import build_training
    from maskrcnn.predictor import Predictor

    paths = generate_shapes_dataset(tmp_path / "data", num_train=2, num_val=0, image_size=(32, 32),
                                    max_objects=2, seed=0)
    cfg = load_config("demo", {
        **small_training(32), "model.roi_heads.mask_head_dim": 8, "model.roi_heads.box_head_dim": 32,
        "model.fpn_dim": 16, "solver.warmup_iters": 0, "solver.iters": 2, "solver.eval_period": 1,
        "solver.checkpoint_period": 0, "data.num_workers": 0, "solver.best_metric": "bbox/AP50",
    })  # fmt: skip
    out = io.StringIO()
    trainer, cfg = build_training(
        cfg, train_json=paths["train_json"], train_images=paths["train_images"], val_json=paths["train_json"],
        val_images=paths["train_images"], output=tmp_path / "run", log_stream=out,
        trainer_kwargs={"tensorboard": False, "plot": False},
    )  # fmt: skip
    result = trainer.train()
    record = json.loads((tmp_path / "run" / "best.json").read_text())
    evals = {r["iteration"]: r["bbox/AP50"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")
             if "bbox/AP50" in r}
    assert sorted(evals) == [1, 2]
    best_it = 1 if evals[1] >= evals[2] else 2  # a tie keeps the earlier
    assert record == {"metric": "bbox/AP50", "value": evals[best_it], "iteration": best_it,
                      "file": "model_best.pth"}
    assert result["best"] == {k: record[k] for k in ("metric", "value", "iteration")}
    # loads as predict and eval load a checkpoint
    predictor = Predictor.from_checkpoint(tmp_path / "run" / "model_best.pth", device="cpu", optimise=False)
    assert predictor.class_names == list(cfg.data.class_names)


def test_an_older_checkpoint_without_the_state_resumes_as_before(tmp_path, toy):
    values = {2: 9.0, 4: 5.0, 6: 6.0, 8: 7.0}
    cut, _ = _trainer(toy, tmp_path, values, iters=8, stop_before=5)
    with pytest.raises(RuntimeError, match="crash"):
        cut.train()
    path = tmp_path / "model_0000004.pth"
    old = torch.load(path, weights_only=True)
    del old["best_model"]  # as written before the best checkpoint existed
    torch.save(old, path)
    resumed, evaluate = _trainer(toy, tmp_path, values, iters=8)
    assert resumed.resume() and resumed.iteration == 4
    resumed.train()
    assert evaluate.calls == [6, 8]  # no evaluation redone at 4: nothing says it is missing
    # the tracking started afresh at 6 (iteration 2's 9.0 is not known any more)
    assert json.loads((tmp_path / "best.json").read_text())["iteration"] == 8


def test_a_failed_write_of_the_best_checkpoint_names_the_file(tmp_path, toy, monkeypatch):
    import errno
    import os

    from maskrcnn.engine import trainer as trainer_module

    real = trainer_module.save_checkpoint

    def full_disk_for_the_best(path, **kw):
        if path.name == "model_best.pth":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, **kw)

    monkeypatch.setattr(trainer_module, "save_checkpoint", full_disk_for_the_best)
    trainer, _ = _trainer(toy, tmp_path, {2: 1.0}, iters=4, period=2)
    with pytest.raises(trainer_module.CheckpointWriteError) as info:
        trainer.train()
    assert str(info.value) == (
        f"could not write the best checkpoint {tmp_path / 'model_best.pth'} after iteration 2: "
        f"{os.strerror(errno.ENOSPC)}; the last good checkpoint is {tmp_path / 'model_0000002.pth'} (make "
        "room or fix the folder, then continue with --resume)")
    assert not (tmp_path / "best.json").exists()


def test_evaluations_that_cannot_count_only_note_the_iteration(tmp_path, toy, monkeypatch):
    from maskrcnn.engine import trainer as trainer_module

    trainer, _ = _trainer(toy, tmp_path, {}, iters=4)
    scans = []
    monkeypatch.setattr(trainer_module, "non_finite_keys", lambda state: scans.append(1) or ["w"])
    undefined = {"segm": {"AP": float("nan")}}
    for it, results in ((2, None), (4, undefined), (6, {"segm": {"AP": 40.0}})):  # the last: weights "NaN"
        trainer.iteration = it
        trainer._follow_best(results)
        assert (trainer.best.evaluated_at, trainer.best.value, trainer.best.waited) == (it, None, 0)
    assert len(scans) == 1  # the weights are scanned only when the metric could count
    assert not (tmp_path / "model_best.pth").exists() and not (tmp_path / "best.json").exists()
    assert "segm/AP is undefined at iteration 4" in trainer.logger.stream.getvalue()


def test_a_patience_of_one_reads_in_the_singular(tmp_path, toy):
    # "stopped early ...: 1 evaluations in a row without an improvement"
    trainer, _ = _trainer(toy, tmp_path, {2: 10.0, 4: 9.0}, iters=20, early_stop_patience=1)
    assert trainer.train()["iteration"] == 4
    log = trainer.logger.stream.getvalue()
    assert "stopped early after iteration 4 of 20: 1 evaluation without an improvement in segm/AP; " in log, \
        log  # fmt: skip


def test_an_undefined_metric_names_the_evaluations_reason(tmp_path, toy):
    trainer, _ = _trainer(toy, tmp_path, {}, iters=4)
    trainer.iteration = 2
    why = "segm AP not reported: none of the 3 ground-truth objects has a mask"
    trainer._follow_best({"segm": {"AP": float("nan"), "not_reported": why}})
    log = trainer.logger.stream.getvalue()
    assert f"warning: segm/AP is undefined at iteration 2 ({why}): this evaluation does not count" in log
    assert "no ground truth in that range?" not in log


def _rectangles_only(tmp_path):
    """A shapes training set and, as validation set, the same images with every object a rectangle."""
    from maskrcnn.data.shapes import generate_shapes_dataset

    paths = generate_shapes_dataset(tmp_path / "data", num_train=2, num_val=0, image_size=(32, 32),
                                    max_objects=2, seed=0)
    val = json.loads(open(paths["train_json"]).read())
    for ann in val["annotations"]:
        ann["segmentation"] = []  # as CVAT exports rectangles
    (tmp_path / "val.json").write_text(json.dumps(val))
    return paths, tmp_path / "val.json"


def test_a_validation_set_of_rectangles_follows_bbox_ap_or_refuses_a_segm_metric(tmp_path):
    """Its segm AP is NaN at every evaluation: with segm/AP no best checkpoint was ever written and the
    patience never counted."""
    from maskrcnn.engine.training import build_training

    paths, val = _rectangles_only(tmp_path)
    base = {**small_training(32), "model.roi_heads.mask_head_dim": 8, "model.roi_heads.box_head_dim": 32,
            "model.fpn_dim": 16, "solver.iters": 2, "solver.eval_period": 1, "data.num_workers": 0}
    out = io.StringIO()
    trainer, _ = build_training(
        load_config("demo", base), train_json=paths["train_json"], train_images=paths["train_images"],
        val_json=val, val_images=paths["train_images"], output=tmp_path / "run", log_stream=out,
        trainer_kwargs={"tensorboard": False, "plot": False})  # fmt: skip
    assert trainer.best.metric == "bbox/AP"
    n = len(json.loads(val.read_text())["annotations"])
    assert (f"warning: solver.best_metric auto follows bbox/AP, not segm/AP: none of the {n} objects of the "
            f"validation set {val} has a mask (each has a box and no segmentation), so its segm AP is never "
            "reported") in out.getvalue()
    with pytest.raises(ValueError, match=rf"^solver.best_metric segm/AP50: none of the {n} objects of the "
                                         r"validation set .* follow a bbox metric \(e.g. --set "
                                         r"solver.best_metric=bbox/AP\) or none$"):
        build_training(load_config("demo", {**base, "solver.best_metric": "segm/AP50"}),
                       train_json=paths["train_json"], train_images=paths["train_images"], val_json=val,
                       val_images=paths["train_images"], output=tmp_path / "run2", log_stream=io.StringIO())
    # a validation set with masks: segm/AP as before, nothing said
    out = io.StringIO()
    trainer, _ = build_training(
        load_config("demo", base), train_json=paths["train_json"], train_images=paths["train_images"],
        val_json=paths["train_json"], val_images=paths["train_images"], output=tmp_path / "run3",
        log_stream=out, trainer_kwargs={"tensorboard": False, "plot": False})  # fmt: skip
    assert trainer.best.metric == "segm/AP" and "follows bbox/AP" not in out.getvalue()


def test_a_resume_without_periodic_evaluation_keeps_the_runs_best(tmp_path, toy):
    """A run that kept a best (eval_period 3), resumed with solver.eval_period=0 and a longer schedule:
    its final evaluation scored higher, yet model_best.pth and best.json stayed the earlier best's. A
    lower one must not replace the best: the earlier end's evaluation (on record) counts."""
    for run, final, best_at in (("higher", 9.0, 8), ("lower", 6.0, 6)):
        values = {3: 5.0, 6: 7.0, 8: final}
        _trainer(toy, tmp_path / run, values, iters=6, eval_period=3, period=3)[0].train()
        resumed, evaluate = _trainer(toy, tmp_path / run, values, iters=8, eval_period=0, period=3)
        assert resumed.resume() and resumed.iteration == 6
        result = resumed.train()
        assert evaluate.calls == [8], run  # the final evaluation only; the one at 6 is on record
        record = json.loads((tmp_path / run / "best.json").read_text())
        assert record == {"metric": "segm/AP", "value": values[best_at], "iteration": best_at,
                          "file": "model_best.pth"}, run
        assert result["best"] == {k: record[k] for k in ("metric", "value", "iteration")}
        assert load_checkpoint(tmp_path / run / "model_best.pth")["iteration"] == best_at, run
        assert (len(_best_lines(resumed)) == 1) is (best_at == 8), run
    # a run that never kept one (eval_period 0 from its start) gets none on resume either
    _trainer(toy, tmp_path / "none", {6: 5.0}, iters=6, eval_period=0, period=3)[0].train()
    resumed, _ = _trainer(toy, tmp_path / "none", {8: 9.0}, iters=8, eval_period=0, period=3)
    assert resumed.resume()
    resumed.train()
    assert not any((tmp_path / "none" / name).exists() for name in ("model_best.pth", "best.json"))
