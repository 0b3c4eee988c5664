"""``maskrcnn.train(...)``: the ``train`` command from Python through the command's own parser and code
path; returns the final checkpoint, raises on failure, leaves the signal handlers as found
(``maskrcnn/fine_tune.py``). Also the start-of-training line naming the frozen parts
(``engine/frozen_parts.py``), read from the model's ``requires_grad`` flags."""

import signal
from pathlib import Path

import numpy as np
import pytest
import torch

import maskrcnn
from maskrcnn.checkpoint import save_checkpoint
from maskrcnn.cli import build_parser
from maskrcnn.config import load_config, load_config_keys, parse_set_args, plain_config
from maskrcnn.data.shapes import generate_shapes_dataset
from maskrcnn.engine.frozen_parts import frozen_line
from maskrcnn.fine_tune import train_argv
from maskrcnn.modeling import layers
from maskrcnn.modeling.mask_rcnn import build_model
from tests.tiny_model import TINY

ONE_ITERATION = {"model.backbone": "resnet18", "model.fpn_dim": 16, "model.norm": "frozen_bn",
                 "model.freeze_at": 2, "model.roi_heads.box_head_dim": 32, "model.roi_heads.mask_head_dim": 8,
                 "model.rpn.post_nms_topk_train": 32, "model.roi_heads.batch_size_per_image": 16,
                 "solver.iters": 1, "solver.batch_size": 1, "solver.warmup_iters": 1, "solver.steps": [10],
                 "solver.checkpoint_period": 0, "input.min_size": [32], "input.max_size": 48,
                 "data.num_workers": 0}


def test_train_from_python_returns_the_final_checkpoint_and_restores_the_handlers(tmp_path, capsys):
    data = generate_shapes_dataset(tmp_path / "data", num_train=1, num_val=0, image_size=(32, 32), seed=0,
                                   classes=("circle", "square"))
    # frozen parts need weights to start from (from random ones they would stay random: refused)
    cfg = load_config("demo", {**ONE_ITERATION, "model.num_classes": 3})
    init = tmp_path / "init.pth"
    save_checkpoint(init, model_state=build_model(cfg).state_dict(), config=cfg,
                    class_names=["__background__", "circle", "square"])
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    final = maskrcnn.train(train_json=data["train_json"], train_images=data["train_images"],
                           output=tmp_path / "run", config="demo", set=ONE_ITERATION, device="cpu",
                           init=init)
    assert final == tmp_path / "run" / "model_final.pth" and final.is_file()
    assert torch.load(final, weights_only=True)["iteration"] == 1
    assert {s: signal.getsignal(s) for s in handlers} == handlers
    out = capsys.readouterr().out
    # the frozen parts, from the model: stem and res2 (freeze_at 2), the batch norms
    line = next(x for x in out.splitlines() if x.startswith("frozen:"))
    assert line.startswith("frozen: backbone stem, res2 (model.freeze_at=2); batch norm frozen (")


def test_train_from_python_raises_the_commands_error(tmp_path):
    with pytest.raises(OSError, match="missing.json"):
        maskrcnn.train(train_json=tmp_path / "missing.json", train_images=tmp_path, output=tmp_path / "run",
                       config="demo")
    with pytest.raises(KeyError, match="unknown config key 'model.no_such_key'"):
        (tmp_path / "t.json").write_text('{"images": [], "annotations": [], "categories": []}')
        maskrcnn.train(train_json=tmp_path / "t.json", train_images=tmp_path, output=tmp_path / "run2",
                       config="demo", set={"model.no_such_key": 1})
    with pytest.raises(TypeError):
        maskrcnn.train(train_json="t.json", output="run", iters=3)  # not an option of the command


def test_keywords_become_the_commands_options():
    argv = train_argv(train_json="t.json", output="run", init="w.pth", set={
        "solver.steps": [10, 20], "solver.lr": 0.001, "model.backbone": "resnet18",
        "data.filter_empty": True})
    assert argv == ["train", "--output=run", "--train-json=t.json", "--init=w.pth",
                    "--set=solver.steps=[10, 20]", "--set=solver.lr=0.001", "--set=model.backbone=resnet18",
                    "--set=data.filter_empty=true"]


def test_a_path_in_set_is_written_as_its_text():
    argv = train_argv(train_json="t.json", output="run", set={"model.init_weights": Path("w") / "x.pth"})
    assert argv[-1] == f"--set=model.init_weights={Path('w') / 'x.pth'}"


def test_values_that_start_with_a_dash_are_values(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OSError, match="-t.json"):  # read as the file, not as an option
        maskrcnn.train(train_json="-t.json", output="-run1", config="demo")
    # each was "argument --output: expected one argument" (argparse read the value as an option)
    argv = train_argv(train_json="-train.json", output="-run1", config="-c.yaml", set={"-k": 1, "a": "-2"})
    args = build_parser(argv, raise_errors=True).parse_args(argv)
    assert (args.output, args.train_json, args.config) == ("-run1", "-train.json", "-c.yaml")
    assert parse_set_args(args.set) == {"-k": "1", "a": "-2"}


def test_numpy_and_torch_values_in_set_are_their_numbers():
    argv = train_argv(output="run", set={"solver.iters": np.int64(5), "input.min_size": np.array([100, 120]),
                                         "solver.lr": torch.tensor(0.5), "solver.steps": torch.tensor([7]),
                                         "data.filter_empty": np.bool_(False),
                                         "solver": {"gamma": np.float32(0.25)}})
    args = build_parser(argv, raise_errors=True).parse_args(argv)
    cfg = load_config("demo", parse_set_args(args.set))  # "Object of type int64 is not JSON serializable"
    assert (cfg.solver.iters, cfg.input.min_size, cfg.solver.lr) == (5, (100, 120), 0.5)
    assert cfg.solver.steps == (7,)
    assert (cfg.data.filter_empty, cfg.solver.gamma) == (False, 0.25)
    # a path anywhere is its string; a float32 its shortest repr (was 0.10000000149011612)
    argv = train_argv(output="run", set={"model": {"init_weights": Path("w/x.pth")},
                                         "solver.lr": np.float32(0.1)})
    cfg = load_config("demo", parse_set_args(build_parser(argv, raise_errors=True).parse_args(argv).set))
    assert (cfg.model.init_weights, cfg.solver.lr) == (str(Path("w/x.pth")), 0.1)
    with pytest.raises(TypeError, match=r"^set\['solver.steps'\]: a set is not a config value"):
        train_argv(output="run", set={"solver.steps": {10, 20}})
    with pytest.raises(TypeError, match=r"^set\['solver.gamma'\]: a bytes is not"):
        train_argv(output="run", set={"solver": {"gamma": b"1"}})
    with pytest.raises(TypeError, match=r"^set\['solver.iters'\]: an object is not a config value"):
        train_argv(output="run", set={"solver.iters": object()})  # was "a object"


def test_set_may_be_a_list_of_key_value_strings():
    assert train_argv(output="run", set=["solver.iters=3", "solver.lr=-1"])[-2:] == [
        "--set=solver.iters=3", "--set=solver.lr=-1"]
    for bad in ("solver.iters=3", [3], {1: 2}, 3):  # a list was an AttributeError (.items)
        with pytest.raises(TypeError, match="^set: "):
            maskrcnn.train(train_json="t.json", output="run", set=bad)


def test_a_config_object_is_read_by_the_run_from_a_temporary_file(monkeypatch):
    from maskrcnn.commands import train as command

    cfg = load_config("demo")
    cfg.solver.iters, cfg.model.init_class_map = 7, {"pedestrian": "person"}
    seen = {}

    def run_training(args, config_said=None, **_):  # the file the command reads, while it runs
        seen["path"], seen["said"] = Path(args.config), config_said
        seen["cfg"], seen["written"] = load_config_keys(args.config)
        return {}

    monkeypatch.setattr(command, "run_training", run_training)
    cfg.model.pixel_std = std = np.array([57.0, 57.0, 58.0], dtype=np.float32)  # yaml.safe_dump refused it
    cfg.solver.gamma = torch.tensor(0.5)
    maskrcnn.train(train_json="t.json", output="run", config=cfg)  # was OSError "File name too long"
    assert seen["cfg"] == plain_config(cfg) and not seen["path"].exists()  # the whole config; removed after
    assert seen["cfg"].model.pixel_std == (57.0, 57.0, 58.0) and seen["cfg"].solver.gamma == 0.5
    assert seen["said"] == "the Config given to train()"  # how the run's messages name it
    # the caller's object as they left it (its numpy and torch values were replaced in place)
    assert cfg.model.pixel_std is std and isinstance(cfg.solver.gamma, torch.Tensor)
    assert {"solver.iters", "model.backbone", "model.init_class_map"} <= seen["written"]
    assert "model.num_classes" not in seen["written"]  # the preset's default: not a choice to note
    cfg.model.num_classes = "3"  # named, not the temporary file
    with pytest.raises(ValueError, match="^invalid configuration: model.num_classes must be a whole number"):
        maskrcnn.train(train_json="t.json", output="run", config=cfg)
    with pytest.raises(TypeError, match="^config: a preset name, a YAML file's path or a maskrcnn.config"):
        maskrcnn.train(train_json="t.json", output="run", config={"solver": {"iters": 3}})


def test_a_config_objects_messages_name_it_not_its_temporary_file(tmp_path):
    """The run read the Config from a temporary YAML file, and its messages named that file ("but --config
    /tmp/maskrcnn-config-.../config.yaml trains keypoints"), gone when the user reads them."""
    data = generate_shapes_dataset(tmp_path / "data", num_train=1, num_val=0, image_size=(32, 32), seed=0,
                                   classes=("circle",))
    cfg = load_config("demo")
    cfg.model.roi_heads.keypoint_on = True  # the data has no keypoints: refused before any model is built
    with pytest.raises(ValueError) as info:
        maskrcnn.train(train_json=data["train_json"], train_images=data["train_images"],
                       output=tmp_path / "r", config=cfg, device="cpu")
    message = str(info.value)
    assert "but the Config given to train() trains keypoints" in message
    assert "maskrcnn-config-" not in message and "config.yaml" not in message


def test_the_frozen_line_follows_requires_grad_not_the_config():
    model = build_model(load_config("r50_fpn", {**TINY, "model.freeze_at": 3, "model.norm": "frozen_bn"}))
    for p in model.rpn.parameters():  # frozen by hand: the config does not say so, the line must
        p.requires_grad_(False)
    line = frozen_line(model, freeze_at=3)
    assert line.startswith("frozen: backbone stem, res2, res3 (model.freeze_at=3), rpn (all); "
                           "batch norm frozen (")
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert line.endswith(f" of {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters")
    assert f"training {trained / 1e6:.1f}M" in line
    model = build_model(load_config("r50_fpn", {**TINY, "model.freeze_at": 0, "model.norm": "bn"}))
    assert frozen_line(model, freeze_at=0).startswith("frozen: no parameters; training ")


def test_a_whole_frozen_backbone_keeps_the_key_that_froze_it():
    model = build_model(load_config("r50_fpn", {**TINY, "model.freeze_at": 5, "model.norm": "frozen_bn"}))
    assert frozen_line(model, freeze_at=5).startswith("frozen: backbone (all, model.freeze_at=5); "
                                                      "batch norm frozen (")


def test_frozen_batch_norm_is_counted_by_type_not_by_class_name():
    class FrozenBatchNorm2d(torch.nn.Module):  # same name, not the library's layer
        pass

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), FrozenBatchNorm2d())
    assert frozen_line(model) == "frozen: no parameters; training 6 of 6 parameters"
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), layers.FrozenBatchNorm2d(2))
    assert frozen_line(model) == ("frozen: no parameters; batch norm frozen (1 FrozenBatchNorm2d layers); "
                                  "training 6 of 6 parameters")


@pytest.mark.parametrize("argv, option", [(["train", "--output=run", "--device"], "--device"),
                                          (["train", "--config", "demo", "--output"], "--output")])
def test_build_parser_raise_errors_raises_a_bad_option_value_without_exiting_or_printing(capsys, argv,
                                                                                       option):
    """build_parser(raise_errors=True), which maskrcnn.train parses with: argparse's error a ValueError, not
    an exit. maskrcnn.train's keywords cannot reach one (each value joined to its option)."""
    message = f"^maskrcnn train: error: argument {option}: expected one argument$"
    with pytest.raises(ValueError, match=message):
        build_parser(argv, raise_errors=True).parse_args(argv)
    assert capsys.readouterr().err == ""


def test_a_run_a_signal_stopped_raises_training_stopped(monkeypatch, tmp_path):
    from maskrcnn.commands import train as command

    monkeypatch.setattr(command, "run_training", lambda args, **_: {"interrupted": True, "iteration": 7,
                                                                    "signal": signal.SIGTERM})
    with pytest.raises(maskrcnn.TrainingStopped, match="stopped by a signal at iteration 7"):
        maskrcnn.train(train_json="t.json", output=tmp_path / "run")
    assert command.exit_status({"interrupted": True, "signal": signal.SIGTERM}) == 143


def test_warnings_during_train_from_python_read_as_the_commands_lines(monkeypatch, tmp_path):
    """The dataset's skipped records (warnings.warn) printed as "/.../coco.py:119: UserWarning: ..." and
    a line of our source, among the command's plain "note: ..." lines; now one line as the CLI's."""
    import warnings

    import maskrcnn.data.coco as coco
    from maskrcnn.commands import train as command

    shown = []

    def run_training(args, **_):
        shown.append(warnings.formatwarning("t.json: skipped 1 bad_bbox", UserWarning, coco.__file__, 119))
        return {"interrupted": False}

    monkeypatch.setattr(command, "run_training", run_training)
    before = warnings.formatwarning
    maskrcnn.train(train_json="t.json", output=tmp_path / "run")
    assert shown == ["maskrcnn train: warning: t.json: skipped 1 bad_bbox\n"]
    assert warnings.formatwarning is before  # the caller's format, restored


def _train_calls(text: str) -> list:
    """The keywords of each ``maskrcnn.train(...)`` call in the code examples (``::`` blocks) of ``text``."""
    import ast
    import textwrap

    calls = []
    for block in text.split("::\n")[1:]:
        lines = block.lstrip("\n").splitlines()
        indent = len(lines[0]) - len(lines[0].lstrip())
        code = []
        for line in lines:  # the block: the lines indented as its first, blank ones between
            if line.strip() and len(line) - len(line.lstrip()) < indent:
                break
            code.append(line)
        tree = ast.parse(textwrap.dedent("\n".join(code)))
        calls += [{k.arg: ast.literal_eval(k.value) for k in node.keywords} for node in ast.walk(tree)
                  if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "train"]
    return calls


def test_help_of_train_names_every_keyword_and_its_examples_use_the_recipe_init_calls_for():
    """``help(maskrcnn.train)`` said "Keywords: the module docstring", which help() does not show, and the
    module's example paired COCO detector weights with r50_fpn, the from-scratch recipe (lr 0.02, 90k
    iterations), where the command itself picks finetune for such an --init (and the README uses it)."""
    import inspect
    import pydoc

    from maskrcnn.commands.train import default_config

    shown = pydoc.render_doc(maskrcnn.train, renderer=pydoc.plaintext)
    assert "module docstring" not in " ".join(shown.split())
    for name in inspect.signature(maskrcnn.train).parameters:
        assert f"``{name}``" in shown, name
    calls = _train_calls(maskrcnn.train.__doc__) + _train_calls(maskrcnn.fine_tune.__doc__)
    assert len(calls) == 2
    for keywords in calls:
        argv = train_argv(**keywords)
        build_parser(argv, raise_errors=True).parse_args(argv)  # options the command takes
        assert keywords["config"] == default_config(keywords["init"], resume=False, say=lambda line: None)
