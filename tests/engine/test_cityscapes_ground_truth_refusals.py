"""eval --cityscapes on ground truth the scorer cannot use: a decompression-bomb instanceIds PNG, a polygons
file whose imgHeight / imgWidth is bogus or over the pixel limit, one that is not JSON. Each was a
traceback, a 7.6 GiB mask per detection, or an error naming no file; now one line naming the file (and
the field), before the results are read. Runs whether or not cityscapesscripts is installed."""

import json
import re
import struct
import zlib

import pytest

from maskrcnn.cli import main
from maskrcnn.engine.cityscapes_eval import ground_truth_size

_STEM = "lindau_000000_000019"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header_only(path, width: int, height: int) -> None:
    """A PNG whose header claims width x height (16-bit gray) and that holds no pixels: PIL reads the size
    from the header, nothing of that size is ever allocated."""
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IEND", b""))


def _dataset(tmp_path):
    """(root, its gtFine folder, a COCO JSON of one 8x8 Cityscapes-named image)."""
    root = tmp_path / "cs"
    folder = root / "gtFine" / "val" / "lindau"
    folder.mkdir(parents=True)
    gt = tmp_path / "cs_val.json"
    gt.write_text(json.dumps({
        "images": [{"id": 1, "file_name": f"leftImg8bit/val/lindau/{_STEM}_leftImg8bit.png",
                    "height": 8, "width": 8}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 26, "bbox": [1, 1, 4, 4], "area": 16,
                         "iscrowd": 0, "segmentation": [[1, 1, 5, 1, 5, 5, 1, 5]]}],
        "categories": [{"id": 26, "name": "car"}]}))
    return root, folder, gt


def _eval(tmp_path, root, gt, capsys) -> str:
    absent = tmp_path / "absent_results.json"
    code = main(["eval", "--json", str(gt), "--results", str(absent), "--cityscapes", str(root)])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "absent_results" not in err and "Traceback" not in err, err  # refused before the results
    return err


def test_a_decompression_bomb_instance_ids_png_is_one_line_naming_it(tmp_path, scorer_installed, capsys):
    root, folder, gt = _dataset(tmp_path)
    png = folder / f"{_STEM}_gtFine_instanceIds.png"
    _png_header_only(png, 30000, 30000)  # 900 MP, 67 bytes
    assert png.stat().st_size < 100
    err = _eval(tmp_path, root, gt, capsys)
    assert f"maskrcnn eval: error: --cityscapes {root}: {png}: image too large (900 MP > limit 179 MP; " \
           "raise it with the environment variable MASKRCNN_MAX_IMAGE_PIXELS" in err, err
    assert len(err.strip().splitlines()) == 1, err
    # the same refusal from the function the scoring calls, and a header under the limit is read
    with pytest.raises(ValueError, match=r"image too large \(900 MP > limit"):
        ground_truth_size(png, folder / "absent_polygons.json")
    _png_header_only(png, 16, 8)
    assert ground_truth_size(png, folder / "absent_polygons.json") == (8, 16)


def _polygons(folder, data) -> object:
    path = folder / f"{_STEM}_gtFine_polygons.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_a_polygons_size_over_the_pixel_limit_or_not_a_positive_whole_number_is_refused(
        tmp_path, scorer_installed, capsys):
    root, folder, gt = _dataset(tmp_path)
    # the 1:2 shape of a 256x128 image, at 8 gigapixels: each prediction mask was resized to it
    path = _polygons(folder, {"imgHeight": 64000, "imgWidth": 128000, "objects": []})
    err = _eval(tmp_path, root, gt, capsys)
    assert f"--cityscapes {root}: {path}: imgWidth x imgHeight: image too large (128000x64000 = 8192 MP > " \
           "limit 179 MP" in err, err
    absent_png = folder / "absent.png"
    for field, value in (("imgHeight", 0), ("imgHeight", -8), ("imgWidth", "8.5"), ("imgWidth", "eight"),
                         ("imgWidth", True), ("imgHeight", 7.5), ("imgWidth", None), ("imgHeight", "-8")):
        data = {"imgHeight": 8, "imgWidth": 8, "objects": []}
        data[field] = value
        _polygons(folder, data)
        with pytest.raises(ValueError) as e:
            ground_truth_size(absent_png, path)
        assert str(e.value).startswith(f"{path}: {field} {value!r} is not a positive whole number"), e.value
    _polygons(folder, {"imgHeight": 8, "imgWidth": 16.0, "objects": []})  # a whole float, as some write it
    assert ground_truth_size(absent_png, path) == (8, 16)
    # sizes written as text: the official scorer reads them with int(), so they are sizes here too
    _polygons(folder, {"imgHeight": "8", "imgWidth": "16", "objects": []})
    assert ground_truth_size(absent_png, path) == (8, 16)


def test_a_size_written_as_text_is_taken_only_as_decimal_digits_as_the_scorers_int_reads_it(tmp_path):
    """Before: "1e3", "16.0" and "1_6" went through float() and were taken as sizes, though the text the
    scorer's int() reads is digits only (with spaces around)."""
    path = _polygons(tmp_path, {"imgHeight": " 8\n", "imgWidth": "16", "objects": []})
    assert ground_truth_size(tmp_path / "absent.png", path) == (8, 16)
    for value in ("1e1", "16.0", "1_6", "+16", "0x10", ""):
        _polygons(tmp_path, {"imgHeight": 8, "imgWidth": value, "objects": []})
        with pytest.raises(ValueError, match=re.escape(f"imgWidth {value!r} is not a positive whole number")):
            ground_truth_size(tmp_path / "absent.png", path)


def test_a_polygons_file_that_is_not_json_or_of_the_wrong_types_is_named(tmp_path, scorer_installed, capsys):
    root, folder, gt = _dataset(tmp_path)
    n = 100000
    path = _polygons(folder, '{"a":' * n + "1" + "}" * n)
    err = _eval(tmp_path, root, gt, capsys)
    assert f"--cityscapes {root}: {path}: not readable JSON (nested too deeply)" in err, err
    absent_png = folder / "absent.png"
    not_json = "not readable JSON (Expecting value: line 1 column 1 (char 0))"
    for text, said in (("imgHeight: 8", not_json), ("\x00" * 4096, not_json),
                       ("[8, 8]", "holds a JSON list, expected an object with imgHeight, imgWidth and "
                                  "objects"),
                       ('{"imgHeight": 8, "imgWidth": 8, "objects": {"label": "car"}}',
                        "objects {'label': 'car'} is not a list of objects"),
                       ('{"imgHeight": 8, "imgWidth": 8}', "objects None is not a list of objects")):
        _polygons(folder, text)
        with pytest.raises(ValueError) as e:
            ground_truth_size(absent_png, path)
        assert str(e.value) == f"{path}: {said}", e.value
    # neither file: None, as before (check_root names the missing files)
    path.unlink()
    assert ground_truth_size(absent_png, path) is None


def test_with_only_some_images_evaluated_a_bad_ground_truth_is_left_to_the_scoring(tmp_path):
    """--max-images evaluates only some images: check_root passes over one whose ground truth the scorer
    cannot use (it may not be evaluated); evaluating it refuses it, naming the file."""
    from maskrcnn.engine.cityscapes_eval import check_root

    root, folder, gt = _dataset(tmp_path)
    path = _polygons(folder, {"imgHeight": 64000, "imgWidth": 128000, "objects": []})
    raw = json.loads(gt.read_text())
    check_root(root, raw, every_image=False)
    with pytest.raises(ValueError, match="image too large"):
        check_root(root, raw, given="G: ")
    assert path.is_file()
