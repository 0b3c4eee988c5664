"""``--resume`` of a run as earlier versions or a copy left it (``engine/training._resumed_config``): a run
folder without ``config.yaml`` built the preset's model (torch's kilobytes of ``load_state_dict`` errors);
a run whose stored config holds the fractional ``solver.steps`` earlier versions took was refused; the
warning "config.yaml is written back" was said before a refusal that left the file as it was; and a
``--set solver.iters`` raising a finished run's end was said after the ``model_final.pth`` it set aside.
The tiny run of ``test_resume_checkpoint_model`` (one iteration of 32-pixel images)."""

import io

import pytest
import torch
import yaml

import tests.training.test_resume_checkpoint_model as base
from maskrcnn.checkpoint import load_checkpoint
from maskrcnn.config import load_config
from maskrcnn.engine.training import build_training
from tests.training.test_resume_checkpoint_model import _build, _edit

# the same tiny finished run, trained once for this module, and a copy of it per test
finished, run = base.finished, base.run


def test_a_run_without_config_yaml_goes_on_with_its_checkpoints_config(run):
    out, data = run
    (out / "config.yaml").unlink()
    trainer, cfg, stream = _build(load_config("demo", {"solver.iters": 2}), data, out, resume=True,
                                  overrides={"solver.iters": "2"})
    assert (f"note: --resume: {out} has no config.yaml: the run goes on with the config stored in "
            "model_0000001.pth, which is written as config.yaml\n") in stream.getvalue(), stream.getvalue()
    assert (trainer.iteration, cfg.model.fpn_dim, cfg.solver.warmup_iters, cfg.solver.iters) == (1, 8, 0, 2)
    assert load_config(str(out / "config.yaml"), stored=True).model.fpn_dim == 8


def test_a_stored_config_with_fractional_steps_loads_and_resumes(run):
    out, data = run
    path = out / "model_0000001.pth"
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    ckpt["config"]["input"]["min_size"] = [31.5, 32]
    torch.save(ckpt, path)
    assert load_checkpoint(path, map_location="cpu")["config"]["input"]["min_size"] == [31.5, 32]
    _edit(out / "config.yaml", ("solver",), steps=[0.5])
    trainer, cfg, _ = _build(load_config("demo"), data, out, resume=True, overrides={})
    assert (trainer.iteration, cfg.solver.steps) == (1, (0.5,))
    # a fraction asked for now (a library caller's Config, set by attribute) is refused, as for any config
    # to train with
    asked = load_config("demo")
    asked.solver.steps = (0.25,)
    with pytest.raises(ValueError, match=r"solver.steps must be whole numbers, got \[0.25\]"):
        _build(asked, data, out, resume=True, overrides={"solver.steps": (0.25,)})


def test_written_back_is_said_only_once_the_resume_goes_on(run):
    out, data = run
    saved = out / "config.yaml"
    _edit(saved, ("model", "roi_heads"), box_head_dim=32)
    before = saved.read_text()
    cfg = load_config("demo", {"model.init_weights": "other.pth"})
    stream = io.StringIO()
    with pytest.raises(ValueError, match="--init other.pth: .* is a run started from random initialisation"):
        build_training(cfg, train_json=data[0], train_images=data[1], output=out, log_stream=stream,
                       resume=True, overrides={"model.init_weights": "other.pth"})
    assert saved.read_text() == before
    assert "written back" not in stream.getvalue(), stream.getvalue()
    # the resume that goes on says it, after "resumed from", and writes the file
    _, _, stream = _build(load_config("demo"), data, out, resume=True, overrides={})
    log = stream.getvalue()
    assert -1 < log.find("resumed from") < log.find("config.yaml is written back with it"), log
    assert yaml.safe_load(saved.read_text())["model"]["roi_heads"]["box_head_dim"] == 16


def test_the_set_line_comes_before_the_final_weights_it_sets_aside(run):
    out, data = run
    assert (out / "model_final.pth").is_file()
    _, _, stream = _build(load_config("demo", {"solver.iters": 2}), data, out, resume=True,
                          overrides={"solver.iters": "2"})
    log = stream.getvalue()
    lines = ["resumed from", "resume: solver.iters 1 -> 2 (from --set)", "removed model_final.pth"]
    at = [log.find(s) for s in lines]
    assert -1 not in at and at == sorted(at), log
    assert yaml.safe_load((out / "config.yaml").read_text())["solver"]["iters"] == 2


def test_the_checkpoint_resumed_from_is_read_once(run, monkeypatch):
    import maskrcnn.checkpoint as checkpoint
    import maskrcnn.engine.trainer as trainer_module

    out, data = run
    (out / "model_final.pth").unlink()  # its own read (set aside) is not the one counted
    reads = []

    def counting(path, *args, **kwargs):
        reads.append(path.name)
        return real(path, *args, **kwargs)

    real = checkpoint.load_checkpoint
    monkeypatch.setattr(checkpoint, "load_checkpoint", counting)
    monkeypatch.setattr(trainer_module, "load_checkpoint", counting)
    trainer, _, _ = _build(load_config("demo", {"solver.iters": 2}), data, out, resume=True,
                           overrides={"solver.iters": "2"})
    assert trainer.iteration == 1 and reads == ["model_0000001.pth"], reads


def test_an_unreadable_last_checkpoint_is_still_said_to_be_skipped(run):
    out, data = run
    (out / "model_0000002.pth").write_bytes(b"not a checkpoint")
    (out / "last_checkpoint").write_text("model_0000002.pth")
    trainer, _, stream = _build(load_config("demo", {"solver.iters": 3}), data, out, resume=True,
                                overrides={"solver.iters": "3"})
    log = stream.getvalue()
    assert trainer.iteration == 1 and "warning: skipped " in log and "model_0000002.pth" in log, log
    at = [log.find(s) for s in ("warning: skipped ", "resumed from", "resume: solver.iters")]
    assert -1 not in at and at == sorted(at), log
