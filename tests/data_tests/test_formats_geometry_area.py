"""Shapes whose area the converters judged wrong: a self-crossing bow-tie with lobes of equal area (signed
shoelace area 0, yet pixels the COCO loader draws) and circles / ellipses drawn as inscribed polygons (always
2-4% too small)."""

import json
import math

import numpy as np
import pytest
from PIL import Image

from maskrcnn.cli import main
from maskrcnn.data.formats.common import Skip
from maskrcnn.data.formats.geometry import _area, ellipse_points, to_coco_polygon
from maskrcnn.data.mask_codec import annotation_to_mask

BOWTIE = [[60, 10], [70, 20], [60, 20], [70, 10]]  # two triangles of 25 px² crossing at (65, 15)


def _labelme(src, shapes, size=(80, 100)):
    src.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((*size, 3), np.uint8)).save(src / "a.png")
    (src / "a.json").write_text(json.dumps({
        "version": "5.5.0", "flags": {}, "imagePath": "a.png", "imageData": None,
        "imageHeight": size[0], "imageWidth": size[1],
        "shapes": [dict(s, group_id=None, flags={}) for s in shapes]}))


def test_bowtie_with_zero_signed_area_is_kept_with_its_pixels():
    points = np.array(BOWTIE, dtype=float)
    assert _area(points) == 0.0  # the signed sum the old rule judged by
    polygon = to_coco_polygon(points, 100, 80)
    drawn = int(annotation_to_mask([polygon], 80, 100).sum())  # what the COCO loader trains on
    assert drawn > 0
    # a true line (collinear points) still has no area
    with pytest.raises(Skip, match="no area"):
        to_coco_polygon(np.array([[1, 1], [5, 5], [9, 9]], dtype=float), 100, 80)


def test_bowtie_converted_like_the_coco_loader_reads_it(tmp_path, capsys):
    _labelme(tmp_path / "lm", [{"label": "car", "points": BOWTIE, "shape_type": "polygon"}])
    out = tmp_path / "o.json"
    assert main(["convert-data", "--from", "labelme", str(tmp_path / "lm"), "--output", str(out)]) == 0
    err = capsys.readouterr().err
    assert "no area" not in err
    (ann,) = json.loads(out.read_text())["annotations"]
    assert ann["area"] == int(annotation_to_mask(ann["segmentation"], 80, 100).sum()) > 0


@pytest.mark.parametrize("r", [3, 4, 5, 7, 10, 15, 20, 30, 50])
def test_circle_polygon_has_the_circle_area(r):
    ratio = _area(ellipse_points(60.0, 60.0, r, r)) / (math.pi * r * r)
    assert abs(ratio - 1.0) < 0.01, ratio


def test_turned_ellipse_polygon_has_the_ellipse_area():
    for rx, ry, theta in [(3, 8, 0.3), (12, 5, 1.0), (40, 22, 2.5)]:
        ratio = _area(ellipse_points(60.0, 60.0, rx, ry, theta)) / (math.pi * rx * ry)
        assert abs(ratio - 1.0) < 0.01, (rx, ry, ratio)


def test_converted_circles_are_not_systematically_small(tmp_path, capsys):
    radii = [10, 20, 30]
    shapes = [{"label": "cell", "points": [[40 + 70 * k, 50], [40 + 70 * k + r, 50]], "shape_type": "circle"}
              for k, r in enumerate(radii)]
    _labelme(tmp_path / "lc", shapes, size=(100, 220))
    out = tmp_path / "c.json"
    assert main(["convert-data", "--from", "labelme", str(tmp_path / "lc"), "--output", str(out)]) == 0
    capsys.readouterr()
    anns = sorted(json.loads(out.read_text())["annotations"], key=lambda a: a["bbox"][0])
    # the written polygons' own area (their pixels also hang on where the centre falls on the grid)
    ratios = [_area(np.array(a["segmentation"][0]).reshape(-1, 2)) / (math.pi * r * r)
              for a, r in zip(anns, radii)]
    assert all(abs(q - 1.0) < 0.01 for q in ratios), ratios
