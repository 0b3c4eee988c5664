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
