"""convert-data --from via: VIA 2 exports (regions listed), VIA 1 (regions keyed), VIA 2 projects, the
class attribute (default, checkbox, --class-attribute, --class-name), shapes, and bad regions named."""

import json
import math

import numpy as np
from PIL import Image

from maskrcnn.cli import main
from maskrcnn.data.coco import CocoDataset

H, W = 30, 40


def _convert(src, out, *options):
    return main(["convert-data", "--from", "via", str(src), "--output", str(out), *options])


def _region(shape, **attributes):
    return {"shape_attributes": shape, "region_attributes": attributes}


def _polygon(xs, ys):
    return {"name": "polygon", "all_points_x": xs, "all_points_y": ys}


def _rect(x, y, w, h):
    return {"name": "rect", "x": x, "y": y, "width": w, "height": h}


def _entry(filename, regions):
    return {
        f"{filename}1234": {"filename": filename, "size": 1234, "regions": regions, "file_attributes": {}}
    }


def _tree(src):
    src.mkdir(parents=True)
    for name in ("img1.jpg", "img2.png", "img3.png"):
        Image.fromarray(np.full((H, W, 3), 60, np.uint8)).save(src / name)
    export = _entry("img1.jpg", [
        _region(_polygon([2, 10, 10, 2], [2, 2, 8, 8]), name="cat", color="red"),
        _region(_rect(30, 20, 15, 15), name="dog"),  # clipped to the image
        _region({"name": "ellipse", "cx": 20, "cy": 15, "rx": 6, "ry": 3, "theta": 0}, name="dog"),
        _region({"name": "polyline", "all_points_x": [1, 5], "all_points_y": [1, 5]}, name="dog"),
        _region(_polygon([1, 5, 9], [1, 5]), name="dog"),
        _region(_rect(1, 1, 3, 3), name=""),
        _region({"name": "circle", "cx": 5, "cy": 25, "r": 3}, name="cat"),
    ])  # fmt: skip
    export.update(_entry("missing.jpg", []))
    (src / "via2_export.json").write_text(json.dumps(export))
    # VIA 1: regions keyed "0", "1", ...; ellipses without theta.
    via1 = _entry("img2.png", {
        "0": _region(_rect(1, 1, 4, 3), type="bird"),
        "1": _region({"name": "ellipse", "cx": 10, "cy": 10, "rx": 2, "ry": 2}, type="bird"),
    })  # fmt: skip
    (src / "via1.json").write_text(json.dumps(via1))
    # A VIA 2 project file: the first defined attribute is the class; checkboxes give the ticked option.
    project = {
        "_via_settings": {"ui": {}, "core": {}, "project": {"name": "p"}},
        "_via_img_metadata": _entry(
            "img3.png",
            [
                _region(_rect(0, 0, 5, 5), kind={"cat": True, "dog": False}, label="x"),
                _region(_rect(10, 0, 5, 5), kind={"cat": True, "dog": True}),
                _region(_rect(20, 0, float("inf"), 5), kind={"dog": True}),
            ],
        ),  # fmt: skip
        "_via_attributes": {"region": {"kind": {"type": "checkbox"}, "label": {"type": "text"}}, "file": {}},
        "_via_data_format_version": "2.0.10",
        "_via_image_id_list": ["img3.png1234"],
    }
    (src / "sub").mkdir()
    (src / "sub" / "project.json").write_text(
        json.dumps(project).replace('"filename": "img3.png"', '"filename": "../img3.png"')
    )


def test_via_exports_and_project(tmp_path, capsys):
    src, out = tmp_path / "src", tmp_path / "coco.json"
    _tree(src)
    assert _convert(src, out) == 0
    captured = capsys.readouterr()
    coco = json.loads(out.read_text())

    assert [(c["id"], c["name"]) for c in coco["categories"]] == [(1, "bird"), (2, "cat"), (3, "dog")]
    assert [i["file_name"] for i in coco["images"]] == ["img3.png", "img2.png", "img1.jpg"]  # sub/ first
    names = {c["id"]: c["name"] for c in coco["categories"]}
    got = [(a["image_id"], names[a["category_id"]], a["bbox"], a["area"]) for a in coco["annotations"]]
    ellipse, circle2 = got.pop(5), got.pop(2)
    circle = got.pop(-1)
    assert got == [
        (1, "cat", [0.0, 0.0, 5.0, 5.0], 25),
        (2, "bird", [1.0, 1.0, 4.0, 3.0], 12),
        (3, "cat", [2.0, 2.0, 8.0, 6.0], 48),
        (3, "dog", [30.0, 20.0, 10.0, 10.0], 100),
    ]
    assert ellipse[:3] == (3, "dog", [14.0, 12.0, 12.0, 6.0]) and abs(ellipse[3] - math.pi * 18) < 3
    assert circle[:3] == (3, "cat", [2.0, 22.0, 6.0, 6.0]) and abs(circle[3] - math.pi * 9) < 3
    assert circle2[:3] == (2, "bird", [8.0, 8.0, 4.0, 4.0]) and abs(circle2[3] - math.pi * 4) < 2
    assert all(isinstance(a["segmentation"], list) and a["iscrowd"] == 0 for a in coco["annotations"])

    err = captured.err
    for line in (
        "sub/project.json: 'img3.png1234' regions[1]: attribute 'kind' has several options ticked",
        "sub/project.json: 'img3.png1234' regions[2]: rect x, y, width, height contain NaN or infinite",
        "via2_export.json: 'img1.jpg1234' regions[3]: shape 'polyline' is not converted",
        "via2_export.json: 'img1.jpg1234' regions[4]: all_points_x and all_points_y must be lists",
        "via2_export.json: 'img1.jpg1234' regions[5]: no value for the class attribute 'name'",
        "via2_export.json: 'missing.jpg1234': image ",
        "skipped 6 record(s): 1 ambiguous_class, 1 bad_coordinates, 1 bad_shape, 1 missing_class, "
        "1 missing_image, 1 unsupported_shape",
    ):
        assert line in err, line
    assert "1 VIA files with the class from attribute 'kind'" in err
    assert "1 VIA files with the class from attribute 'type'" in err

    dataset = CocoDataset(json_path=out, image_dir=src)
    assert dataset.skipped == {} and len(dataset) == 3
    _, target = dataset[2]
    assert target["masks"][1].sum() == 100 and target["boxes"][1].tolist() == [30.0, 20.0, 40.0, 30.0]


def test_via_class_attribute_and_class_name(tmp_path, capsys):
    src = tmp_path / "src"
    _tree(src)
    out = tmp_path / "colors.json"
    assert _convert(src / "via2_export.json", out, "--class-attribute", "color", "--class-name", "thing") == 0
    coco = json.loads(out.read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert [names[a["category_id"]] for a in coco["annotations"]] == [
        "red",
        "thing",
        "thing",
        "thing",
        "thing",
    ]

    # matterport's balloon sample: no region has any attribute -> one class, --class-name or "object".
    balloon = tmp_path / "balloon"
    balloon.mkdir()
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(balloon / "b.jpg")
    regions = [_region(_polygon([1, 9, 9, 1], [1, 1, 9, 9])), _region(_rect(20, 5, 10, 10))]
    (balloon / "via_region_data.json").write_text(json.dumps(_entry("b.jpg", regions)))
    # The same image in a second file (the project beside its export) is converted once, and reported.
    (balloon / "project.json").write_text(json.dumps({"_via_img_metadata": _entry("b.jpg", regions)}))
    for extra, name in (([], "object"), (["--class-name", "balloon"], "balloon")):
        out = tmp_path / f"{name}.json"
        assert _convert(balloon, out, *extra) == 0
        coco = json.loads(out.read_text())
        assert coco["categories"] == [{"id": 1, "name": name}]
        assert [(a["bbox"], a["area"]) for a in coco["annotations"]] == [
            ([1.0, 1.0, 8.0, 8.0], 64),
            ([20.0, 5.0, 10.0, 10.0], 100),
        ]
        err = capsys.readouterr().err
        assert "notes: 2 VIA files with the class from no attribute" in err
        assert "via_region_data.json: 'b.jpg1234': image b.jpg was converted already, from project" in err


def test_via_file_with_a_utf8_bom(tmp_path, capsys):
    """VIA projects re-saved by a Windows editor start with a BOM: "not readable JSON" before."""
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(np.full((H, W, 3), 60, np.uint8)).save(src / "a.png")
    text = json.dumps(_entry("a.png", [_region(_rect(1, 1, 4, 3), name="cat")]))
    (src / "via.json").write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert _convert(src, tmp_path / "out.json") == 0, capsys.readouterr().err
    assert [a["area"] for a in json.loads((tmp_path / "out.json").read_text())["annotations"]] == [12]


def test_via_csv_export(tmp_path, capsys):
    """VIA's "Export annotations (as csv)" was refused as "not readable JSON"; it is the JSON export, a row
    per region (VIA 1 heads its first column "#filename"; an image without regions is a row of {})."""
    import csv

    src = tmp_path / "src"
    src.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(np.full((H, W, 3), 60, np.uint8)).save(src / name)
    regions = [
        (json.dumps(_polygon([2, 10, 10, 2], [2, 2, 8, 8])), json.dumps({"kind": "cat"})),
        (json.dumps(_rect(30, 20, 5, 4)), json.dumps({"kind": {"dog": True}})),
        ("{not json", json.dumps({"kind": "dog"})),
    ]
    rows = [["a.png", 99, "{}", 3, i, shape, attrs] for i, (shape, attrs) in enumerate(regions)]
    rows.append(["b.png", 12, "{}", 0, 0, "{}", "{}"])
    for first in ("filename", "#filename"):
        path = src / f"export_{len(first)}.csv"
        with open(path, "w", newline="") as f:
            csv.writer(f).writerows([[first, "file_size", "file_attributes", "region_count", "region_id",
                                      "region_shape_attributes", "region_attributes"], *rows])
        out = tmp_path / f"{path.stem}.json"
        assert _convert(path, out) == 0
        err = capsys.readouterr().err
        coco = json.loads(out.read_text())
        assert [i["file_name"] for i in coco["images"]] == ["a.png", "b.png"]
        names = {c["id"]: c["name"] for c in coco["categories"]}
        assert [(names[a["category_id"]], a["bbox"], a["area"]) for a in coco["annotations"]] == [
            ("cat", [2.0, 2.0, 8.0, 6.0], 48), ("dog", [30.0, 20.0, 5.0, 4.0], 20)]
        assert f"{path.name}: 'a.png' regions[2]: region_shape_attributes is not valid JSON (CSV row 4)" \
            in err
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    assert _convert(tmp_path / "other.csv", tmp_path / "o.json") == 1
    assert "other.csv: not a VIA CSV export" in capsys.readouterr().err


def test_via_project_finds_images_in_its_default_path(tmp_path, capsys):
    """A VIA 2 project saved apart from its images names them relative to its "Default Path" (or "Search
    Path List"); images were looked for beside the JSON file only, and every one skipped as missing."""
    for folder, name in (("images", "a.png"), ("elsewhere", "b.png"), ("annotations", "c.png")):
        (tmp_path / folder).mkdir(exist_ok=True)
        Image.fromarray(np.full((H, W, 3), 60, np.uint8)).save(tmp_path / folder / name)
    metadata = {**_entry("a.png", [_region(_rect(1, 1, 4, 3), name="cat")]),
                **_entry("b.png", [_region(_rect(1, 1, 5, 3), name="cat")]),
                **_entry("/home/someone/old/c.png", [_region(_rect(1, 1, 6, 3), name="cat")])}  # fmt: skip
    elsewhere = {str(tmp_path / "elsewhere"): 1}  # the "Search Path List"
    settings = {"core": {"default_filepath": "..\\images\\", "filepath": elsewhere}}  # saved on Windows
    (tmp_path / "annotations" / "project.json").write_text(json.dumps({
        "_via_settings": settings, "_via_img_metadata": metadata, "_via_attributes": {"region": {}}}))
    out = tmp_path / "out.json"
    assert _convert(tmp_path / "annotations" / "project.json", out) == 0, capsys.readouterr().err
    coco = json.loads(out.read_text())
    assert [i["file_name"] for i in coco["images"]] == ["../images/a.png", "../elsewhere/b.png", "c.png"]
    assert [a["area"] for a in coco["annotations"]] == [12, 15, 18]


def _project(regions, region_attributes):
    metadata = _entry("a.png", regions)
    return {"_via_settings": {"ui": {}, "core": {}, "project": {"name": "p"}},
            "_via_img_metadata": metadata, "_via_attributes": {"region": region_attributes, "file": {}},
            "_via_data_format_version": "2.0.10", "_via_image_id_list": list(metadata)}


def _classes(out):
    coco = json.loads(out.read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    return [names[a["category_id"]] for a in coco["annotations"]]


def test_via_project_class_is_its_choice_attribute(tmp_path, capsys):
    """The class came from the first attribute a project defines, a text "name" before the "species"
    dropdown: every pet its own class (Tom, Rex). A project's one dropdown / radio / checkbox attribute is
    the class; of several, the one whose options match the most region values, said in a line."""
    Image.fromarray(np.full((H, W, 3), 60, np.uint8)).save(tmp_path / "a.png")
    text = {"type": "text", "description": "", "default_value": ""}
    species = {"type": "dropdown", "options": {"cat": "", "dog": ""}, "default_options": {}}
    regions = [_region(_rect(1, 1, 4, 3), name="Tom", species="cat", colour="red"),
               _region(_rect(10, 1, 4, 3), name="Rex", species="dog", colour="tabby"),
               _region(_rect(20, 1, 4, 3), name="Max", species="cat")]  # fmt: skip
    one = tmp_path / "one.json"
    one.write_text(json.dumps(_project(regions, {"name": text, "species": species})))
    assert _convert(one, tmp_path / "o1.json") == 0
    assert _classes(tmp_path / "o1.json") == ["cat", "dog", "cat"]
    assert "1 VIA files with the class from attribute 'species'" in capsys.readouterr().err
    assert _convert(one, tmp_path / "o2.json", "--class-attribute", "name") == 0  # the option still rules
    assert _classes(tmp_path / "o2.json") == ["Tom", "Rex", "Max"]

    colour = {"type": "radio", "options": {"red": "", "blue": ""}}
    two = tmp_path / "two.json"
    two.write_text(json.dumps(_project(regions, {"name": text, "colour": colour, "species": species})))
    assert _convert(two, tmp_path / "o3.json") == 0
    assert _classes(tmp_path / "o3.json") == ["cat", "dog", "cat"]
    assert ("two.json: class from attribute 'species': of the 2 dropdown / radio / checkbox attributes, its "
            "options match the most region values ('colour' 1, 'species' 3 of 3 regions); --class-attribute "
            "picks another") in capsys.readouterr().err

    # Only text attributes defined: the first, as before.
    text_only = tmp_path / "text.json"
    text_only.write_text(json.dumps(_project(regions, {"name": text, "species": text})))
    assert _convert(text_only, tmp_path / "o4.json") == 0
    assert _classes(tmp_path / "o4.json") == ["Tom", "Rex", "Max"]


def test_via_export_free_text_first_attribute_and_empty_shapes(tmp_path, capsys):
    """A plain export (no attribute definitions) whose first attribute is a note ("fluffy") took the class
    from it, every other region "missing" its class. An attribute whose values never repeat, missing from
    some region or more varied than another that every region has and whose values repeat, gives way to
    that one. A region with empty shape_attributes was "shape None is not converted"."""
    Image.fromarray(np.full((H, W, 3), 60, np.uint8)).save(tmp_path / "a.png")
    notes = [_region(_rect(1, 1, 4, 3), note="fluffy", type="cat"),
             _region(_rect(10, 1, 4, 3), type="dog", note=""),
             _region(_rect(20, 1, 4, 3), type={"dog": True}),
             _region({}, type="cat")]  # fmt: skip
    (tmp_path / "notes.json").write_text(json.dumps(_entry("a.png", notes)))
    assert _convert(tmp_path / "notes.json", tmp_path / "o1.json") == 0
    assert _classes(tmp_path / "o1.json") == ["cat", "dog", "dog"]
    err = capsys.readouterr().err
    assert ("notes.json: class from attribute 'type', whose values repeat, not from the first attribute "
            "'note', whose values look like free text (none repeats); --class-attribute note takes it") in err
    assert "notes.json: 'a.png1234' regions[3]: the region has no shape (empty shape_attributes)" in err
    assert "skipped 1 record(s): 1 missing_shape" in err

    # Names, each different, before a species every region has: over 8 regions, the species; over 3,
    # proof of nothing (a small file's classes need not repeat), the first attribute stays.
    pets = [("Tom", "cat"), ("Rex", "dog"), ("Max", "cat"), ("Ada", "dog"), ("Bo", "cat"), ("Cy", "cat"),
            ("Di", "dog"), ("Ed", "cat")]
    names = [_region(_rect(1 + 5 * i, 1, 4, 3), name=n, species=s) for i, (n, s) in enumerate(pets)]
    (tmp_path / "names.json").write_text(json.dumps(_entry("a.png", names)))
    assert _convert(tmp_path / "names.json", tmp_path / "o2.json") == 0
    assert _classes(tmp_path / "o2.json") == [s for _, s in pets]
    assert "class from attribute 'species'" in capsys.readouterr().err
    (tmp_path / "few.json").write_text(json.dumps(_entry("a.png", names[:3])))
    assert _convert(tmp_path / "few.json", tmp_path / "o4.json") == 0
    assert _classes(tmp_path / "o4.json") == ["Tom", "Rex", "Max"]
    assert "1 VIA files with the class from attribute 'name'" in capsys.readouterr().err

    # A first attribute whose values repeat is the class, as before, however the others look.
    classes = [_region(_rect(1 + 9 * i, 1, 4, 3), kind=k, occluded=o) for i, (k, o) in
               enumerate([("cat", "no"), ("cat", "no"), ("dog", "no")])]  # fmt: skip
    (tmp_path / "classes.json").write_text(json.dumps(_entry("a.png", classes)))
    assert _convert(tmp_path / "classes.json", tmp_path / "o3.json") == 0
    assert _classes(tmp_path / "o3.json") == ["cat", "cat", "dog"]
    err = capsys.readouterr().err
    assert "1 VIA files with the class from attribute 'kind'" in err and "free text" not in err


def test_via3_project(tmp_path, capsys):
    """VIA 3: shape ids, option ids -> class names, extreme rectangles as their box; points, extreme
    circles, timed regions and video files reported by file and counted."""
    src = tmp_path / "v3"
    src.mkdir()
    Image.fromarray(np.full((H, W, 3), 60, np.uint8)).save(src / "a.png")
    project = {
        "project": {"pname": "p", "vid_list": ["1", "2"]}, "config": {"file": {"loc_prefix": {}}},
        "attribute": {"1": {"aname": "kind", "anchor_id": "FILE1_Z0_XY1", "type": 3,
                            "options": {"0": "cat", "1": "dog"}},
                      "2": {"aname": "note", "anchor_id": "FILE1_Z0_XY0", "type": 1, "options": {}}},
        "file": {"1": {"fid": "1", "fname": "a.png", "type": 2, "loc": 1, "src": ""},
                 "2": {"fid": "2", "fname": "v.mp4", "type": 4, "loc": 1, "src": ""}},
        "view": {"1": {"fid_list": ["1"]}, "2": {"fid_list": ["2"]}},
        "metadata": {
            "1_a": {"vid": "1", "z": [], "xy": [7, 2, 2, 10, 2, 10, 8, 2, 8], "av": {"1": "0"}},
            "1_b": {"vid": "1", "z": [], "xy": [2, 20, 10, 5, 4], "av": {"1": "1"}},
            "1_c": {"vid": "1", "z": [], "xy": [8, 30, 5, 35, 2, 38, 6, 33, 9], "av": {"1": "1"}},
            "1_d": {"vid": "1", "z": [], "xy": [1, 5, 5], "av": {"1": "0"}},
            "1_e": {"vid": "1", "z": [], "xy": [9, 1, 1, 2, 2, 3, 1], "av": {"1": "0"}},
            "1_f": {"vid": "1", "z": [1.5], "xy": [2, 1, 1, 3, 3], "av": {"1": "0"}},
            "1_g": {"vid": "1", "z": [], "xy": [5, 1, 1, 9, 9], "av": {"1": "0"}},
            "2_a": {"vid": "2", "z": [0.5], "xy": [2, 1, 1, 3, 3], "av": {"1": "0"}},
        },
    }  # fmt: skip
    (src / "project.json").write_text(json.dumps(project))
    out = tmp_path / "out.json"
    assert _convert(src / "project.json", out) == 0
    err = capsys.readouterr().err
    coco = json.loads(out.read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    got = [(names[a["category_id"]], a["bbox"]) for a in coco["annotations"]]
    assert got == [("cat", [2.0, 2.0, 8.0, 6.0]), ("dog", [20.0, 10.0, 5.0, 4.0]),
                   ("dog", [30.0, 2.0, 8.0, 7.0])]  # fmt: skip
    assert coco["images"] == [{"id": 1, "file_name": "a.png", "height": H, "width": W}]
    assert "project.json: 'a.png' metadata '1_d': shape 'point' is not converted" in err
    assert "shape 'extreme_circle' is not converted" in err
    assert "region '1_f' has a time z=[1.5]" in err
    assert "'v.mp4' is a video or audio file" in err
    assert "metadata '1_g': shape 'line' is not converted" in err  # VIA 3's line, as the user drew it
    assert "3 unsupported_shape" in err and "1 timed_region" in err and "1 not_image" in err


def test_via_user_problem_keys_are_data(tmp_path, capsys):
    """An entry or region of a user's VIA 2 file with a "problem" key had it raised (TypeError: exceptions
    must derive from BaseException): only the VIA 3 translation's Skip is raised."""
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(tmp_path / "a.png")
    region = {**_region(_rect(2, 2, 8, 6), name="cat"), "problem": "blurry"}
    data = _entry("a.png", [region])
    data["a.png1234"]["problem"] = "check again"
    (tmp_path / "e.json").write_text(json.dumps(data))
    out = tmp_path / "o.json"
    assert _convert(tmp_path / "e.json", out) == 0
    assert [a["bbox"] for a in json.loads(out.read_text())["annotations"]] == [[2.0, 2.0, 8.0, 6.0]]


def test_via3_inline_file_and_bad_regions_reported(tmp_path, capsys):
    """An inline file's src (a data: URI) was taken as its file name (OSError "File name too long", the
    conversion aborted); xy [[7], 1, 2] raised TypeError; a fid_list that is no list, or a region whose
    view is missing, dropped silently: each is reported by region and counted."""
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(tmp_path / "a.png")
    rect = [2, 2, 2, 8, 6]
    project = {
        "project": {}, "config": {}, "attribute": {},
        "file": {"1": {"fname": "a.png", "type": 2, "loc": 4, "src": "data:image/png;base64," + "A" * 5000}},
        "view": {"1": {"fid_list": ["1"]}, "2": {"fid_list": "1"}, "3": {"fid_list": ["9"]}},
        "metadata": {"m1": {"vid": "1", "xy": rect}, "m2": {"vid": "1", "xy": [[7], 1, 2]},
                     "m3": {"vid": "2", "xy": rect}, "m4": {"vid": "3", "xy": rect},
                     "m5": {"vid": "4", "xy": rect}},
    }  # fmt: skip
    (tmp_path / "p.json").write_text(json.dumps(project))
    out = tmp_path / "o.json"
    assert _convert(tmp_path / "p.json", out, "--class-name", "thing") == 0
    err = capsys.readouterr().err
    coco = json.loads(out.read_text())
    assert [i["file_name"] for i in coco["images"]] == ["a.png"]
    assert [a["bbox"] for a in coco["annotations"]] == [[2.0, 2.0, 8.0, 6.0]]
    for line in (
        "p.json: 'a.png' metadata 'm2': xy [[7], 1, 2] is not [shape id, coordinates...]; skipped",
        "p.json: 'metadata m3': region 'm3' lies on view '2', whose fid_list '1' is not a list of file ids",
        "p.json: 'metadata m4': region 'm4' lies on view '3', whose file '9' is not in 'file'",
        "p.json: 'metadata m5': region 'm5' lies on view '4', which is not in 'view' (views: ['1', '2', '3']",
        "skipped 4 record(s): 1 bad_shape, 3 bad_view",
    ):
        assert line in err, line


def test_via_and_labelme_take_images_from_a_folder_apart_with_images(tmp_path, capsys):
    """--images was refused for via and labelme ("applies to --from labelstudio"), and an image not
    found did not say how to give its folder."""
    (tmp_path / "photos" / "sub").mkdir(parents=True)
    Image.fromarray(np.full((H, W, 3), 60, np.uint8)).save(tmp_path / "photos" / "sub" / "a.png")
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / "via.json").write_text(json.dumps(_entry("sub/a.png", [_region(_rect(1, 1, 4, 3),
                                                                                       name="cat")])))
    out = tmp_path / "out.json"
    assert _convert(tmp_path / "ann" / "via.json", out) == 1
    err = capsys.readouterr().err
    assert "not found (pass --images ROOT, the folder the image names are relative to); skipped" in err
    assert _convert(tmp_path / "ann" / "via.json", out, "--images", str(tmp_path / "photos")) == 0
    assert [i["file_name"] for i in json.loads(out.read_text())["images"]] == ["sub/a.png"]
    shape = {"label": "cat", "points": [[1, 1], [5, 1], [5, 4]], "shape_type": "polygon", "group_id": None}
    (tmp_path / "lm").mkdir()
    (tmp_path / "lm" / "a.json").write_text(json.dumps({"shapes": [shape], "imagePath": "sub/a.png"}))
    out2 = tmp_path / "out2.json"
    assert main(["convert-data", "--from", "labelme", str(tmp_path / "lm"), "--output", str(out2)]) == 1
    assert "(pass --images ROOT" in capsys.readouterr().err
    assert main(["convert-data", "--from", "labelme", str(tmp_path / "lm"), "--output", str(out2), "--images",
                 str(tmp_path / "photos")]) == 0
    assert [i["file_name"] for i in json.loads(out2.read_text())["images"]] == ["sub/a.png"]
    assert main(["convert-data", "--from", "yolo", str(tmp_path / "lm"), "--output", str(out2), "--images",
                 str(tmp_path / "photos")]) == 1
    err = capsys.readouterr().err
    assert "--images applies to --from labelstudio / cvat / via / labelme, not yolo" in err


def test_via3_coco_export_beside_its_project_is_named_as_coco(tmp_path, capsys):
    """A folder holding a VIA 3 project and its "Export as COCO" file: the project converts, and the COCO
    file is said to be COCO, usable as it is, not "no entry with a 'filename'"."""
    src = tmp_path / "v3"
    src.mkdir()
    Image.fromarray(np.full((H, W, 3), 60, np.uint8)).save(src / "a.png")
    project = {
        "project": {"pname": "p", "vid_list": ["1"]}, "config": {"file": {"loc_prefix": {}}},
        "attribute": {"1": {"aname": "kind", "anchor_id": "FILE1_Z0_XY1", "type": 3,
                            "options": {"0": "cat"}}},
        "file": {"1": {"fid": "1", "fname": "a.png", "type": 2, "loc": 1, "src": ""}},
        "view": {"1": {"fid_list": ["1"]}},
        "metadata": {"1_a": {"vid": "1", "z": [], "xy": [2, 2, 2, 10, 8], "av": {"1": "0"}}},
    }  # fmt: skip
    (src / "via_project_p.json").write_text(json.dumps(project))
    export = {"info": {}, "images": [{"id": 1, "width": -1, "height": -1, "file_name": "a.png"}],
              "annotations": [{"id": 0, "image_id": 1, "category_id": 0,
                               "segmentation": [2, 2, 12, 2, 12, 10],
                               "area": None, "bbox": [None] * 4, "iscrowd": 0}],
              "categories": [{"id": 0, "name": "cat", "supercategory": "kind"}]}  # fmt: skip
    (src / "p_coco.json").write_text(json.dumps(export))
    out = tmp_path / "out.json"
    assert _convert(src, out) == 0
    err = capsys.readouterr().err
    assert "p_coco.json: a COCO instance file (VIA 3's \"Export as COCO\" writes one), not a VIA" in err
    coco = json.loads(out.read_text())
    assert coco["images"] == [{"id": 1, "file_name": "a.png", "height": H, "width": W}]
    assert [a["bbox"] for a in coco["annotations"]] == [[2.0, 2.0, 10.0, 8.0]]


def test_via_class_attribute_that_no_region_has_fails_once_naming_the_attributes(tmp_path, capsys):
    """--class-attribute typo (or a file attribute): one line naming the file's region attributes and a
    failed conversion, not a skip per region pointing at --class-name and an empty dataset with status 0.
    An attribute the project defines but no region has a value for is still a per-region skip."""
    Image.fromarray(np.full((H, W, 3), 60, np.uint8)).save(tmp_path / "a.png")
    species = {"type": "dropdown", "options": {"cat": "", "dog": ""}, "default_options": {}}
    size = {"type": "checkbox", "options": {"small": "", "big": ""}, "default_options": {}}
    regions = [_region(_rect(1, 1, 4, 3), species="cat", size={"small": True}),
               _region(_rect(10, 1, 4, 3), species="dog")]
    project = _project(regions, {"species": species, "size": size, "note": {"type": "text"}})
    project["_via_img_metadata"]["a.png1234"]["file_attributes"] = {"weather": "rain"}
    src = tmp_path / "p.json"
    src.write_text(json.dumps(project))
    for attribute, extra in (("typo", ""), ("weather", "; 'weather' is a file attribute (one per image, not "
                                                       "per region)")):
        out = tmp_path / f"{attribute}.json"
        assert _convert(src, out, "--class-attribute", attribute) == 1
        err = capsys.readouterr().err
        assert (f"p.json: no region has the class attribute {attribute!r} (--class-attribute; region "
                f"attributes: species, size, note){extra}; nothing converted") in err
        assert "--class-name gives" not in err
        assert not out.exists()
    # defined, never given: each region skipped, and no instance left fails (rev_d1 1: never an empty file)
    assert _convert(src, tmp_path / "note.json", "--class-attribute", "note") == 1
    assert capsys.readouterr().err.count("no value for the class attribute 'note'") == 2
    assert _convert(src, tmp_path / "size.json", "--class-attribute", "size") == 0
    assert _classes(tmp_path / "size.json") == ["small"]


def test_via_class_attribute_missing_from_one_file_takes_class_name_and_fails_once_when_in_none(tmp_path,
                                                                                            capsys):
    """rev_d1 2: the per-file check skipped ann_bob.json (no 'species', only 'note') whole, though
    --class-name gives such a region a class; and with no file having the attribute it said so once
    per file. Now its region takes --class-name, and a typo fails once for all files."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(np.full((H, W, 3), 60, np.uint8)).save(src / name)

    def export(filename, attrs):
        region = {"shape_attributes": _rect(1, 1, 4, 3), "region_attributes": attrs}
        return {filename + "1": {"filename": filename, "size": 1, "file_attributes": {}, "regions": [region]}}

    (src / "ann_alice.json").write_text(json.dumps(export("a.png", {"species": "cat"})))
    (src / "ann_bob.json").write_text(json.dumps(export("b.png", {"note": "blurry"})))
    out = tmp_path / "o.json"
    assert _convert(src, out, "--class-attribute", "species", "--class-name", "animal") == 0
    coco = json.loads(out.read_text())
    assert [i["file_name"] for i in coco["images"]] == ["a.png", "b.png"]
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert sorted(names[a["category_id"]] for a in coco["annotations"]) == ["animal", "cat"]
    capsys.readouterr()
    assert _convert(src, tmp_path / "t.json", "--class-attribute", "speces") == 1
    err = capsys.readouterr().err
    assert err.count("no region has the class attribute 'speces'") == 1, err
    assert "2 VIA files (ann_alice.json, ann_bob.json): no region has the class attribute 'speces' " \
           "(--class-attribute; region attributes: species, note); nothing converted" in err


def test_via_class_spaces_said_and_case_twins_warned(tmp_path, capsys):
    """" cat" and "cat\\n" were stripped without a word, and "Cat" beside "cat" became a class of its own
    silently: the stripping is said once per value, the case twins in one warning naming them."""
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(src / "a.jpg")
    regions = [_region(_rect(2 + 6 * i, 2, 4, 4), label=label) for i, label in
               enumerate(["cat", " cat", "cat\n", " cat", "Cat"])]
    (src / "via_region_data.json").write_text(json.dumps(_entry("a.jpg", regions)))
    out = tmp_path / "coco.json"
    assert _convert(src, out) == 0
    err = capsys.readouterr().err
    assert err.count("label ' cat' read as 'cat'") == 1 and err.count("label 'cat\\n' read as 'cat'") == 1
    assert ("warning: labels that differ only in case are separate classes: 'Cat' (1 instance), 'cat' "
            "(4 instances)") in err
    assert [c["name"] for c in json.loads(out.read_text())["categories"]] == ["Cat", "cat"]


def test_via_image_named_in_another_case_is_found(tmp_path, capsys):
    src = tmp_path / "via"
    src.mkdir()
    Image.fromarray(np.full((H, W, 3), 60, np.uint8)).save(src / "IMG_1.jpg")
    if (src / "IMG_1.JPG").is_file():
        return  # a file system that ignores case finds it anyway
    (src / "via.json").write_text(json.dumps(_entry("IMG_1.JPG", [_region(_rect(1, 1, 5, 5), label="cat")])))
    out = tmp_path / "out.json"
    assert _convert(src, out) == 0
    err = capsys.readouterr().err
    assert "IMG_1.JPG not found; using IMG_1.jpg, which differs from it only in case" in err
    coco = json.loads(out.read_text())
    assert [i["file_name"] for i in coco["images"]] == ["IMG_1.jpg"]
    assert coco["annotations"][0]["bbox"] == [1.0, 1.0, 5.0, 5.0]


def test_many_images_named_in_another_case_are_summed_up(tmp_path, capsys):
    """A whole dataset written as IMG_i.JPG for IMG_i.jpg printed one warning per image (10000 lines for
    10000 images): the first few are named, the rest said in one line of the summary."""
    src = tmp_path / "via"
    src.mkdir()
    entries = {}
    for i in range(6):
        Image.fromarray(np.full((H, W, 3), 60, np.uint8)).save(src / f"IMG_{i}.jpg")
        entries.update(_entry(f"IMG_{i}.JPG", [_region(_rect(1, 1, 5, 5), label="cat")]))
    if (src / "IMG_0.JPG").is_file():
        return  # a file system that ignores case finds them anyway
    (src / "via.json").write_text(json.dumps(entries))
    out = tmp_path / "out.json"
    assert _convert(src, out) == 0
    err = capsys.readouterr().err
    assert err.count("which differs from it only in case") == 3
    assert "6 images found under a name that differs from the one written only in case" in err
    assert len(json.loads(out.read_text())["images"]) == 6


def test_via2_image_listed_twice_keeps_the_entry_of_the_file_as_it_is(tmp_path, capsys):
    """VIA 2 keys images by name and size: a file changed and added again is listed twice. The entry whose
    size is the file's is converted, wherever it is listed; the stale one is skipped, its regions counted."""
    src = tmp_path / "via"
    src.mkdir()
    Image.fromarray(np.full((H, W, 3), 60, np.uint8)).save(src / "a.png")
    size = (src / "a.png").stat().st_size
    stale = {"filename": "a.png", "size": 12345, "file_attributes": {},
             "regions": [_region(_rect(20, 1, 5, 5), label="cat"), _region(_rect(30, 1, 5, 5), label="cat")]}
    current = {"filename": "a.png", "size": size, "file_attributes": {},
               "regions": [_region(_rect(1, 1, 5, 5), label="cat")]}
    (src / "via.json").write_text(json.dumps({"a.png12345": stale, f"a.png{size}": current}))
    out = tmp_path / "out.json"
    assert _convert(src, out) == 0
    err = capsys.readouterr().err
    assert (f"via.json: 'a.png12345': image a.png was converted already, from via.json; its 2 region(s) left "
            f"out; its size 12345 is not the file's {size} bytes") in err
    assert [a["bbox"] for a in json.loads(out.read_text())["annotations"]] == [[1.0, 1.0, 5.0, 5.0]]


def test_via2_options_named_by_their_descriptions(tmp_path, capsys):
    """VIA 2 regions hold a dropdown / radio / checkbox option's id ("1"), the annotator picked its
    description ("cat"), and VIA's own COCO export names the category by the description: the classes were
    "1" and "2". Now the description names the class when it is a non-empty string, else the id, said in a
    line."""
    Image.fromarray(np.full((H, W, 3), 60, np.uint8)).save(tmp_path / "a.png")
    for kind in ("dropdown", "radio", "checkbox"):
        species = {"type": kind, "description": "", "options": {"1": "cat", "2": " dog ", "3": ""},
                   "default_options": {}}

        values = [{o: True} if kind == "checkbox" else o for o in ("1", "2", "3")]
        regions = [_region(_rect(1 + 10 * k, 1, 4, 3), species=v) for k, v in enumerate(values)]
        src = tmp_path / f"{kind}.json"
        src.write_text(json.dumps(_project(regions, {"species": species})))
        out = tmp_path / f"o_{kind}.json"
        assert _convert(src, out) == 0
        assert _classes(out) == ["cat", "dog", "3"]
        err = capsys.readouterr().err
        assert (f"{kind}.json: warning: class names from the descriptions of the options of attribute "
                "'species', not their ids (as VIA's COCO export names them): 1 -> cat, 2 -> dog; options "
                "without a description keep their id: 3") in err
    # options without descriptions (VIA 3 translated, or ids typed as names): the ids, and no line
    plain = tmp_path / "plain.json"
    regions = [_region(_rect(1, 1, 4, 3), species="cat")]
    plain.write_text(json.dumps(_project(regions, {"species": {"type": "dropdown", "options": {"cat": ""}}})))
    assert _convert(plain, tmp_path / "o_plain.json") == 0
    assert _classes(tmp_path / "o_plain.json") == ["cat"]
    assert "descriptions" not in capsys.readouterr().err


def _cup_and_bird(tmp_path):
    """VIA 2's demo project's "type" dropdown (descriptions that are no short names) with a cup and a
    bird region, as a project file, and a second file (an export: no definitions) holding the id "cup"."""
    Image.fromarray(np.full((H, W, 3), 60, np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.full((H, W, 3), 60, np.uint8)).save(tmp_path / "b.png")
    options = {"bird": "Bird", "human": "Human", "cup": "Cup (object)", "unknown": "Unknown (object)"}
    kinds = {"type": "dropdown", "description": "", "default_options": {}, "options": options}
    regions = [_region(_rect(1, 1, 4, 3), type="cup"), _region(_rect(11, 1, 4, 3), type="bird")]
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a_project.json").write_text(
        json.dumps(_project(regions, {"type": kinds})).replace('"a.png"', '"../a.png"'))
    (tmp_path / "src" / "b_export.json").write_text(
        json.dumps(_entry("../b.png", [_region(_rect(1, 1, 4, 3), type="cup")])))
    return tmp_path / "src"


def test_via2_classes_given_by_option_id_name_the_described_class(tmp_path, capsys):
    """The classes were the option ids (cup, bird) before descriptions named them: ``--classes cup,bird``
    (scripts, README recipes) then converted nothing, every region's 'Cup (object)' / 'Bird' being no
    listed class. An id in --classes now stands for its option, the class named by its description with
    the number --classes gives it; a file without the definitions (regions holding "cup") joins it. The
    warning says how the ids map and which classes a model trained on the ids will not find."""
    src = _cup_and_bird(tmp_path)
    out = tmp_path / "o.json"
    assert _convert(src, out, "--classes", "cup,bird") == 0
    coco = json.loads(out.read_text())
    assert [(c["id"], c["name"]) for c in coco["categories"]] == [(1, "Cup (object)"), (2, "Bird")]
    assert sorted(_classes(out)) == ["Bird", "Cup (object)", "Cup (object)"]
    err = capsys.readouterr().err
    assert ("a_project.json: warning: class names from the descriptions of the options of attribute 'type', "
            "not their ids (as VIA's COCO export names them): bird -> Bird, human -> Human, cup -> Cup "
            "(object), unknown -> Unknown (object); --classes bird, cup (option ids) read as Bird, Cup "
            "(object); a model trained on the ids as class names (earlier conversions) matches none of Cup "
            "(object), Unknown (object) when fine-tuned: they start anew") in err
    assert "skipped 0 record(s)" in err
    # ids and descriptions mixed: the same classes
    assert _convert(src, tmp_path / "mixed.json", "--classes", "Cup (object),bird") == 0
    assert _classes(tmp_path / "mixed.json") == _classes(out)


def test_via2_unknown_label_says_which_option_id_it_was_read_from(tmp_path, capsys):
    """A region whose option is no listed class: the line names the id it holds, not only the
    description ('Bird' is not one of the classes ['cup'] left the user wondering where 'Bird' came from)."""
    src = _cup_and_bird(tmp_path)
    assert _convert(src, tmp_path / "o.json", "--classes", "cup") == 0
    err = capsys.readouterr().err
    assert ("a_project.json: 'a.png1234' regions[1]: label 'Bird' is not one of the classes ['Cup (object)'] "
            "(the description of option id 'bird' of attribute 'type', which the region holds; --classes "
            "takes the id or the description); skipped") in err
    assert _classes(tmp_path / "o.json") == ["Cup (object)", "Cup (object)"]
