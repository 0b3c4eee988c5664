"""What the converters and the COCO loader say about bad input, and that every format refuses alike: shapes
reaching far outside the image, VIA 3 option ids and odd xy, broken VIA CSV cells, shapes nested in CVAT
shapes, UTF-16 JSON, file names that are URLs and the summary of many problems."""

import codecs
import io
import json
import logging
import warnings

import numpy as np
import pytest
from PIL import Image

from maskrcnn.cli import main
from maskrcnn.data.coco import CocoDataset, load_coco_json
from maskrcnn.data.formats.common import Report, Skip, read_json
from maskrcnn.data.formats.geometry import to_coco_polygon

H, W = 48, 64
FAR_TRIANGLE = [[10, 10], [90000, 10], [10, 90000]]  # a mistyped coordinate: clipped, it filled the image
INSIDE_TRIANGLE = [[10, 10], [40, 10], [10, 40]]


def _png(path, size=(H, W)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), 90, np.uint8)).save(path)


def _convert(kind, src, out, capsys):
    return _convert_with([], kind, src, out, capsys)


def _convert_with(flags, kind, src, out, capsys):
    rc = main(["convert-data", "--from", kind, str(src), "--output", str(out), *flags])
    return rc, capsys.readouterr().err


def _annotation_count(out):
    return len(json.loads(out.read_text())["annotations"])


def test_far_outside_polygon_is_refused_by_the_coco_rule_not_clipped():
    with pytest.raises(Skip, match=r"far outside the 64x48 image") as e:
        to_coco_polygon(np.array(FAR_TRIANGLE, dtype=float), W, H)
    assert e.value.reason == "bad_coordinates"
    with pytest.raises(Skip, match="far outside"):
        to_coco_polygon(np.array([[-1e30, 5], [20, 5], [20, 30]]), W, H)
    # within one image size out it is clipped, as before
    assert len(to_coco_polygon(np.array([[-30, 5], [20, 5], [20, 30]], dtype=float), W, H)) >= 6


def _labelme_file(src):
    _png(src / "a.png")
    shapes = [{"label": "cat", "points": p, "shape_type": "polygon", "group_id": None, "flags": {}}
              for p in (INSIDE_TRIANGLE, FAR_TRIANGLE)]
    (src / "a.json").write_text(json.dumps({"version": "5.5.0", "flags": {}, "shapes": shapes,
                                            "imagePath": "a.png", "imageData": None,
                                            "imageHeight": H, "imageWidth": W}))


def _via_file(src):
    _png(src / "a.png")
    regions = [{"shape_attributes": {"name": "polygon", "all_points_x": [p[0] for p in pts],
                                     "all_points_y": [p[1] for p in pts]}, "region_attributes": {"c": "cat"}}
               for pts in (INSIDE_TRIANGLE, FAR_TRIANGLE)]
    (src / "via.json").write_text(json.dumps({"a.png1": {"filename": "a.png", "size": 1, "regions": regions,
                                                         "file_attributes": {}}}))


def _cvat_file(src):
    _png(src / "a.png")
    polys = "".join(f'<polygon label="cat" points="{";".join(f"{x},{y}" for x, y in pts)}"/>'
                    for pts in (INSIDE_TRIANGLE, FAR_TRIANGLE))
    (src / "annotations.xml").write_text(f'<annotations><version>1.1</version><image id="0" name="a.png" '
                                         f'width="{W}" height="{H}">{polys}</image></annotations>')


@pytest.mark.parametrize("kind, write, shape", [("labelme", _labelme_file, "shapes[1]"),
                                                ("via", _via_file, "regions[1]"),
                                                ("cvat", _cvat_file, "shape [1]")])
def test_converters_skip_far_outside_shapes_naming_file_and_shape(tmp_path, capsys, kind, write, shape):
    src, out = tmp_path / "src", tmp_path / "out.json"
    src.mkdir()
    write(src)
    rc, err = _convert(kind, src, out, capsys)
    assert rc == 0
    assert _annotation_count(out) == 1  # the far one was a rectangle over the whole image
    line = next(line for line in err.splitlines() if "far outside the 64x48 image" in line)
    assert shape in line and ("a.json" in line or "via.json" in line or "annotations.xml" in line)
    assert "1 bad_coordinates" in err


def _via3(metadata, attribute):
    return {"project": {"pid": "p", "rev": "1", "rev_timestamp": "1", "pname": "p", "creator": "VIA",
                        "created": 1, "vid_list": ["1"]},
            "config": {"file": {"loc_prefix": {"1": ""}}, "ui": {}},
            "attribute": {"1": attribute},
            "file": {"1": {"fid": "1", "fname": "a.png", "type": 2, "loc": 1, "src": ""}},
            "view": {"1": {"fid_list": ["1"]}}, "metadata": metadata}


SQUARE = [7, 10, 10, 30, 10, 30, 30, 10, 30]


def test_via3_option_id_that_is_no_option_is_skipped_and_odd_xy_named_by_metadata(tmp_path, capsys):
    _png(tmp_path / "a.png")
    radio = {"aname": "cls", "anchor_id": "FILE1_Z0_XY1", "type": 3, "options": {"0": "cat", "1": "dog"}}
    metadata = {"1_a": {"vid": "1", "z": [], "xy": SQUARE, "av": {"1": "0"}},
                "1_h": {"vid": "1", "z": [], "xy": SQUARE, "av": {"1": "7"}},
                "1_d": {"vid": "1", "z": [], "xy": [7, 10, 10, 30], "av": {"1": "0"}}}
    (tmp_path / "p.json").write_text(json.dumps(_via3(metadata, radio)))
    rc, err = _convert("via", tmp_path / "p.json", tmp_path / "out.json", capsys)
    coco = json.loads((tmp_path / "out.json").read_text())
    assert rc == 0 and [c["name"] for c in coco["categories"]] == ["cat"]  # no class '7'
    assert "metadata '1_h': option id '7' is not an option of attribute 'cls'" in err
    odd = next(line for line in err.splitlines() if "'1_d'" in line)
    assert "xy" in odd and "all_points_x" not in odd and "regions[" not in odd


def test_via3_stale_option_of_another_attribute_loses_no_region(tmp_path, capsys):
    _png(tmp_path / "a.png")
    project = _via3({"1_a": {"vid": "1", "z": [], "xy": SQUARE, "av": {"1": "0", "2": "9"}}},
                    {"aname": "cls", "anchor_id": "FILE1_Z0_XY1", "type": 3, "options": {"0": "cat"}})
    project["attribute"]["2"] = {"aname": "occluded", "anchor_id": "FILE1_Z0_XY1", "type": 3,
                                 "options": {"0": "no", "1": "yes"}}
    (tmp_path / "p.json").write_text(json.dumps(project))
    rc, _ = _convert_with(["--class-attribute", "cls"], "via", tmp_path / "p.json", tmp_path / "out.json",
                          capsys)
    coco = json.loads((tmp_path / "out.json").read_text())
    assert rc == 0 and [c["name"] for c in coco["categories"]] == ["cat"] and len(coco["annotations"]) == 1
    rc, err = _convert_with(["--class-attribute", "occluded"], "via", tmp_path / "p.json",
                            tmp_path / "out2.json", capsys)  # the class read from the stale one: refused
    assert "option id '9' is not an option of attribute 'occluded'" in err


def test_via3_text_attribute_keeps_free_text(tmp_path, capsys):
    _png(tmp_path / "a.png")
    text = {"aname": "cls", "anchor_id": "FILE1_Z0_XY1", "type": 1, "options": {}}
    metadata = {"1_a": {"vid": "1", "z": [], "xy": SQUARE, "av": {"1": "zebra"}}}
    (tmp_path / "p.json").write_text(json.dumps(_via3(metadata, text)))
    rc, _ = _convert("via", tmp_path / "p.json", tmp_path / "out.json", capsys)
    assert rc == 0
    assert [c["name"] for c in json.loads((tmp_path / "out.json").read_text())["categories"]] == ["zebra"]


def test_via_csv_broken_shape_cell_is_said_to_be_broken_json(tmp_path, capsys):
    _png(tmp_path / "a.png")
    good = '"{""name"":""rect"",""x"":2,""y"":2,""width"":9,""height"":9}"'
    rows = ["filename,file_size,file_attributes,region_count,region_id,region_shape_attributes,"
            "region_attributes",
            f'a.png,1,"{{}}",2,0,{good},"{{""c"":""cat""}}"',
            'a.png,1,"{}",2,1,"{""name"":""rect"",""x"":2","{""c"":""cat""}"']
    (tmp_path / "via.csv").write_text("\n".join(rows) + "\n")
    rc, err = _convert("via", tmp_path / "via.csv", tmp_path / "out.json", capsys)
    assert rc == 0 and _annotation_count(tmp_path / "out.json") == 1
    assert "region_shape_attributes is not valid JSON (CSV row 3)" in err
    assert "no 'shape_attributes' object" not in err


def test_via_csv_broken_attributes_cell_refuses_only_a_class_read_from_it(tmp_path, capsys):
    _png(tmp_path / "a.png")
    rows = ["filename,file_size,file_attributes,region_count,region_id,region_shape_attributes,"
            "region_attributes",
            'a.png,1,"{}",3,0,"{""name"":""rect"",""x"":2,""y"":2,""width"":9,""height"":9}","{""c"":""cat"""',
            'a.png,1,"{}",3,1,,"{}"']
    (tmp_path / "via.csv").write_text("\n".join(rows) + "\n")
    rc, err = _convert_with(["--class-name", "thing"], "via", tmp_path / "via.csv", tmp_path / "out.json",
                            capsys)  # no class attribute: the broken cell costs nothing
    assert rc == 0 and _annotation_count(tmp_path / "out.json") == 1
    assert "region_shape_attributes is blank (CSV row 3)" in err
    rc, err = _convert_with(["--class-attribute", "c"], "via", tmp_path / "via.csv", tmp_path / "out2.json",
                            capsys)
    assert "region_attributes is not valid JSON (CSV row 2)" in err


def test_cvat_elements_nested_in_shapes_are_counted_in_one_warning(tmp_path, capsys):
    _png(tmp_path / "a.png")
    inner = '<polygon label="cat" points="1,1;9,1;9,9"/>'
    shapes = (f'<polygon label="cat" points="10,10;40,10;10,40"><attribute name="x">1</attribute>{inner}'
              f'{inner}</polygon><box label="cat" xtl="1" ytl="1" xbr="5" ybr="5">{inner}</box>')
    (tmp_path / "annotations.xml").write_text(f'<annotations><version>1.1</version><image id="0" '
                                              f'name="a.png" width="{W}" height="{H}">{shapes}</image>'
                                              "</annotations>")
    rc, err = _convert("cvat", tmp_path, tmp_path / "out.json", capsys)
    assert rc == 0 and _annotation_count(tmp_path / "out.json") == 2
    assert [line for line in err.splitlines() if "nested inside shapes" in line] == [
        "annotations.xml: warning: 3 element(s) nested inside shapes ignored (a shape holds only "
        "<attribute> elements; its geometry is in its own attributes)"]


@pytest.mark.parametrize("codec, bom", [
    ("utf-16-le", codecs.BOM_UTF16_LE), ("utf-16-be", codecs.BOM_UTF16_BE),
    ("utf-32-le", codecs.BOM_UTF32_LE), ("utf-8", codecs.BOM_UTF8)])
def test_json_with_a_byte_order_mark_is_read_in_every_reader(tmp_path, codec, bom):
    # what Windows PowerShell 5.1 writes: "not valid JSON ('utf-8' codec can't decode byte 0xff ...)"
    coco = {"images": [{"id": 1, "file_name": "é.png", "height": H, "width": W}], "annotations": [],
            "categories": [{"id": 1, "name": "chat"}]}
    path = tmp_path / "c.json"
    path.write_bytes(bom + json.dumps(coco, ensure_ascii=False).encode(codec))
    assert load_coco_json(path) == coco
    assert read_json(path) == coco


def test_utf16_without_json_is_still_a_clear_error(tmp_path):
    path = tmp_path / "c.json"
    path.write_bytes(codecs.BOM_UTF16_LE + "{oops".encode("utf-16-le"))
    with pytest.raises(ValueError, match=r"c\.json: not valid JSON"):
        load_coco_json(path)
    with pytest.raises(Skip, match="not readable JSON"):
        read_json(path)


def _coco_file(tmp_path, images, annotations):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "cat"}]}))
    (tmp_path / "img").mkdir(exist_ok=True)
    _png(tmp_path / "img" / "a.png")
    return path


def _load(path, image_dir, caplog):
    caplog.set_level(logging.WARNING, logger="maskrcnn.data.coco")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        CocoDataset(json_path=path, image_dir=image_dir)
    return [r.getMessage() for r in caplog.records], [str(w.message) for w in caught]


def test_files_not_found_are_named_even_after_twenty_other_problems(tmp_path, caplog):
    images = [{"id": 1, "file_name": "a.png", "height": H, "width": W},
              {"id": 2, "file_name": "gone.png", "height": H, "width": W}]
    bad = [{"id": i, "image_id": 1, "category_id": 99, "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 0}
           for i in range(1, 26)]  # 25 problems of another reason, met before the file not found is said
    path = _coco_file(tmp_path, images, bad)
    logged, warned = _load(path, tmp_path / "img", caplog)
    assert any("gone.png not found" in line for line in logged)
    summary = next(w for w in warned if "skipped" in w)
    assert "1 missing_image_file" in summary and "the first 20 of each reason named above" in summary


def test_a_url_file_name_is_quoted_as_written_and_said_not_fetched(tmp_path, caplog):
    images = [{"id": 1, "file_name": "a.png", "height": H, "width": W},
              {"id": 2, "file_name": "http://example.com/x.png", "height": H, "width": W}]
    path = _coco_file(tmp_path, images, [])
    logged, _ = _load(path, tmp_path / "img", caplog)
    line = next(line for line in logged if "x.png" in line)
    assert "'http://example.com/x.png' not found" in line and "URLs are not fetched" in line
    assert "http:/example" not in line


def test_report_counts_far_outside_skips():
    report = Report(stream=io.StringIO())
    try:
        to_coco_polygon(np.array(FAR_TRIANGLE, dtype=float), W, H)
    except Skip as e:
        report.skip("f.json: shapes[1]", e)
    assert report.skipped == {"bad_coordinates": 1}
    assert report.messages[0].startswith("f.json: shapes[1]: polygon coordinates reach")
