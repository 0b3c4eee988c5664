"""``--resume``'s config (``engine/training.py``): the run's own ``config.yaml`` is the base, ``--set`` goes
over it (each change said), a ``--config`` given is named in a warning and not applied; the lr after a
resume is the config's (``engine/schedule.py``, ``engine/trainer.py``), not the checkpoint's."""

import torch

from maskrcnn.config import load_config, save_config
from maskrcnn.engine.schedule import WarmupLR
from maskrcnn.engine.training import _resumed_config


def test_resume_applies_only_set_keys_over_the_runs_config_and_names_a_configs_others(tmp_path):
    run = load_config("demo", {"solver.iters": 900, "solver.lr": 0.005})
    save_config(run, tmp_path / "config.yaml")
    said = []
    asked = load_config("demo", {"solver.iters": 1200, "solver.warmup_iters": 7})  # --config demo --set ...
    cfg, _ = _resumed_config(asked, tmp_path, said.append, overrides={"solver.iters": "1200"},
                             config_named="demo")
    saved = tmp_path / "config.yaml"
    assert said == [f"warning: --resume goes on with the run's settings ({saved}); --config demo differs in "
                    f"solver.lr={asked.solver.lr:g} (the run's: 0.005), solver.warmup_iters=7 "
                    f"(the run's: {run.solver.warmup_iters}): not applied (on --resume only --set changes a "
                    "setting)",
                    "resume: solver.iters 900 -> 1200 (from --set)"]  # fmt: skip
    assert (cfg.solver.iters, cfg.solver.lr) == (1200, 0.005)
    assert cfg.solver.warmup_iters == run.solver.warmup_iters
    # no --config, nothing set: the run's config as it was, nothing said
    said.clear()
    cfg, _ = _resumed_config(load_config("r50_fpn"), tmp_path, said.append, overrides={})
    assert said == [] and cfg.to_dict() == run.to_dict()


def test_a_scheduler_loaded_from_a_checkpoint_follows_its_own_base_lr():
    def sched(lr):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.9)
        return opt, WarmupLR(opt, warmup_iters=0, warmup_factor=1.0, steps=(5,), gamma=0.1)

    opt, old = sched(0.01)
    for _ in range(6):
        opt.step(), old.step()
    state = old.state_dict()
    assert state["base_lrs"] == [0.01] and opt.param_groups[0]["lr"] == 0.01 * 0.1
    opt2, new = sched(0.02)
    opt2.load_state_dict(opt.state_dict())  # as the trainer does: the optimizer's state first
    new.load_state_dict(state)
    assert opt2.param_groups[0]["lr"] == 0.02 * 0.1 and opt2.param_groups[0]["initial_lr"] == 0.02
    assert new.last_epoch == 6 and new.base_lrs == [0.02]
    opt3, same = sched(0.01)  # unchanged settings: the checkpoint's lr, bit for bit
    opt3.load_state_dict(opt.state_dict())
    same.load_state_dict(state)
    assert opt3.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


def test_settings_the_starting_weights_chose_stay_the_runs_on_resume(tmp_path):
    """A run started from detectron2 weights resizes as detectron2 does (input.resize_method pil, set by
    the weights, in init_report.json): a resume by a library caller (the whole config taken as asked)
    put the preset's torchvision back, and one with --config warned of it."""
    import json

    from maskrcnn.engine.training import INIT_REPORT

    run = load_config("demo", {"input.resize_method": "pil"})
    save_config(run, tmp_path / "config.yaml")
    (tmp_path / INIT_REPORT).write_text(json.dumps({"config_changes": {"input.resize_method": "pil"}}))
    for kwargs in ({"overrides": None}, {"overrides": {}, "config_named": "demo"}):
        said = []
        cfg, _ = _resumed_config(load_config("demo"), tmp_path, said.append, **kwargs)
        assert cfg.input.resize_method == "pil", kwargs
        assert not any("resize_method" in s for s in said), (kwargs, said)


def test_a_set_model_key_the_starting_weights_chose_is_named_as_not_applied(tmp_path):
    """A run fine-tuned from weights whose config set the backbone and the box head (init_report.json):
    ``--resume --set model.backbone=... model.roi_heads.box_head_dim=...`` went on with the run's model
    without a word, while ``model.freeze_at`` in the same command was named as not applied."""
    import json

    from maskrcnn.engine.training import INIT_REPORT

    run = load_config("finetune", {"model.backbone": "resnet18", "model.roi_heads.box_head_dim": 256})
    save_config(run, tmp_path / "config.yaml")
    followed = {"model.backbone": "resnet18", "model.roi_heads.box_head_dim": 256}
    (tmp_path / INIT_REPORT).write_text(json.dumps({"config_changes": followed}))
    asked = {"model.backbone": "resnet50", "model.roi_heads.box_head_dim": 128, "model.freeze_at": 4}
    said = []
    cfg, _ = _resumed_config(load_config("finetune", asked), tmp_path, said.append,
                             overrides={k: str(v) for k, v in asked.items()})
    warning = [s for s in said if "not applied" in s]
    assert len(warning) == 1, said
    for key, value in asked.items():
        assert f"{key}={value!r}" in warning[0], (key, warning)
    assert (cfg.model.backbone, cfg.model.roi_heads.box_head_dim, cfg.model.freeze_at) == ("resnet18", 256, 2)
    # not named by --set: the keys the weights chose are the run's, not a change asked for
    said.clear()
    _resumed_config(load_config("finetune"), tmp_path, said.append, overrides={})
    assert said == []


def test_a_config_file_on_resume_is_named_only_for_the_keys_it_wrote(tmp_path):
    """``--resume --config other.yaml`` (holding ``solver: {lr: 0.3}`` alone) warned of ~20 keys of the
    r50_fpn base the file never wrote; only the file's own keys are named now."""
    run = load_config("demo")
    save_config(run, tmp_path / "config.yaml")
    other = tmp_path / "other.yaml"
    other.write_text("solver:\n  lr: 0.3\n")
    said = []
    cfg, _ = _resumed_config(load_config(str(other)), tmp_path, said.append, overrides={},
                             config_named=str(other))
    assert said == [f"warning: --resume goes on with the run's settings ({tmp_path / 'config.yaml'}); "
                    f"--config {other} differs in solver.lr=0.3 (the run's: {run.solver.lr}): not applied "
                    "(on --resume only --set changes a setting)"]
    assert cfg.to_dict() == run.to_dict()
