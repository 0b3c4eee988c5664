"""convert-data imports keypoints: CVAT skeletons and Label Studio ``keypointlabels`` become COCO keypoint
instances (they were only counted as left out, and a keypoint-only file was refused as holding "no
object"). Coordinates: the tools' continuous ones less half a pixel (this project's COCO keypoints are
pixel indices); visibility 2 visible, 1 occluded, 0 outside or missing."""

import json

import numpy as np
from PIL import Image

from maskrcnn.cli import main
from maskrcnn.data.coco import CocoDataset

H, W = 32, 48


def _png(path, size=(H, W)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), 90, np.uint8)).save(path)


def _read(path):
    return json.loads(path.read_text(encoding="utf-8"))


# CVAT's meta for a skeleton: its points listed as labels whose <parent> is it; the svg (escaped, as CVAT
# writes it) names the nodes by circles and joins them by lines: head-neck, neck-tail
_SVG = "".join(f'&lt;line data-type="edge" data-node-from="{a}" data-node-to="{b}"&gt;&lt;/line&gt;'
               for a, b in ((1, 2), (2, 3))) + "".join(
    f'&lt;circle data-type="element node" data-node-id="{i}" data-label-name="{n}"&gt;&lt;/circle&gt;'
    for i, n in ((1, "head"), (2, "neck"), (3, "tail")))
_META = ("<meta><task><labels><label><name>critter</name><type>skeleton</type><svg>" + _SVG + "</svg></label>"
         + "".join(f"<label><name>{n}</name><type>points</type><parent>critter</parent></label>"
                   for n in ("head", "neck", "tail"))
         + "</labels></task></meta>")


def _cvat(images, meta=_META):
    return ('<?xml version="1.0" encoding="utf-8"?>\n<annotations><version>1.1</version>' + meta
            + "".join(images) + "</annotations>\n")


def _point(label, x, y, *, outside=0, occluded=0):
    return (f'<points label="{label}" outside="{outside}" occluded="{occluded}" points="{x},{y}">'
            f'</points>')


def test_cvat_two_skeletons_in_one_image_become_keypoint_instances(tmp_path, capsys):
    """One skeleton grouped with a box (its instance: the box's bbox and mask, the skeleton's points),
    one alone (boxed by its labelled points). Points listed out of <meta>'s order, one occluded, one
    outside, one missing: keypoints in meta's order with v 1 / 0 / 0; the edges from the svg's circles."""
    _png(tmp_path / "a.png")
    image = ('<image id="0" name="a.png" width="48" height="32">'
             '<box label="critter" xtl="2" ytl="3" xbr="20" ybr="25" group_id="7"></box>'
             '<skeleton label="critter" group_id="7">' + _point("tail", 15.5, 20.25) + _point("head", 5, 6)
             + _point("neck", 0, 0, outside=1) + "</skeleton>"
             '<skeleton label="critter">' + _point("neck", 30.5, 10.5, occluded=1) + _point("head", 28, 4.5)
             + "</skeleton></image>")
    (tmp_path / "annotations.xml").write_text(_cvat([image]), encoding="utf-8")
    out = tmp_path / "o.json"
    assert main(["convert-data", "--from", "cvat", str(tmp_path), "--output", str(out)]) == 0
    err = capsys.readouterr().err
    coco = _read(out)
    assert coco["categories"] == [{"id": 1, "name": "critter", "keypoints": ["head", "neck", "tail"],
                                   "skeleton": [[1, 2], [2, 3]]}]
    grouped, alone = coco["annotations"]
    assert grouped["keypoints"] == [4.5, 5.5, 2, 0.0, 0.0, 0, 15.0, 19.75, 2]
    assert grouped["num_keypoints"] == 2
    assert grouped["bbox"] == [2.0, 3.0, 18.0, 22.0] and grouped["segmentation"]  # the box's, as a polygon
    assert alone["keypoints"] == [27.5, 4.0, 2, 30.0, 10.0, 1, 0.0, 0.0, 0] and alone["num_keypoints"] == 2
    assert alone["bbox"] == [28.0, 4.5, 2.5, 6.0] and alone["area"] == 15.0 and alone["segmentation"] == []
    assert "1 CVAT skeletons boxed by their keypoints' extent" in err
    # training reads it as a keypoint dataset: the set, its skeleton, both instances' points
    dataset = CocoDataset(json_path=out, image_dir=tmp_path, keypoints=True)
    assert dataset.keypoint_names == ["head", "neck", "tail"] and dataset.skipped == {}
    _, target = dataset[0]
    assert target["keypoints"].shape == (2, 3, 3)
    assert target["keypoints"][1].tolist() == [[27.5, 4.0, 2.0], [30.0, 10.0, 1.0], [0.0, 0.0, 0.0]]


def test_cvat_skeleton_only_file_without_meta_converts(tmp_path, capsys):
    """A skeleton-only file was refused ("the annotations hold no object"). Without <meta> the names
    come in the order met (said in one line), no skeleton edges; a skeleton with no labelled point has
    no box: skipped, named."""
    _png(tmp_path / "a.png")
    image = ('<image id="0" name="a.png" width="48" height="32">'
             '<skeleton label="critter">' + _point("tail", 10, 20) + _point("head", 4, 2) + "</skeleton>"
             '<skeleton label="critter">' + _point("tail", 0, 0, outside=1) + "</skeleton></image>")
    (tmp_path / "annotations.xml").write_text(_cvat([image], meta=""), encoding="utf-8")
    out = tmp_path / "o.json"
    assert main(["convert-data", "--from", "cvat", str(tmp_path), "--output", str(out)]) == 0
    err = capsys.readouterr().err
    coco = _read(out)
    assert coco["categories"] == [{"id": 1, "name": "critter", "keypoints": ["tail", "head"], "skeleton": []}]
    (ann,) = coco["annotations"]
    assert ann["keypoints"] == [9.5, 19.5, 2, 3.5, 1.5, 2] and ann["bbox"] == [4.0, 2.0, 6.0, 18.0]
    assert "category 'critter': keypoints in the order first met (tail, head)" in err
    assert "shape [1] <skeleton> (label 'critter'): no keypoint is labelled" in err


def test_cvat_points_only_file_refusal_says_what_it_holds(tmp_path, capsys):
    """Free points (no skeleton) are still not imported: the refusal says what the file holds and how
    to get a file that trains, not "the annotations hold no object"."""
    _png(tmp_path / "a.png")
    image = '<image id="0" name="a.png" width="48" height="32"><points label="nose" points="3,4"/></image>'
    (tmp_path / "annotations.xml").write_text(_cvat([image], meta=""), encoding="utf-8")
    assert main(["convert-data", "--from", "cvat", str(tmp_path), "--output", str(tmp_path / "o.json")]) == 1
    err = capsys.readouterr().err
    assert "what it holds is not imported: 1 CVAT points shapes left out (no area)" in err
    assert 'COCO Keypoints 1.0' in err and "hold no object" not in err


def _ls_result(rid, kind, labels, **value):
    return {"id": rid, "type": kind, "from_name": "label", "to_name": "image", "original_width": W,
            "original_height": H, "image_rotation": 0, "value": {**value, kind: labels}}


def _ls_file(tmp_path, results):
    _png(tmp_path / "a.png")
    tasks = [{"id": 1, "data": {"image": "/data/upload/1/a.png"},
              "annotations": [{"id": 1, "result": results}]}]
    (tmp_path / "export.json").write_text(json.dumps(tasks), encoding="utf-8")
    return tmp_path / "export.json"


def _kp(rid, name, x, y, parent=None):
    r = _ls_result(rid, "keypointlabels", [name], x=x, y=y, width=0.5)
    if parent is not None:
        r["parentID"] = parent
    return r


def test_labelstudio_keypoints_by_parent_id_and_by_the_smallest_region_holding_them(tmp_path, capsys):
    """A big and a small rectangle, the small inside the big. Keypoints with a parentID go to the region
    it names, even inside the small one; without, to the smallest region holding them that has no
    keypoint of that name yet; one in no region, or whose name every region holding it has, is left out
    and counted. Names in COCO's order (all are COCO's)."""
    big = _ls_result("big", "rectanglelabels", ["person"], x=0, y=0, width=50, height=100)
    small = _ls_result("small", "rectanglelabels", ["person"], x=25, y=50, width=25, height=50)
    src = _ls_file(tmp_path, [big, small,
                              _kp("k1", "right_eye", 30, 60, parent="big"),  # inside small; parent: big
                              _kp("k2", "nose", 40, 75),  # in both: the smaller
                              _kp("k3", "nose", 45, 90),  # in both, the smaller has a nose: the big
                              _kp("k4", "nose", 30, 60),  # in both, each has a nose: left out
                              _kp("k5", "nose", 90, 10)])  # in none: left out
    out = tmp_path / "o.json"
    assert main(["convert-data", "--from", "labelstudio", str(src), "--output", str(out)]) == 0
    err = capsys.readouterr().err
    coco = _read(out)
    assert coco["categories"][0]["keypoints"] == ["nose", "right_eye"]
    first, second = coco["annotations"]
    # 45% of 48 = 21.6 px, 90% of 32 = 28.8 px: less half a pixel
    assert first["keypoints"] == [21.1, 28.3, 2, 13.9, 18.7, 2] and first["bbox"] == [0.0, 0.0, 24.0, 32.0]
    assert second["keypoints"] == [18.7, 23.5, 2, 0.0, 0.0, 0] and second["num_keypoints"] == 1
    assert "1 Label Studio keypoints in no region of their annotation (object unknown), left out" in err
    assert "1 Label Studio keypoints of a name their region already holds, left out" in err
    dataset = CocoDataset(json_path=out, image_dir=tmp_path, keypoints=True)
    assert dataset.keypoint_names == ["nose", "right_eye"] and len(dataset) == 1


def test_labelstudio_keypoint_only_file_refusal_says_what_it_holds(tmp_path, capsys):
    """Keypoints with no region: their object is unknown, nothing is guessed; the refusal says so."""
    src = _ls_file(tmp_path, [_kp("k1", "nose", 10, 10), _kp("k2", "left_eye", 12, 10)])
    out = tmp_path / "o.json"
    assert main(["convert-data", "--from", "labelstudio", str(src), "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert ("what it holds is not imported: 2 Label Studio keypoints in no region of their annotation "
            "(object unknown), left out; to import keypoints, draw a rectangle or polygon") in err
    assert "hold no object" not in err


def test_labelstudio_json_min_keypoints_go_to_the_region_holding_them(tmp_path, capsys):
    """JSON-MIN keeps no ids nor parentID: a keypoint is the region's that holds it."""
    _png(tmp_path / "a.png")
    records = [{"image": "/data/upload/1/a.png", "id": 1, "annotation_id": 1,
                "label": [{"x": 50, "y": 0, "width": 50, "height": 50, "rectanglelabels": ["person"],
                           "original_width": W, "original_height": H}],
                "kp": [{"x": 75, "y": 25, "width": 0.5, "keypointlabels": ["tail"],
                        "original_width": W, "original_height": H}]}]
    (tmp_path / "min.json").write_text(json.dumps(records), encoding="utf-8")
    src, out = tmp_path / "min.json", tmp_path / "o.json"
    assert main(["convert-data", "--from", "labelstudio", str(src), "--output", str(out)]) == 0
    coco = _read(out)
    assert coco["categories"] == [{"id": 1, "name": "person", "keypoints": ["tail"], "skeleton": []}]
    assert coco["annotations"][0]["keypoints"] == [35.5, 7.5, 2]  # 75% of 48, 25% of 32, less 0.5


def test_cvat_skeleton_label_pairs_with_the_box_of_another_label_in_its_group(tmp_path, capsys):
    """CVAT's real layout: a skeleton label draws only skeletons, so a person is a 'person' box grouped
    with a 'critter' skeleton. They were paired only within one label: two boxes without keypoints beside
    two skeletons boxed by their points (4 instances in 2 classes). Now one instance per group, of the
    box's class, which carries the skeleton's set in <meta>'s order; the skeleton label stays <meta>'s
    class without instances (splits converted apart number alike), said in one line. A
    group holding two regions of other labels pairs none: the skeleton is written apart, said once."""
    _png(tmp_path / "a.png")
    meta = _META.replace("<labels>", "<labels><label><name>person</name><type>rectangle</type></label>"
                                     "<label><name>bag</name><type>rectangle</type></label>")
    image = ('<image id="0" name="a.png" width="48" height="32">'
             '<box label="person" xtl="2" ytl="3" xbr="20" ybr="25" group_id="1"></box>'
             '<skeleton label="critter" group_id="1">' + _point("tail", 15.5, 20.5) + _point("head", 5.5, 6.5)
             + "</skeleton>"
             '<box label="person" xtl="22" ytl="2" xbr="40" ybr="30" group_id="2"></box>'
             '<skeleton label="critter" group_id="2">' + _point("head", 30.5, 4.5) + _point("neck", 31, 12)
             + "</skeleton></image>")
    (tmp_path / "annotations.xml").write_text(_cvat([image], meta), encoding="utf-8")
    out = tmp_path / "o.json"
    assert main(["convert-data", "--from", "cvat", str(tmp_path), "--output", str(out)]) == 0
    coco = _read(out)
    kp_set = {"keypoints": ["head", "neck", "tail"], "skeleton": [[1, 2], [2, 3]]}
    assert coco["categories"] == [{"id": 1, "name": "person", **kp_set}, {"id": 2, "name": "bag"},
                                  {"id": 3, "name": "critter", **kp_set}]
    first, second = coco["annotations"]
    assert first["bbox"] == [2.0, 3.0, 18.0, 22.0] and first["category_id"] == 1
    assert first["keypoints"] == [5.0, 6.0, 2, 0.0, 0.0, 0, 15.0, 20.0, 2]
    assert second["keypoints"] == [30.0, 4.0, 2, 30.5, 11.5, 2, 0.0, 0.0, 0]
    err = capsys.readouterr().err
    assert "boxed by their keypoints" not in err
    assert "skeleton label(s) critter: every skeleton went onto the region grouped with it" in err
    # a group with a person and a bag box: which one the skeleton is is unknown
    image = image.replace('<box label="person" xtl="22" ytl="2" xbr="40" ybr="30" group_id="2"></box>',
                          '<box label="person" xtl="22" ytl="2" xbr="40" ybr="30" group_id="2"></box>'
                          '<box label="bag" xtl="24" ytl="20" xbr="30" ybr="28" group_id="2"></box>')
    (tmp_path / "annotations.xml").write_text(_cvat([image], meta), encoding="utf-8")
    assert main(["convert-data", "--from", "cvat", str(tmp_path), "--output", str(out)]) == 0
    err = capsys.readouterr().err
    coco = _read(out)
    assert [c["name"] for c in coco["categories"]] == ["person", "bag", "critter"]
    assert len(coco["annotations"]) == 4 and coco["annotations"][-1]["category_id"] == 3
    assert "group 2, which holds regions of labels bag, person" in err
    assert "1 CVAT skeletons in a group of several regions" in err


def test_labelstudio_keypoints_among_overlapping_regions_are_counted_and_stay_with_their_class(tmp_path,
                                                                                                 capsys):
    """Without parentID, a keypoint in two overlapping people went to one of them silently (the order of
    the results decided); now each is counted in one line saying to select the region. A person's wrist
    inside a hand box goes to the person, whose class names the wrist already, not to the smaller hand;
    a wrist held only by a hand box is left out, counted, rather than adding 'left_wrist' to 'hand'."""
    regions = [_ls_result("A", "rectanglelabels", ["person"], x=0, y=0, width=50, height=100),
               _ls_result("B", "rectanglelabels", ["person"], x=40, y=0, width=55, height=100),
               _ls_result("h", "rectanglelabels", ["hand"], x=10, y=40, width=10, height=20),
               _ls_result("h2", "rectanglelabels", ["hand"], x=96, y=40, width=3, height=20)]
    src = _ls_file(tmp_path, regions + [_kp("k1", "left_wrist", 80, 50),  # in B only
                                        _kp("k2", "left_wrist", 15, 50),  # in A and the hand: A
                                        _kp("k3", "nose", 45, 10),  # in A and B: counted, the smaller A
                                        _kp("k4", "left_wrist", 97, 50)])  # in a hand only: left out
    out = tmp_path / "o.json"
    assert main(["convert-data", "--from", "labelstudio", str(src), "--output", str(out)]) == 0
    err = capsys.readouterr().err
    coco = _read(out)
    person, = (c for c in coco["categories"] if c["name"] == "person")
    assert person["keypoints"] == ["nose", "left_wrist"]
    assert all("keypoints" not in c for c in coco["categories"] if c["name"] == "hand")
    a, b = (x for x in coco["annotations"] if x["category_id"] == person["id"])
    assert a["keypoints"] == [21.1, 2.7, 2, 6.7, 15.5, 2] and b["keypoints"] == [0.0, 0.0, 0, 37.9, 15.5, 2]
    assert ("1 Label Studio keypoints assigned by containment among overlapping regions: select their "
            "region when placing them so Label Studio writes parentID") in err
    assert "1 Label Studio keypoints only in regions of classes whose keypoints lack their name" in err


def test_cvat_video_skeleton_track_leaving_the_view_is_an_outside_shape(tmp_path, capsys):
    """A skeleton track leaving the view: CVAT writes the <skeleton> without 'outside', every <points> of
    it outside="1". It was a skipped record ("no keypoint is labelled") at each track end; now it is left
    out with the other shapes outside the view."""
    for frame in range(3):
        _png(tmp_path / "images" / f"frame_{frame:06d}.PNG")
    meta = _META.replace("<task>", "<task><size>3</size><mode>interpolation</mode><start_frame>0"
                                   "</start_frame><stop_frame>2</stop_frame>")
    track = ('<track id="0" label="critter">' + "".join(
        f'<skeleton frame="{f}" keyframe="1">' + _point("head", 10 + f, 8, outside=int(f == 2))
        + _point("tail", 30 + f, 20, outside=int(f == 2)) + "</skeleton>" for f in range(3)) + "</track>")
    (tmp_path / "annotations.xml").write_text(_cvat([track], meta), encoding="utf-8")
    out = tmp_path / "o.json"
    assert main(["convert-data", "--from", "cvat", str(tmp_path), "--output", str(out)]) == 0
    captured = capsys.readouterr()
    err = captured.err + captured.out
    assert len(_read(out)["annotations"]) == 2
    assert "no keypoint is labelled" not in err and "no_keypoints" not in err
    assert "1 CVAT track shapes outside the view left out" in err


def test_the_not_imported_line_lists_only_kinds_that_are_not_imported():
    """Every note holding "left out" was listed as "what it holds is not imported", shapes outside a
    video's view too, though shapes of that kind are imported where they are in view."""
    import io

    from maskrcnn.data.formats.common import Report
    from maskrcnn.data.formats.left_out import left_out_line

    report = Report(stream=io.StringIO())
    report.note("CVAT track shapes outside the view left out", 3)
    report.note("cancelled annotations left out", 2)
    assert left_out_line(report) is None
    report.note("CVAT points shapes left out (no area)", 4)
    line = left_out_line(report)
    assert line.startswith("what it holds is not imported: 4 CVAT points shapes left out (no area); ")
    assert "outside the view" not in line and "cancelled" not in line


def test_cvat_skeleton_edges_to_a_node_naming_no_point_are_said(tmp_path, capsys):
    """An svg whose node 3 has a circle without data-label-name: its edge was dropped silently."""
    _png(tmp_path / "a.png")
    meta = _META.replace('data-node-id="3" data-label-name="tail"', 'data-node-id="3"')
    image = ('<image id="0" name="a.png" width="48" height="32"><skeleton label="critter">'
             + _point("head", 5, 6) + _point("neck", 15, 20) + "</skeleton></image>")
    (tmp_path / "annotations.xml").write_text(_cvat([image], meta), encoding="utf-8")
    out = tmp_path / "o.json"
    assert main(["convert-data", "--from", "cvat", str(tmp_path), "--output", str(out)]) == 0
    captured = capsys.readouterr()
    assert _read(out)["categories"][0]["skeleton"] == [[1, 2]]
    assert "skeleton label 'critter': 1 edge(s) of its <svg> left out" in captured.out + captured.err
