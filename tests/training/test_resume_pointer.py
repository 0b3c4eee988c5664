"""A run's last_checkpoint is read as the short pointer the run writes: its first line, a few KB at most,
naming a file of the run's own folder; anything else is refused naming the pointer, quoting little."""

import os

import pytest

from maskrcnn.checkpoint import CheckpointError
from maskrcnn.engine.trainer import LAST_CHECKPOINT, checkpoint_candidates


def _run(tmp_path, content: bytes):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model_0000010.pth").write_bytes(b"x")
    (run / LAST_CHECKPOINT).write_bytes(content)
    return run


def test_the_pointer_the_run_writes_comes_first(tmp_path):
    run = _run(tmp_path, b"model_0000010.pth\n")
    (run / "model_0000020.pth").write_bytes(b"x")
    assert [p.name for p in checkpoint_candidates(run)] == ["model_0000010.pth", "model_0000020.pth"]


@pytest.mark.parametrize("content, said", [
    (b"/etc/passwd\n", "names b'/etc/passwd', not a file of the run's folder"),
    (b"../evil.pth\n", "names b'../evil.pth', not a file of the run's folder"),
    (b"model\xff\xfe.pth", "not UTF-8 text (invalid start byte at byte 5"),
    (b"a" * 200_000, "more than 4096 bytes without a line break"),
])
def test_a_pointer_out_of_the_run_or_not_a_name_is_refused_briefly(tmp_path, content, said):
    run = _run(tmp_path, content)
    with pytest.raises(CheckpointError) as e:
        checkpoint_candidates(run)
    message = str(e.value)
    assert message.startswith(str(run / LAST_CHECKPOINT)) and said in message
    assert len(message) < 600 and "\n" not in message


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
def test_a_linked_pointer_is_refused_without_reading_its_target(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret line\nmore\n")
    run = _run(tmp_path, b"")
    (run / LAST_CHECKPOINT).unlink()
    (run / LAST_CHECKPOINT).symlink_to(secret)
    with pytest.raises(CheckpointError, match="is a link, not the file the run writes") as e:
        checkpoint_candidates(run)
    assert "secret" not in str(e.value).replace(str(tmp_path), "")
