"""``maskrcnn.train(..., set=...)``'s error and note lines name what the caller passed (``set={...}``,
``init=``), not the command line's ``--set model.x=...`` / ``--init`` it never typed; the command keeps
its options. One table decides the words (``engine/caller_words.py``)."""


import pytest
from tiny_model import one_cat_dataset  # tests/ is on the path

import maskrcnn
from maskrcnn.config import load_config, save_config
from maskrcnn.engine.init_weights import InitError
from maskrcnn.engine.training import _resumed_config


@pytest.fixture(scope="module")
def weights_and_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("words")
    return one_cat_dataset(root, class_names=("__background__", "cat", "dog"))


def test_a_shape_key_set_against_init_weights_names_the_keywords(weights_and_data, tmp_path):
    root = weights_and_data
    with pytest.raises(InitError) as caught:
        maskrcnn.train(train_json=str(root / "train.json"), output=str(tmp_path / "run"),
                       init=str(root / "tiny.pth"), set={"model.fpn_dim": 64})
    said = str(caught.value)
    assert said.startswith(f"set={{'model.fpn_dim': 64}} but the init= weights {root / 'tiny.pth'} have "
                           "model.fpn_dim 32"), said
    assert said.endswith("drop that set= entry, or use other weights"), said
    assert "--set" not in said and "--init" not in said, said


def test_a_resume_through_the_api_says_set_not_the_option(tmp_path):
    save_config(load_config("demo", {"solver.iters": 900}), tmp_path / "config.yaml")
    said = []
    _resumed_config(load_config("demo", {"solver.iters": 1200}), tmp_path, said.append,
                    overrides={"solver.iters": "1200"}, caller="maskrcnn.train()")
    assert said == ["resume: solver.iters 900 -> 1200 (from set=)"], said
    said.clear()  # the command: its option, as before
    _resumed_config(load_config("demo", {"solver.iters": 1200}), tmp_path, said.append,
                    overrides={"solver.iters": "1200"}, caller="maskrcnn train")
    assert said == ["resume: solver.iters 900 -> 1200 (from --set)"], said


def test_a_set_item_without_equals_names_the_keyword(weights_and_data, tmp_path):
    root = weights_and_data
    with pytest.raises(ValueError) as caught:
        maskrcnn.train(train_json=str(root / "train.json"), output=str(tmp_path / "run"),
                       set=["solver.iters"])
    assert str(caught.value) == "set= expects key=value, got 'solver.iters'", caught.value


def test_the_default_recipe_note_names_the_keywords(weights_and_data):
    # the note is held until build_training's checks pass (tests/test_preset_note_held.py): its words here
    from maskrcnn.commands.train import default_config

    root, said = weights_and_data, []
    assert default_config(str(root / "tiny.pth"), resume=False, say=said.append,
                          caller="maskrcnn.train()") == "finetune"
    out = "\n".join(said)
    assert f"config= not given: init={str(root / 'tiny.pth')!r} is a detector" in out, out
    assert "set= changes any of it); config='r50_fpn' for the from-scratch recipe" in out, out
    assert "--config" not in out and "--init" not in out and "--set" not in out, out


def test_an_earlier_run_in_output_is_refused_in_keywords(weights_and_data, tmp_path):
    root = weights_and_data
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text("{}\n")
    with pytest.raises(ValueError) as caught:
        maskrcnn.train(train_json=str(root / "train.json"), output=str(tmp_path / "run"),
                       set={"solver.iters": 1})
    said = str(caught.value)
    assert "pass resume=True to continue it, overwrite=True to replace it, or choose another output=" in said
    assert "--" not in said, said


def test_resume_lines_and_the_trainers_hints_name_the_keywords(tmp_path):
    from maskrcnn.engine.trainer import Trainer
    from maskrcnn.engine.training import check_resumed_classes

    with pytest.raises(ValueError) as caught:
        check_resumed_classes(("__background__", "cat"), ("__background__", "dog"), output=tmp_path,
                              train_json="t.json", caller="maskrcnn.train()")
    said = str(caught.value)
    assert said.startswith(f"resume=True: {tmp_path} was trained on the classes cat"), said
    assert "init=" in str(caught.value) and "--" not in str(caught.value), caught.value
    trainer = Trainer.__new__(Trainer)  # the hint alone: no model, no data
    trainer._stop_signal, trainer.caller = None, "maskrcnn.train()"
    said = str(trainer._worker_death_error(RuntimeError("DataLoader worker (pid 7) is killed by signal")))
    assert "fewer workers (set={'data.num_workers': 1}) or none" in said, said
    trainer.caller = "maskrcnn train"  # the command: its option, as before
    said = str(trainer._worker_death_error(RuntimeError("DataLoader worker (pid 7) is killed by signal")))
    assert "fewer workers (--set data.num_workers=1) or none" in said, said
