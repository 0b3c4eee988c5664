"""A zip-format torch file with entries that lead outside it ('../', an absolute path) is refused as such,
not as a truncated file."""

import zipfile

import pytest
import torch

from maskrcnn.checkpoint import CheckpointError, load_checkpoint


def test_a_zip_checkpoint_with_escaping_entries_is_named_as_such(tmp_path):
    path = tmp_path / "trav.pth"
    torch.save({"a": torch.zeros(2)}, path)
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("../../outside/TRAV", b"x")
        z.writestr("/tmp/TRAV_ABS", b"y")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    message = str(e.value)
    assert "trav.pth is a zip archive with entries leading outside it" in message
    assert "'../../outside/TRAV'" in message and "'/tmp/TRAV_ABS'" in message
    assert "truncated" not in message and "enforce fail" not in message
    assert not (tmp_path.parent / "outside").exists()
