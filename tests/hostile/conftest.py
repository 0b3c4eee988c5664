"""Shared by the hostile-input corpus (one module per border: images, annotations, results,
checkpoints, configuration, output locations).

Every case runs the command line in-process (``maskrcnn.cli.main``) where it can, and asserts three
things: the exit status, that the message names the file and the field (or record) at fault, and that
no traceback was printed. ``hostile_helpers.snapshot`` checks that earlier outputs survive.
Subprocesses are used only where a native crash or a hang must be shown absent (with a timeout).
"""

import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/: tiny_model

from tiny_model import TINY  # noqa: E402

from maskrcnn.cli import main  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread(single_thread):
    """Tiny forwards: extra intra-op threads only add synchronisation (tests/conftest.py)."""
    yield


@pytest.fixture
def cli(capsys):
    """``cli(args...)`` -> (exit status, stderr + stdout); fails the test on any printed traceback."""

    def run(*args):
        rc = main([str(a) for a in args])
        captured = capsys.readouterr()
        text = captured.err + captured.out
        assert "Traceback" not in text, text
        return rc, text

    return run


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A random-weight R18-FPN checkpoint whose forwards take milliseconds (3 classes)."""
    from maskrcnn.checkpoint import save_checkpoint
    from maskrcnn.config import PRESETS, apply_overrides
    from maskrcnn.modeling.mask_rcnn import build_model

    torch.manual_seed(0)
    cfg = apply_overrides(PRESETS["r18_fpn"](), TINY)
    model = build_model(cfg)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pth"
    names = ["__background__", "a", "b"]
    save_checkpoint(path, model_state=model.state_dict(), config=cfg, class_names=names)
    return path
