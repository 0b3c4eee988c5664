"""convert-data and merge-data print class names in their summary lines as show-data does: a newline or
tab in a name escaped (``'line\\nbreak'``), not breaking the line."""

import json

from PIL import Image

from maskrcnn.cli import main


def test_convert_and_merge_summaries_escape_control_characters_in_class_names(tmp_path, capsys):
    Image.new("RGB", (40, 30)).save(tmp_path / "a.png")
    shapes = [{"label": label, "points": [[2, 2], [20, 2], [20, 20]], "group_id": None, "description": "",
               "shape_type": "polygon", "flags": {}} for label in ("line\nbreak", "tab\there")]
    (tmp_path / "lm").mkdir()
    (tmp_path / "lm" / "a.json").write_text(json.dumps(
        {"version": "5.5.0", "flags": {}, "shapes": shapes, "imagePath": "../a.png", "imageData": None,
         "imageHeight": 30, "imageWidth": 40}))
    out = tmp_path / "c.json"
    assert main(["convert-data", "--from", "labelme", str(tmp_path / "lm"), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"1 images, 2 instances ('line\\nbreak' 1, 'tab\\there' 1), 0 crowd regions -> {out}" in printed

    merged = tmp_path / "m.json"
    assert main(["merge-data", f"{out}:{tmp_path}", "--output", str(merged)]) == 0
    printed = capsys.readouterr().out
    assert f"2 classes (1 'line\\nbreak', 2 'tab\\there') -> {merged}" in printed, printed
    assert "annotations ('line\\nbreak' 1, 'tab\\there' 1)" in printed, printed


def test_names_equal_but_for_surrounding_spaces_are_one_rule_across_export_and_readers(tmp_path, capsys):
    """'x' and 'x ' were two classes in the export, but the LabelMe / CVAT / YOLO readers strip the spaces
    (merging or refusing them) while the Label Studio reader kept 'x '. Now the export tells them apart as
    exact repeats are ('x (id 4)'), and the Label Studio reader strips as the others do."""
    from maskrcnn.data.pre_annotations.instances import categories_of

    cats = categories_of(["__background__", "x", "x ", "y"], {1: 4, 2: 5, 3: 6})
    assert [c.name for c in cats] == ["x (id 4)", "x (id 5)", "y"]
    assert [c.name for c in categories_of(["__background__", "a", "b"])] == ["a", "b"]

    Image.new("RGB", (40, 30)).save(tmp_path / "a.png")
    tasks = [{"id": 1, "data": {"image": "a.png"}, "annotations": [{"result": [
        {"type": "rectanglelabels", "from_name": "label", "to_name": "image", "original_width": 40,
         "original_height": 30, "value": {"x": 10, "y": 10, "width": 50, "height": 50,
                                          "rectanglelabels": [" box "]}}]}]}]
    (tmp_path / "tasks.json").write_text(json.dumps(tasks))
    out = tmp_path / "o.json"
    assert main(["convert-data", "--from", "labelstudio", str(tmp_path / "tasks.json"), "--images",
                 str(tmp_path), "--output", str(out)]) == 0
    assert [c["name"] for c in json.loads(out.read_text())["categories"]] == ["box"]
    assert "label ' box ' read as 'box'" in capsys.readouterr().err
