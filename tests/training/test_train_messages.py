"""What training says about settings and data it cannot use as asked: metrics.jsonl as valid JSON, the lr
each iteration used, 0 iterations refused, an ignored model.num_classes, crowd-only training images,
validation classes the model lacks, schedule settings that have no effect."""

import io
import json
import types
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from maskrcnn.config import from_dict, load_config, preset_solver_steps
from maskrcnn.engine.logger import TrainingLogger, read_metrics, truncate_metrics
from maskrcnn.engine.schedule import schedule_notes


def _strict_json(line: str):
    """json.loads as JavaScript's JSON.parse reads it: NaN and Infinity are no JSON."""
    def refuse(token):
        raise ValueError(f"not JSON: {token}")

    return json.loads(line, parse_constant=refuse)


def _dataset(folder, annotations, categories=({"id": 1, "name": "box"},), n_images=2):
    """A COCO file with ``n_images`` 24x24 images written beside it (folder/images)."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    for i in range(1, n_images + 1):
        Image.fromarray(np.full((24, 24, 3), 40 * i, np.uint8)).save(images / f"{i}.png")
    path = folder / "train.json"
    path.write_text(json.dumps({
        "images": [{"id": i, "file_name": f"{i}.png", "width": 24, "height": 24}
                   for i in range(1, n_images + 1)],
        "categories": list(categories), "annotations": annotations}))
    return path, images


def _ann(aid, image_id, category_id=1, crowd=0):
    return {"id": aid, "image_id": image_id, "category_id": category_id, "bbox": [4, 4, 10, 10],
            "area": 100.0, "iscrowd": crowd, "segmentation": [[4, 4, 14, 4, 14, 14, 4, 14]]}


# ------------------------------------------------------------------------------------ metrics.jsonl


def test_metrics_jsonl_writes_nan_as_null_and_reads_it_back_as_nan(tmp_path):
    log = TrainingLogger(output_dir=tmp_path, max_iter=2, log_period=1, tensorboard=False,
                         stream=io.StringIO())
    log.log_iteration(1, {"loss_a": 0.5}, lr=0.01, iter_time=0.1)
    log.log_eval(1, {"bbox": {"AP": 40.0, "APm": float("nan")}})  # no medium object in the validation set
    path = tmp_path / "metrics.jsonl"
    lines = path.read_text().splitlines()
    assert [_strict_json(line) for line in lines][1] == {"iteration": 1, "bbox/AP": 40.0, "bbox/APm": None}
    records = read_metrics(path)
    assert records[1]["bbox/AP"] == 40.0 and np.isnan(records[1]["bbox/APm"])
    truncate_metrics(path, 1)  # a resume's rewrite stays valid JSON too
    assert _strict_json(path.read_text().splitlines()[1])["bbox/APm"] is None


def test_logged_lr_is_the_one_the_iteration_used(tmp_path, toy):
    cfg = load_config("demo", {"solver.iters": 3, "solver.lr": 0.1, "solver.warmup_iters": 2,
                               "solver.warmup_factor": 0.01, "solver.log_period": 1,
                               "solver.checkpoint_period": 0})
    from maskrcnn.engine.trainer import build_trainer

    trainer = build_trainer(cfg, toy.Toy(), make_batches=toy.make_batches_fn(rank=0, world_size=1, per_rank=2,
                                                                           nan_at=-1),
                            output_dir=tmp_path, class_names=["__background__", "x"], tensorboard=False,
                            plot=False, log_stream=io.StringIO())
    trainer.train()
    lrs = [r["lr"] for r in read_metrics(tmp_path / "metrics.jsonl")]
    # iteration 1 runs at lr * warmup_factor, 2 half-way up the ramp, 3 at lr
    assert lrs == pytest.approx([0.1 * 0.01, 0.1 * (0.01 * 0.5 + 0.5), 0.1])


# ------------------------------------------------------------------------------------------ config


def test_zero_iterations_are_refused_but_a_stored_config_with_them_still_reads():
    with pytest.raises(ValueError, match=r"solver.iters must be >= 1 \(0 would train nothing and write the "
                                         r"initial weights as model_final.pth\), got 0"):
        load_config("demo", {"solver.iters": 0})
    # a checkpoint of a 0-iteration run (allowed before) still loads for predict / eval
    assert from_dict({"solver": {"iters": 0}}, stored=True).solver.iters == 0


def test_schedule_notes_for_a_warmup_as_long_as_the_run_and_an_unused_lr_min_factor():
    presets = set()
    short = load_config("demo", {"solver.iters": 4, "solver.steps": [2, 3]})  # the demo's warmup_iters: 100
    assert schedule_notes(short.solver, preset_steps=presets) == [
        "note: solver.warmup_iters 100 >= solver.iters 4: the lr stays below solver.lr for the whole run "
        "(a smaller solver.warmup_iters lets it get there)"]
    assert schedule_notes(load_config("demo", {"solver.iters": 101, "solver.steps": [60, 90]}).solver,
                          preset_steps=presets) == []
    step = load_config("demo", {"solver.lr_min_factor": 0.1})
    assert schedule_notes(step.solver, preset_steps=presets) == [
        "note: solver.lr_schedule step does not use solver.lr_min_factor 0.1 (the cosine schedule's floor): "
        "the lr drops by solver.gamma 0.1 at solver.steps [700, 850]"]
    cosine = load_config("demo", {"solver.lr_min_factor": 0.1, "solver.lr_schedule": "cosine"})
    assert schedule_notes(cosine.solver, preset_steps={(700, 850)}) == []


# ------------------------------------------------------------------------------------------- data


def test_crowd_only_training_images_are_counted_apart_and_named(tmp_path):
    from maskrcnn.data.coco import CocoDataset
    from maskrcnn.engine.training import build_training

    path, images = _dataset(tmp_path, [_ann(1, 1, crowd=1), _ann(2, 1, crowd=1)], n_images=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = CocoDataset(json_path=path, image_dir=images, filter_empty=True)
    assert ds.skipped == {"image_with_only_crowd_annotations": 1, "image_without_annotations": 2}
    with pytest.raises(ValueError) as info, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_training(load_config("demo"), train_json=path, train_images=images, output=tmp_path / "run",
                       log_stream=io.StringIO())
    assert str(info.value) == (
        f"{path}: no usable training image (skipped: image without annotations: 2; image with only crowd "
        "annotations: 1); 1 of its images has only crowd annotations (iscrowd 1: regions "
        "the losses ignore, not objects to learn): an object to train on has iscrowd 0")


def test_a_num_classes_asked_for_is_named_with_the_datas(tmp_path):
    from maskrcnn.commands.train import _sets_key
    from maskrcnn.config import load_config_keys
    from maskrcnn.engine.training import build_training

    none = frozenset()  # a preset's: it writes no key
    assert _sets_key(none, {"model.num_classes": "3"}, "model.num_classes")
    assert not _sets_key(none, {}, "model.num_classes")
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("_base_: demo\nmodel:\n  num_classes: 3\n")
    assert _sets_key(load_config_keys(str(yaml_file))[1], {}, "model.num_classes")
    cats = [{"id": i, "name": f"c{i}"} for i in range(1, 5)]
    anns = [_ann(i, 1 + i % 2, category_id=i) for i in range(1, 5)]
    path, images = _dataset(tmp_path, anns, categories=cats)
    cfg = load_config("demo", {"model.num_classes": 3, "model.backbone": "resnet18", "model.fpn_dim": 8,
                               "data.num_workers": 0})
    stream = io.StringIO()
    _, cfg = build_training(cfg, train_json=path, train_images=images, output=tmp_path / "run",
                            log_stream=stream, asked_num_classes=3, asked_class_names=("a", "b"),
                            trainer_kwargs={"tensorboard": False})
    assert cfg.model.num_classes == 5
    assert (f"note: data.class_names ['a', 'b'] is not applied: class names come from the training data, "
            f"and {path} has c1, c2, c3, c4\n") in stream.getvalue()
    assert _sets_key(none, {"data.class_names": "[a, b]"}, "data.class_names")
    assert _sets_key(none, {"data": "{class_names: [a]}"}, "data.class_names")
    assert not _sets_key(none, {"data.num_workers": "0"}, "data.class_names")
    assert (f"note: model.num_classes 3 is not applied: num_classes comes from the training data, and {path} "
            "has 5 (4 classes and the background)\n") in stream.getvalue()


# ------------------------------------------------------------------------------------------ validation


def test_a_validation_class_the_model_lacks_is_named_once(tmp_path, monkeypatch):
    from maskrcnn.data.coco import CocoDataset
    from maskrcnn.engine import inference

    cats = [{"id": 1, "name": "disc"}, {"id": 2, "name": "box"}, {"id": 3, "name": "other"}]
    anns = [_ann(1, 1, 1), _ann(2, 1, 2), _ann(3, 2, 3), _ann(4, 2, 3), _ann(5, 2, 3, crowd=1)]
    path, _ = _dataset(tmp_path, anns, categories=cats)
    dataset = CocoDataset(json_path=path, image_dir=None)
    model = types.SimpleNamespace(class_names=["__background__", "box", "disc"], label_to_category_id=None)
    mapping = inference.label_mapping(model, dataset)
    assert mapping == {1: 2, 2: 1}
    line = (f"{path}: class 'other' (2 objects) is not one of the model's classes: its objects count as "
            "misses (AP 0) in the mean")  # the crowd region is no object
    assert inference.unscored_classes_warning(mapping, dataset) == line
    assert inference.unscored_classes_warning({1: 2, 2: 1, 3: 3}, dataset) is None
    # two: named together
    two = inference.unscored_classes_warning({1: 1}, dataset)
    assert two == (f"{path}: classes 'box' (1 object), 'other' (2 objects) are not among the model's "
                   "classes: their objects count as misses (AP 0) in the mean")

    # during training: at the first evaluation only
    import maskrcnn.predictor

    monkeypatch.setattr(maskrcnn.predictor, "Predictor", lambda *a, **k: None)
    monkeypatch.setattr(inference, "build_evaluator",
                        lambda p, d, **k: types.SimpleNamespace(label_to_category_id=mapping))
    monkeypatch.setattr(inference, "evaluate_dataset", lambda *a, **k: {"bbox": {"AP": 1.0}})
    evaluate = inference.make_evaluate_fn(load_config("demo"), dataset, path)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        evaluate(torch.nn.Linear(1, 1))
        evaluate(torch.nn.Linear(1, 1))
    assert [str(w.message) for w in seen] == [f"validation: {line}"]


def test_a_validation_with_every_image_left_out_gives_no_ap_not_zero(tmp_path):
    """Every validation image unreadable: the evaluator used to score all the ground truth as misses (AP 0,
    logged, and counted for the best checkpoint); now a warning and no results for that evaluation."""
    from maskrcnn.data.coco import CocoDataset
    from maskrcnn.engine import inference
    from tests.tiny_model import build_tiny

    path, images = _dataset(tmp_path, [_ann(1, 1), _ann(2, 2)])
    for f in images.iterdir():
        f.write_bytes(b"not a png")
    dataset = CocoDataset(json_path=path, image_dir=images)
    model, cfg = build_tiny()
    evaluate = inference.make_evaluate_fn(cfg, dataset, path, optimise=False)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert evaluate(model) is None
    said = [str(w.message) for w in seen]
    assert said[-1] == (f"validation: {path}: none of its 2 images could be evaluated (each named above): "
                        "no AP at this evaluation"), said
    assert sum("left out of the score" in s for s in said) == 2, said


@pytest.mark.parametrize("skipped, kept, line", [
    ({"image_without_annotations": 3}, 17,
     "3 of 20 training images have no annotations and are left out (data.filter_empty=false keeps them as "
     "background images)"),
    ({"image_without_annotations": 1, "missing_image_file": 2}, 4,
     "1 of 5 training images has no annotations and is left out (data.filter_empty=false keeps them as "
     "background images)"),
    ({"image_with_only_crowd_annotations": 2}, 3,
     "2 of 5 training images have only crowd annotations (iscrowd 1: regions the losses ignore) and are left "
     "out (data.filter_empty=false keeps them as background images, crowd regions ignored)"),
    ({"missing_image_file": 2}, 3, ""),
    ({"image_with_too_few_keypoints": 2}, 6,
     "2 of 8 training images have no labelled keypoint (data.min_keypoints_per_image 1) and are left out "
     "(data.min_keypoints_per_image=0 keeps them for the box (and mask) heads)"),
    # every image left out is in the line: the count named only the empty one, the total both
    ({"image_without_annotations": 1, "image_with_too_few_keypoints": 1}, 6,
     "2 of 8 training images are left out: 1 has no annotations, 1 has no labelled keypoint "
     "(data.min_keypoints_per_image 1); data.filter_empty=false keeps those without objects as background "
     "images; data.min_keypoints_per_image=0 those with too few keypoints, for the box (and mask) heads"),
])
def test_the_line_on_images_filter_empty_leaves_out(skipped, kept, line):
    from maskrcnn.engine.training import left_out_line

    assert left_out_line(skipped, kept) == line


def test_the_left_out_line_names_the_keypoint_minimum():
    from maskrcnn.engine.training import left_out_line

    assert left_out_line({"image_with_too_few_keypoints": 1}, 3, 4) == (
        "1 of 4 training images has fewer than 4 labelled keypoints (data.min_keypoints_per_image) and is "
        "left out (data.min_keypoints_per_image=0 keeps it for the box (and mask) heads)")


def test_training_says_which_images_filter_empty_left_out(tmp_path):
    # images 2 and 3 without annotations, image 4 with a crowd region only: left out without a word before
    from maskrcnn.engine.training import build_training

    path, images = _dataset(tmp_path, [_ann(1, 1), _ann(2, 4, crowd=1)], n_images=4)
    cfg = load_config("demo", {"model.backbone": "resnet18", "model.fpn_dim": 8, "data.num_workers": 0})
    stream = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_training(cfg, train_json=path, train_images=images, output=tmp_path / "run", log_stream=stream,
                       trainer_kwargs={"tensorboard": False})
    assert (f"note: {path}: 3 of 4 training images are left out: 2 have no annotations, 1 has only crowd "
            "annotations (iscrowd 1: regions the losses ignore); data.filter_empty=false keeps them as "
            "background images, their crowd regions ignored\n") in stream.getvalue(), stream.getvalue()


def test_a_validation_file_name_with_a_newline_is_printed_escaped_when_left_out(tmp_path):
    """make_evaluate_fn's skip warning names the file from the JSON: a "\\n" in it split the line (and an
    ANSI escape coloured the terminal); it is printed escaped, in the name and in the error's text."""
    from maskrcnn.data.coco import CocoDataset
    from maskrcnn.engine import inference
    from tests.tiny_model import build_tiny

    path, images = _dataset(tmp_path, [_ann(1, 1), _ann(2, 2)])
    data = json.loads(path.read_text())
    data["images"][0]["file_name"] = "bad\nname.png"
    path.write_text(json.dumps(data))
    (images / "1.png").rename(images / "bad\nname.png")
    (images / "bad\nname.png").write_bytes(b"not a png")
    dataset = CocoDataset(json_path=path, image_dir=images)
    model, cfg = build_tiny()
    evaluate = inference.make_evaluate_fn(cfg, dataset, path, optimise=False)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        evaluate(model)
    said = [str(w.message) for w in seen if "left out of the score" in str(w.message)]
    assert len(said) == 1, [str(w.message) for w in seen]
    assert "\n" not in said[0]
    escaped = f"'{images}/bad\\nname.png'"
    assert said[0].startswith(f"validation: {escaped} left out of the score ("), said[0]
    assert said[0].count(escaped) == 2, said[0]  # the error's own text names it escaped too


def test_a_finished_run_ends_saying_where_its_weights_are(tmp_path, monkeypatch, capsys):
    """The last line of a finished run was the AP table or "new best ...": nothing said where
    model_final.pth was, where predict and eval end with "wrote ..."."""
    from maskrcnn.cli import main
    from maskrcnn.engine import training

    run = tmp_path / "run"
    best = {"metric": "segm/AP", "value": 33.28, "iteration": 30}
    for result, files in (({"interrupted": False, "iteration": 30, "best": best},
                           ("model_final.pth", "model_best.pth")),
                          ({"interrupted": False, "iteration": 30, "best": None}, ("model_final.pth",))):
        for name in ("model_final.pth", "model_best.pth"):
            (run / name).unlink(missing_ok=True)
        trainer = types.SimpleNamespace(is_main=True, train=lambda result=result: result)
        monkeypatch.setattr(training, "build_training",
                            lambda cfg, trainer=trainer, files=files, **kw: (
                                run.mkdir(exist_ok=True), [(run / f).write_bytes(b"") for f in files],
                                (trainer, cfg))[-1])
        assert main(["train", "--config", "r18_fpn", "--train-json", "t.json", "--train-images",
                     str(tmp_path), "--output", str(run), "--device", "cpu"]) == 0
        last = capsys.readouterr().out.splitlines()[-1]
        expected = f"done: iteration 30; final weights: {run / 'model_final.pth'}"
        if result["best"]:
            expected += f"; best segm/AP 33.28 (iteration 30): {run / 'model_best.pth'}"
        assert last == expected


def test_schedule_notes_name_steps_the_run_never_reaches():
    """``--set solver.iters=5000`` over r50_fpn kept its steps 60000, 80000: the lr never dropped, unsaid."""
    presets = preset_solver_steps()
    short = load_config("r50_fpn", {"solver.iters": 5000})
    assert schedule_notes(short.solver, preset_steps=presets) == [
        "note: solver.steps [60000, 80000] at or past solver.iters 5000: those lr drops never happen, the lr "
        "never drops (scale solver.steps with solver.iters)"]
    # the last iteration runs with iters - 1 finished: a step at iters never happens
    one = load_config("demo", {"solver.iters": 850})
    assert schedule_notes(one.solver, preset_steps=presets) == [
        "note: solver.steps [850] at or past solver.iters 850: that lr drop never happens, the lr drops only "
        "at 700 (scale solver.steps with solver.iters)"]
    assert schedule_notes(load_config("demo", {"solver.iters": 851}).solver, preset_steps=presets) == []
    # the cosine schedule reads no steps
    cosine = load_config("r50_fpn", {"solver.iters": 5000, "solver.lr_schedule": "cosine"})
    assert schedule_notes(cosine.solver, preset_steps=presets) == []


def test_a_refused_run_says_its_error_alone_not_the_schedule_notes_before_it(tmp_path):
    # the schedule's notes (steps past iters) were said before the data was read: a run refused on its data
    # printed a note line, then its one error
    from maskrcnn.engine.training import build_training

    path, images = _dataset(tmp_path, [_ann(1, 1, crowd=1)], n_images=1)
    cfg = load_config("demo", {"solver.iters": 100, "solver.steps": [500]})
    assert schedule_notes(cfg.solver, preset_steps=preset_solver_steps())  # a note the run would say
    stream = io.StringIO()
    with pytest.raises(ValueError, match="no usable training image"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_training(cfg, train_json=path, train_images=images, output=tmp_path / "run", log_stream=stream)
    assert stream.getvalue() == ""
    # a run that goes on says them all the same, before its first iteration
    path, images = _dataset(tmp_path / "ok", [_ann(1, 1)], n_images=1)
    cfg = load_config("demo", {"solver.iters": 100, "solver.steps": [500], "model.backbone": "resnet18",
                               "model.fpn_dim": 8, "data.num_workers": 0})
    stream = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_training(cfg, train_json=path, train_images=images, output=tmp_path / "run2", log_stream=stream,
                       trainer_kwargs={"tensorboard": False})
    assert "note: solver.steps [500] at or past solver.iters 100" in stream.getvalue(), stream.getvalue()
