"""The pt2 archive says how to make its input: the feature program takes a normalised, padded batch, and
without the pixel scale, mean and std a user of the .pt2 alone had to guess them (the .onnx stores its
config; the .pt2 stored nothing). ``maskrcnn.json`` (an extra file of the archive) holds them; a batch
built from it alone must be the batch the model builds itself."""

import json

import pytest
import torch
from tiny_model import TINY, build_tiny, save_tiny_checkpoint  # tests/ is on the path

from maskrcnn.cli import main
from maskrcnn.export.pt2 import METADATA_FILE, export_features

# not the defaults: a metadata writer that ignored the config would be seen
MEAN, STD = (0.3, 0.5, 0.7), (0.2, 0.25, 0.4)
NAMES = ["__background__", "cat", "dog"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    model, cfg = build_tiny({**TINY, "model.pixel_mean": MEAN, "model.pixel_std": STD,
                             "data.class_names": NAMES})
    return model.eval(), cfg


def _read(path) -> tuple:
    """As the README shows it: the program, and the metadata read back with it."""
    extra = {METADATA_FILE: ""}
    program = torch.export.load(str(path), extra_files=extra)
    return program, json.loads(extra[METADATA_FILE])


def test_the_metadata_round_trips_and_builds_the_models_own_batch(tiny, tmp_path):
    model, cfg = tiny
    path = tmp_path / "f.pt2"
    export_features(model, path, size_hw=(64, 96), cfg=cfg, class_names=NAMES)
    program, meta = _read(path)
    inp = meta["input"]
    assert inp["pixel_range"] == [0.0, 1.0] and inp["channels"] == "RGB" and inp["layout"] == "NCHW"
    assert inp["pixel_mean"] == pytest.approx(list(cfg.model.pixel_mean))
    assert inp["pixel_std"] == pytest.approx(list(cfg.model.pixel_std))
    assert inp["pixel_mean"] == pytest.approx(MEAN) and inp["size_hw"] == [64, 96]
    assert inp["resize"] == {"min_size_test": 64, "max_size_test": 96}
    assert meta["outputs"] == [{"name": f"p{k}", "stride": 2**k} for k in range(2, 7)]
    assert meta["class_names"] == NAMES
    assert meta["config"]["model"]["pixel_std"] == pytest.approx(list(STD))

    # the recipe, from the metadata alone, on an image smaller than the fixed size
    image = torch.rand(3, 50, 70, generator=torch.Generator().manual_seed(0))
    mean = torch.tensor(inp["pixel_mean"]).view(3, 1, 1)
    std = torch.tensor(inp["pixel_std"]).view(3, 1, 1)
    batch = torch.zeros(1, 3, *inp["size_hw"])
    batch[0, :, :50, :70] = (image - mean) / std
    own, _ = model.preprocess([image])
    assert torch.allclose(batch[:, :, : own.shape[2], : own.shape[3]], own, atol=1e-6)
    with torch.no_grad():
        maps = program.module()(batch)
        expected = model.features(batch)
    for out, m in zip(meta["outputs"], maps):
        assert m.shape[-2:] == (-(-64 // out["stride"]), -(-96 // out["stride"]))  # p6: 96 / 64 rounds up
        assert torch.allclose(m, expected[out["name"]], atol=1e-4)


def test_the_command_prints_the_normalisation(tiny, tmp_path, capsys):
    model, cfg = tiny
    ckpt = save_tiny_checkpoint(tmp_path / "t.pth", model, cfg, class_names=NAMES)
    out = tmp_path / "f.pt2"
    assert main(["export", "--weights", str(ckpt), "--output", str(out), "--size", "64x64"]) == 0
    err = capsys.readouterr().err
    assert "RGB in [0, 1]" in err and "mean (0.3, 0.5, 0.7)" in err and "std (0.2, 0.25, 0.4)" in err
    assert "p2 (stride 4)" in err and f"in the archive's {METADATA_FILE}" in err
    _, meta = _read(out)
    assert meta["input"]["size_hw"] == [64, 64] and meta["class_names"] == NAMES
