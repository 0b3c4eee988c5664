"""Starting a run from existing weights: class matching by name, the per-key plan and its errors, the
config following the weights, and ``train --init`` with our own checkpoints (resume, refusals)."""

import json
import os
import pickle

import pytest
import torch

from maskrcnn.cli import main
from maskrcnn.config import load_config
from maskrcnn.data.shapes import generate_shapes_dataset
from maskrcnn.engine.init_weights import InitError, follow_weights, match_names, normalise_name, plan_init

# ------------------------------------------------------------------------------------------ names


def test_names_match_case_spaces_and_separators():
    assert normalise_name(" Traffic_Light ") == normalise_name("traffic-light") == "traffic light"
    ours = ["__background__", "Person", "traffic_light", "widget"]
    theirs = ["__background__", "person", "N/A", "car", "traffic light", "N/A"]
    assert match_names(ours, theirs) == [0, 1, 4, None]


def test_placeholders_never_match_and_first_duplicate_wins():
    ours = ["__background__", "N/A", "car"]
    theirs = ["__background__", "N/A", "car", "car"]
    assert match_names(ours, theirs) == [0, None, 2]


def test_explicit_map_overrides_and_can_force_fresh():
    ours = ["__background__", "pedestrian", "car", "bus"]
    theirs = ["__background__", "person", "car", "bus"]
    rows = match_names(ours, theirs, {"pedestrian": "person", "bus": ""})
    assert rows == [0, 1, 2, None]


def test_explicit_map_names_are_exact_with_a_did_you_mean():
    ours = ["__background__", "pedestrian", "widget"]
    theirs = ["__background__", "person", "star"]
    with pytest.raises(InitError, match=r"'Widget' is not a class of the training set as spelt: did you mean "
                                        r"'widget'\?"):
        match_names(ours, theirs, {"Widget": "star"})
    with pytest.raises(InitError, match=r"'PERSON' \(for 'pedestrian'\) is not a class of the weights as "
                                        r"spelt: did you mean 'person'\?"):
        match_names(ours, theirs, {"pedestrian": "PERSON"})
    assert match_names(ours, theirs, {"widget": "star"}) == [0, None, 2]


def test_explicit_map_names_must_exist():
    ours = ["__background__", "pedestrian"]
    theirs = ["__background__", "person", "car"]
    with pytest.raises(InitError, match=r"'cyclist' is not a class of the training set \(pedestrian\)"):
        match_names(ours, theirs, {"cyclist": "person"})
    with pytest.raises(InitError, match=r"'walker' \(for 'pedestrian'\) is not a class of the weights"):
        match_names(ours, theirs, {"pedestrian": "walker"})


# ------------------------------------------------------------------------------------------ plan


def _state(**shapes):
    return {k.replace("__", "."): torch.full(s, float(i + 1)) for i, (k, s) in enumerate(shapes.items())}


def test_plan_copies_matches_and_keeps_fresh_parts():
    model = {
        "backbone.a.weight": torch.zeros(2, 3),
        "fpn.b.weight": torch.zeros(4),
        "roi_heads.box_predictor.cls_score.weight": torch.zeros(3, 5),
        "roi_heads.box_predictor.bbox_pred.bias": torch.arange(12.0),
        "backbone.n.num_batches_tracked": torch.tensor(0),
    }
    source = {
        "backbone.a.weight": torch.ones(2, 3),
        "roi_heads.box_predictor.cls_score.weight": torch.arange(20.0).view(4, 5),
        "roi_heads.box_predictor.bbox_pred.bias": -torch.arange(16.0),
        "roi_heads.mask_head.predictor.weight": torch.ones(4, 2, 1, 1),  # a part the model lacks
        "backbone.n.num_batches_tracked": torch.tensor(7),
    }
    plan = plan_init(model, source, class_rows=[0, 3, None])
    s = plan["state"]
    assert torch.equal(s["backbone.a.weight"], torch.ones(2, 3))
    assert torch.equal(s["fpn.b.weight"], torch.zeros(4))  # the weights have no FPN: fresh
    # rows: ours 0 <- theirs 0, ours 1 <- theirs 3, ours 2 fresh
    assert torch.equal(s["roi_heads.box_predictor.cls_score.weight"],
                       torch.stack([torch.arange(5.0), torch.arange(15.0, 20.0), torch.zeros(5)]))
    assert s["roi_heads.box_predictor.bbox_pred.bias"].tolist() == [-0.0, -1, -2, -3, -12, -13, -14, -15,
                                                                    8, 9, 10, 11]
    assert plan["unused"] == ["roi_heads.mask_head.predictor.weight"]
    assert "fpn.b.weight" in plan["reinitialised"] and "backbone.a.weight" in plan["loaded"]
    assert plan["class_specific"]["roi_heads.box_predictor.cls_score.weight"] == {"rows_copied": 2,
                                                                                   "rows_fresh": 1}


def test_plan_names_wrong_shapes_missing_and_unexpected_keys():
    model = {"backbone.a.weight": torch.zeros(2, 3), "backbone.b.weight": torch.zeros(1),
             "rpn.c.weight": torch.zeros(4)}
    source = {"backbone.a.weight": torch.zeros(3, 3), "rpn.c.weight": torch.zeros(4),
              "rpn.extra.weight": torch.zeros(1)}
    with pytest.raises(InitError) as e:
        plan_init(model, source)
    msg = str(e.value)
    assert "backbone.a.weight: the weights have (3, 3), the model (2, 3)" in msg
    assert "keys the model needs but the weights lack: backbone.b.weight" in msg
    assert "keys the weights have but the model does not: rpn.extra.weight" in msg


def test_imagenet_res5_feeds_the_c4_head():
    model = {"backbone.res4.0.w": torch.zeros(1), "roi_heads.res5.0.w": torch.zeros(2)}
    source = {"backbone.res4.0.w": torch.ones(1), "backbone.res5.0.w": torch.full((2,), 5.0)}
    plan = plan_init(model, source)
    assert torch.equal(plan["state"]["roi_heads.res5.0.w"], torch.full((2,), 5.0))
    assert plan["unused"] == [] and plan["reinitialised"] == []


def test_config_follows_the_weights_and_lists_changes():
    cfg = load_config("r50_fpn")
    implied = {"model.backbone": "resnet18", "model.pixel_std": (1 / 255,) * 3, "model.fpn_dim": 256,
               "model.frozen_bn_eps": 1e-5}
    followed, changes = follow_weights(cfg, implied)
    assert followed.model.backbone == "resnet18" and followed.model.pixel_std == (1 / 255,) * 3
    assert set(changes) == {"model.backbone", "model.pixel_std"}
    assert changes["model.backbone"] == {"from": "resnet50", "to": "resnet18"}
    assert cfg.model.backbone == "resnet50"  # the input is not changed


def test_a_value_set_explicitly_wins_over_one_the_weights_only_suggest(tmp_path):
    from maskrcnn.engine.init_weights import follow_weights_keeping, summary_lines
    from maskrcnn.engine.training import _explicit_keys

    cfg = load_config("r50_fpn", {"model.frozen_bn_eps": 1e-5, "model.backbone": "resnet101"})
    implied = {"model.frozen_bn_eps": 0.0, "model.backbone": "resnet50", "model.pixel_std": (1 / 255,) * 3}
    explicit = _explicit_keys(implied, {"model.frozen_bn_eps": 1e-5, "model.backbone": "resnet101"}, None)
    assert explicit == {"model.frozen_bn_eps": "--set", "model.backbone": "--set"}
    # an architecture key set explicitly against the weights is refused: their tensors fit no other
    with pytest.raises(InitError, match=r"^--set model\.backbone=resnet101 but the --init weights are a "
                                        r"resnet50 model"):
        follow_weights_keeping(cfg, implied, explicit)
    explicit.pop("model.backbone")  # not set explicitly: forced, the tensors' shapes say so
    followed, changes, kept = follow_weights_keeping(cfg, implied, explicit)
    assert followed.model.frozen_bn_eps == 1e-5  # kept: the file cannot tell
    assert followed.model.backbone == "resnet50"
    assert set(changes) == {"model.backbone", "model.pixel_std"}
    assert kept == {"model.frozen_bn_eps": {"value": 1e-5, "by": "--set", "weights": 0.0}}
    report = {"source": {"spec": "w.pth"}, "config_kept": kept, "loaded": [], "reinitialised": [],
              "unused": [], "copied_classes": {}, "fresh_classes": [], "notes": []}
    lines = summary_lines(report, changes)
    assert "  kept model.frozen_bn_eps=1e-05 from --set (the weights suggest 0.0)" in lines
    # the YAML given as --config is as explicit as --set; a preset is not
    yaml = tmp_path / "run.yaml"
    yaml.write_text("model:\n  frozen_bn_eps: 1.0e-5\n")
    assert _explicit_keys(implied, {}, str(yaml)) == {"model.frozen_bn_eps": f"--config {yaml}"}
    assert _explicit_keys(implied, {}, "r50_fpn") == {}
    # given the keys load_config_keys read with the Config, the file is not read again (gone: still named)
    from maskrcnn.config import load_config_keys

    written = load_config_keys(str(yaml))[1]
    yaml.unlink()
    assert _explicit_keys(implied, {}, str(yaml), written) == {"model.frozen_bn_eps": f"--config {yaml}"}
    # maskrcnn.train(config=Config) reads it from a temporary file: the kept line and the init report say
    # which Config, not that file's name
    said = _explicit_keys(implied, {}, str(yaml), written, "the Config given to train()")
    assert said == {"model.frozen_bn_eps": "the Config given to train()"}
    # a section's mapping names only its own keys: --set model={num_classes: 3} keeps no implied value
    assert _explicit_keys(implied, {"model": "{num_classes: 3}"}, None) == {}
    in_section = _explicit_keys(implied, {"model": "{frozen_bn_eps: 1.0e-5}"}, None)
    assert in_section == {"model.frozen_bn_eps": "--set"}


# ------------------------------------------------------------------------------------------ train --init

TINY = ["solver.batch_size=2", "solver.warmup_iters=1", "solver.steps=[100]", "solver.checkpoint_period=0",
        "input.min_size=64", "input.max_size=96", "input.min_size_test=64", "input.max_size_test=96"]


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    """A demo-preset model trained for 2 iterations on shapes; returns (root, data paths, checkpoint)."""
    root = tmp_path_factory.mktemp("init")
    data = generate_shapes_dataset(root / "data", num_train=6, num_val=0, image_size=(64, 80), seed=0)
    args = ["train", "--config", "demo", "--train-json", data["train_json"], "--train-images",
            data["train_images"], "--output", str(root / "src"), "--set", "solver.iters=2", *TINY]
    assert main(args) == 0
    return root, data, root / "src" / "model_final.pth"


def _renamed(data, root, names):
    d = json.loads(open(data["train_json"]).read())
    for cat, name in zip(d["categories"], names):
        cat["name"] = name
    path = root / f"train_{'_'.join(names)}.json"
    path.write_text(json.dumps(d))
    return str(path)


def _train(data_json, data, out, *extra):
    """One iteration at lr 0 with frozen batch norm: the saved model is the initialisation."""
    return main(["train", "--config", "demo", "--train-json", data_json, "--train-images",
                 data["train_images"], "--output", str(out), "--set", "solver.iters=1", "solver.lr=0",
                 "model.norm=frozen_bn", *TINY, *extra])


@pytest.mark.slow
def test_our_checkpoint_keeps_rows_of_shared_names(source_run, capsys):
    root, data, ckpt = source_run
    names = ["Star", "blob", "circle", "pedestrian", "square"]  # demo: circle square triangle star cross
    out = root / "ours"
    assert _train(_renamed(data, root, names), data, out, "model.init_class_map={pedestrian: cross}",
                  "--init", str(ckpt)) == 0
    printed = capsys.readouterr().out
    listed = "Star <- star, circle <- circle, pedestrian <- cross, square <- square"
    assert f"class rows from the weights: {listed}" in printed
    report = json.loads((out / "init_report.json").read_text())
    assert report["copied_classes"] == {"Star": "star", "circle": "circle", "pedestrian": "cross",
                                        "square": "square"}
    assert report["fresh_classes"] == ["blob"]
    assert report["source"]["path"] == str(ckpt.resolve()) and len(report["source"]["sha256"]) == 64
    assert report["unused"] == [] and report["config_changes"] == {}
    src = torch.load(ckpt, weights_only=True)["model"]
    got = torch.load(out / "model_final.pth", weights_only=True)["model"]
    # lr 0: the saved model is the initialisation; our classes 1..5 <- theirs 4, -, 1, 5, 2
    for ours_i, theirs_i in ((0, 0), (1, 4), (3, 1), (4, 5), (5, 2)):
        assert torch.equal(got["roi_heads.box_predictor.cls_score.weight"][ours_i],
                           src["roi_heads.box_predictor.cls_score.weight"][theirs_i])
        assert torch.equal(got["roi_heads.mask_head.predictor.weight"][ours_i],
                           src["roi_heads.mask_head.predictor.weight"][theirs_i])
    fresh = got["roi_heads.box_predictor.bbox_pred.weight"][8:12]
    assert not any(torch.equal(fresh, src["roi_heads.box_predictor.bbox_pred.weight"][4 * j:4 * j + 4])
                   for j in range(6))
    shared = [k for k in src if not k.startswith(("roi_heads.box_predictor", "roi_heads.mask_head.predictor"))
              and not k.endswith("num_batches_tracked")]
    assert shared and all(torch.equal(got[k], src[k]) for k in shared)


@pytest.mark.slow
def test_init_with_resume_is_explained(source_run, capsys):
    root, data, ckpt = source_run
    out = root / "resumed"
    assert _train(data["train_json"], data, out, "--init", str(ckpt)) == 0
    capsys.readouterr()
    other = root / "other.pth"
    other.write_bytes(ckpt.read_bytes())
    assert _train(data["train_json"], data, out, "solver.iters=2", "--resume", "--init", str(other)) == 1
    err = capsys.readouterr().err
    assert f"--init {other}" in err and "--resume continues that run" in err and "another --output" in err
    assert _train(data["train_json"], data, out, "solver.iters=2", "--resume", "--init", str(ckpt)) == 0
    printed = capsys.readouterr().out
    assert "is not applied again" in printed and "resumed from" in printed
    assert torch.load(out / "model_final.pth", weights_only=True)["iteration"] == 2


def test_broken_weights_name_the_key(source_run, capsys):
    root, data, ckpt = source_run
    full = torch.load(ckpt, weights_only=True)
    missing = {**full, "model": {k: v for k, v in full["model"].items() if k != "fpn.output.1.conv.weight"}}
    torch.save(missing, root / "missing.pth")
    assert _train(data["train_json"], data, root / "m", "--init", str(root / "missing.pth")) == 1
    assert "keys the model needs but the weights lack: fpn.output.1.conv.weight" in capsys.readouterr().err
    wrong = {**full, "model": {**full["model"], "rpn.head.objectness.weight": torch.zeros(2, 64, 1, 1)}}
    torch.save(wrong, root / "wrong.pth")
    assert _train(data["train_json"], data, root / "w", "--init", str(root / "wrong.pth")) == 1
    assert "rpn.head.objectness.weight: the weights have (2, 64, 1, 1), the model (3, 64, 1, 1)" \
        in capsys.readouterr().err
    assert not (root / "m" / "model_final.pth").exists() and not (root / "w" / "model_final.pth").exists()


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("suffix", [".pkl", ".pth"])
def test_code_running_files_are_refused_unrun(source_run, tmp_path, capsys, suffix):
    root, data, _ = source_run
    marker = tmp_path / "ran"
    path = tmp_path / f"evil{suffix}"
    if suffix == ".pkl":
        path.write_bytes(pickle.dumps({"model": {"backbone.x": _RunsCode(marker)}}))
    else:
        torch.save({"model": _RunsCode(marker)}, path)
    assert _train(data["train_json"], data, tmp_path / "run", "--init", str(path)) == 1
    err = capsys.readouterr().err
    assert str(path) in err and ("refused" in err or "cannot be read" in err)
    assert not marker.exists()


def test_unknown_spec_lists_published_names(source_run, tmp_path, capsys):
    _, data, _ = source_run
    assert _train(data["train_json"], data, tmp_path / "run", "--init", "resnet51") == 1
    err = capsys.readouterr().err
    assert "resnet51: no such file" in err and "maskrcnn_resnet50_fpn_coco" in err and "resnet50" in err
