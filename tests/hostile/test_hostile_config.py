"""Hostile configuration: YAML that does not parse, tags that would run code, alias bombs, deep
nesting, and values no run can use (sizes 0, negative iterations, NaN rates and thresholds), from a
file, ``--set`` or an option. Each is refused when read, naming the file and line or the key, before
anything is written."""

import pytest
from hostile_helpers import coco_dataset, save_image

from maskrcnn.config import load_config

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi")
)  # 9**9 nodes once expanded

BAD_YAML = {  # file content -> words of the message (after the file's name)
    "syntax": ("solver:\n  lr: [1, 2\n", "invalid YAML at line 3"),
    "tab_indent": ("solver:\n\tlr: 0.1\n", "invalid YAML at line 2"),
    "python_tag": ("solver: !!python/object/apply:os.system ['touch MARKER']\n", "python/object/apply"),
    "unknown_tag": ("seed: !secret 3\n", "could not determine a constructor for the tag '!secret'"),
    "alias_bomb": (BOMB, "aliases expand to"),
    "cyclic_alias": ("model: &a {rpn: *a}\n", "unknown config key 'model.rpn.rpn'"),
    "undefined_alias": ("seed: *nowhere\n", "found undefined alias 'nowhere'"),
    "deep_nesting": ("seed: " + "[" * 5000 + "]" * 5000 + "\n", "column 70: nested more than 64"),
    "not_a_mapping": ("- 1\n- 2\n", "expected a mapping at the top level"),
    "binary": ("\x00\x01\x02 garbage", "invalid YAML"),
    "nan_lr": ("solver:\n  lr: .nan\n", "solver.lr must be a finite number >= 0, got nan"),
    "zero_size": ("input:\n  min_size_test: 0\n", "input.min_size_test must be in (0, 100000], got 0"),
    "string_for_number": ("solver:\n  iters: many\n", "'solver.iters' expects a number"),
    "unknown_key": ("solver:\n  lr_typo: 0.1\n", "unknown config key 'solver.lr_typo'"),
}


@pytest.mark.parametrize("case", sorted(BAD_YAML))
def test_bad_yaml_file_is_refused_by_file_and_line_or_key(cli, tmp_path, case):
    content, words = BAD_YAML[case]
    config = tmp_path / "cfg.yaml"
    config.write_text(content.replace("MARKER", str(tmp_path / "marker")))
    path, images, _ = coco_dataset(tmp_path)
    rc, text = cli("train", "--config", config, "--train-json", path, "--train-images", images,
                   "--output", tmp_path / "run")  # fmt: skip
    assert rc == 1 and str(config) in text and words in text, text
    assert not (tmp_path / "run").exists() and not (tmp_path / "marker").exists()


@pytest.mark.parametrize(
    "setting, words",
    [("solver.iters=-5", "solver.iters must be >= 1 (0 would train nothing and write the initial weights as "
                         "model_final.pth), got -5"),
     ("solver.iters=1.5", "config key 'solver.iters' expects a whole number, got 1.5"),  # trained 1 iter
     ("seed=0.5", "config key 'seed' expects a whole number, got 0.5"),
     ("device=gpu", "device must be auto, cpu, cuda or cuda:N, got 'gpu'"),
     ("solver.lr=nan", "solver.lr must be a finite number >= 0, got nan"),
     ("solver.batch_size=0", "solver.batch_size must be > 0"),
     ("model.roi_heads.score_thresh=1.5", "model.roi_heads.score_thresh must be in [0, 1]"),
     ("input.min_size=[800, 0]", "input.min_size must be in (0, 100000]"),
     ("solver.steps=[1,", "config key 'solver.steps': invalid YAML"),
     ("model.pixel_std=[0.2, 0.2, 0]", "model.pixel_std must be > 0"),
     # 0.5 would stop a run whose loss merely stays where it is
     ("solver.divergence_factor=0.5",
      "solver.divergence_factor must be 0 (off) or a finite number > 1, got 0.5"),
     ("solver.divergence_patience=0", "solver.divergence_patience must be > 0, got 0")],
)  # fmt: skip
def test_unusable_setting_is_refused_by_key_before_training(cli, tmp_path, setting, words):
    path, images, _ = coco_dataset(tmp_path)
    rc, text = cli("train", "--config", "demo", "--set", setting, "--train-json", path,
                   "--train-images", images, "--output", tmp_path / "run")  # fmt: skip
    assert rc == 1 and words in text, text
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "options, words",
    [(["--set", "input.min_size_test=0"], "input.min_size_test must be in (0, 100000]"),
     (["--score-thresh", "nan"], "--score-thresh must be a finite number >= 0, got nan"),
     (["--set", "model.roi_heads.nms_thresh=inf"], "model.roi_heads.nms_thresh must be in [0, 1]")],
)  # fmt: skip
def test_unusable_predict_option_is_refused_by_name(cli, tiny_checkpoint, tmp_path, options, words):
    image = save_image(tmp_path / "im.png", 40, 50)
    rc, text = cli("predict", "--weights", tiny_checkpoint, image, "--output", tmp_path / "out", *options)
    assert rc == 1 and words in text, text
    assert not (tmp_path / "out").exists()


def test_good_yaml_with_a_few_aliases_still_loads(tmp_path):
    config = tmp_path / "cfg.yaml"
    config.write_text("_base_: demo\nsolver:\n  steps: &s [100, 200]\n  lr: 0.01\ninput:\n  min_size: *s\n")
    cfg = load_config(str(config))
    assert cfg.solver.steps == (100, 200) and cfg.input.min_size == (100, 200) and cfg.solver.lr == 0.01
