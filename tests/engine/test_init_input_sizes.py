"""``train --init`` from a checkpoint of ours keeps the input sizes it was trained at (its stored config),
unless set explicitly; an input.min_size set without input.min_size_test brings the test size along."""

import pytest

from maskrcnn.checkpoint import save_checkpoint
from maskrcnn.config import load_config, parse_set_args
from maskrcnn.engine.init_weights import follow_weights_keeping, summary_lines
from maskrcnn.engine.training import _explicit_keys
from maskrcnn.interop.weights import read_weights
from maskrcnn.modeling.mask_rcnn import build_model


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    """A demo-preset checkpoint (trained, as its config says, at 112-144 px, tested at 128)."""
    cfg = load_config("demo", {"model.num_classes": 3})
    path = tmp_path_factory.mktemp("ck") / "model_final.pth"
    save_checkpoint(path, model_state=build_model(cfg).state_dict(), config=cfg,
                    class_names=["__background__", "circle", "square"])
    return path, cfg


def _follow(path, overrides):
    cfg = load_config("finetune", overrides)  # what train --init FILE without --config starts from
    source = read_weights(str(path))
    explicit = _explicit_keys(source.implied, overrides, None)
    return follow_weights_keeping(cfg, source.implied, explicit)


def test_our_checkpoints_input_sizes_follow_it(small_checkpoint):
    path, stored = small_checkpoint
    cfg, changes, kept = _follow(path, {})
    for key in ("min_size", "max_size", "min_size_test", "max_size_test"):
        assert getattr(cfg.input, key) == getattr(stored.input, key), key
        assert f"input.{key}" in changes
    assert not kept
    report = {"source": {"spec": str(path)}, "loaded": [], "reinitialised": [], "unused": [],
              "copied_classes": {}, "fresh_classes": [], "notes": []}
    line = next(x for x in summary_lines(report, changes) if "the config follows the weights" in x)
    assert "input.min_size_test 800 -> 128" in line


def test_sizes_set_explicitly_win_over_the_checkpoints(small_checkpoint):
    path, _stored = small_checkpoint
    overrides = parse_set_args(["input.min_size=[96]", "input.max_size=160"])
    cfg, changes, kept = _follow(path, overrides)
    assert tuple(cfg.input.min_size) == (96,) and cfg.input.max_size == 160
    assert set(kept) == {"input.min_size", "input.max_size"} and kept["input.max_size"]["by"] == "--set"
    assert cfg.input.min_size_test == 128  # not set: the checkpoint's


# ------------------------------------------------------------- a training size set alone


def _sized(preset, sets, config_keys=None):
    from maskrcnn.engine.training import INPUT_SIZE_KEYS, follow_training_sizes

    overrides = parse_set_args(sets)
    cfg = load_config(preset, overrides)
    return follow_training_sizes(cfg, _explicit_keys(INPUT_SIZE_KEYS, overrides, None))


def test_an_unset_test_size_follows_the_training_size_set():
    cfg, lines = _sized("finetune", ["input.min_size=[112,128]", "input.max_size=256"])
    assert (cfg.input.min_size_test, cfg.input.max_size_test) == (128, 256)
    assert lines == ["note: input.min_size_test 800 -> 128, input.max_size_test 1333 -> 256: the test sizes "
                     "follow input.min_size (--set) and input.max_size (--set), so validation, eval and "
                     "predict see images at the training scale (set input.min_size_test / "
                     "input.max_size_test to choose others)"]
    # a test size set explicitly stays; nothing set: the preset's pair stays
    cfg, lines = _sized("finetune", ["input.min_size=[128]", "input.min_size_test=640"])
    assert (cfg.input.min_size_test, cfg.input.max_size_test, lines) == (640, 1333, [])
    cfg, lines = _sized("finetune", [])
    assert (cfg.input.min_size_test, lines) == (800, [])


def test_test_size_far_from_the_training_sizes_is_warned():
    from maskrcnn.engine.training import input_size_notes

    inp = load_config("finetune", {"input.min_size": [128], "input.max_size": 256,
                                   "input.min_size_test": 800}).input
    (line,) = [x for x in input_size_notes(inp) if x.startswith("warning:")]
    assert line.startswith("warning: input.min_size_test 800 is 6.2x the largest input.min_size 128:")
    inp = load_config("finetune", {"input.min_size_test": 256}).input
    assert "smaller than the smallest input.min_size 640" in input_size_notes(inp)[0]
    assert input_size_notes(load_config("finetune").input) == []
