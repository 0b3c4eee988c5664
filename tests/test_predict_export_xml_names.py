"""``predict --export cvat,labelstudio`` with class or image names XML 1.0 cannot hold (NUL, ESC): the
files were written, reported as written, and no XML parser read them back. Now the run is refused before
predicting, naming the class; a CR in a name (CVAT's ``<name>`` text) reads back as a CR."""

import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_model import cat_dog_inputs  # tests/ is on the path

from maskrcnn.cli import main
from maskrcnn.data.formats.common import CocoBuilder, Report
from maskrcnn.data.formats.cvat import read_cvat

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return cat_dog_inputs(tmp_path_factory.mktemp("xmlnames"), {"a.png": (40, 50)})


def _renamed(ckpt, names, path):
    c = torch.load(ckpt, weights_only=True, map_location="cpu")
    c["class_names"] = ["__background__", *names]
    c.pop("label_to_category_id", None)
    torch.save(c, path)
    return path


def _predict(ckpt, images, out, formats):
    return main(["predict", "--weights", str(ckpt), str(images), "--output", str(out), "--device", "cpu",
                 "--no-overlays", "--score-thresh", "0", "--export", formats])


@pytest.mark.parametrize("fmt", ["cvat", "labelstudio"])
@pytest.mark.parametrize("bad", ["esc\x1b[31m", "nul\x00x"])
def test_an_xml_export_refuses_a_class_name_xml_cannot_hold_before_writing_anything(setup, tmp_path, capsys,
                                                                                   fmt, bad):
    ckpt, images = setup
    weights = _renamed(ckpt, ["cat", bad], tmp_path / "w.pth")
    out = tmp_path / "out"
    assert _predict(weights, images, out, f"coco,{fmt}") == 1
    err = capsys.readouterr().err
    code = f"U+{ord(bad[3]):04X}"
    assert f"maskrcnn predict: error: --export {fmt}: class 1 " in err and code in err, err
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]


def test_an_image_name_xml_cannot_hold_refuses_the_cvat_export(setup, tmp_path, capsys):
    images = tmp_path / "in"
    images.mkdir()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(images / "esc\x1bname.png")
    out = tmp_path / "out"
    assert _predict(setup[0], images, out, "cvat") == 1
    err = capsys.readouterr().err
    assert "--export cvat: the image 'esc\\x1bname.png' holds the character U+001B" in err, err
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]


def test_cr_and_newline_in_class_names_read_back_from_the_cvat_and_labelstudio_files(setup, tmp_path, capsys):
    ckpt, images = setup
    names = ["cr\rname", "nl\nname"]
    out = tmp_path / "out"
    assert _predict(_renamed(ckpt, names, tmp_path / "w.pth"), images, out, "cvat,labelstudio") == 0, \
        capsys.readouterr().err
    root = ET.parse(out / "cvat_annotations.xml").getroot()
    assert [el.findtext("name") for el in root.iter("label")] == names  # the CR was read back as a newline
    shape_labels = {el.get("label") for el in root.iter("mask")}
    assert shape_labels and shape_labels <= set(names)
    builder, report = CocoBuilder(root=images), Report()
    read_cvat(out / "cvat_annotations.xml", builder=builder, report=report)
    assert sorted(c["name"] for c in builder.to_dict()["categories"]) == sorted(names)
    config = ET.parse(out / "labelstudio_config.xml").getroot()
    assert [label.get("value") for label in config.iter("Label")] == names
