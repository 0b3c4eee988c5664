"""Names as pictures, figures and tables show them (maskrcnn.shown_text), and the drawing defaults that go
with them: a probe drew a checkpoint whose class names held "$\\frac{$", a newline, a tab and 300
characters (eval --analysis crashed; labels covered the image; tables were 376 columns wide)."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from maskrcnn.shown_text import NAME_COLUMNS, display_name, mpl_literal, short_name, shorten
from maskrcnn.text_width import display_width


def test_display_name_escapes_control_characters_only():
    assert display_name("cat") == "cat"
    assert display_name("") == "''"
    assert display_name("new\nline\ttab") == "'new\\nline\\ttab'"
    assert display_name("red\x1b[31m\x7f") == "'red\\x1b[31m\\x7f'"
    assert display_name("a\u2028b") == "'a\\u2028b'"  # a line separator breaks a line too
    for kept in ("猫", "مثلث أحمر", "👩\u200d🔬", "a&b\"c'd", "%s {}"):  # joiners and quotes as written
        assert display_name(kept) == kept


def test_display_name_escapes_backslashes_when_quoted():
    """A name typed as a backslash and an n looked like one holding a real newline."""
    assert display_name("a\nb") == "'a\\nb'"
    assert display_name("a\\nb\t") == "'a\\\\nb\\t'"  # backslash-n and a tab: told apart
    assert display_name("\tx\\") == "'\\tx\\\\'"  # was '\tx\' (the quote looked escaped)
    assert display_name("C:\\data") == "C:\\data"  # nothing escaped: as written


def test_display_name_escapes_bidi_controls_only():
    """U+202E before "cat 0.91" drew "19.0 tac": the nine embedding / override / isolate controls."""
    for code in (*range(0x202A, 0x202F), *range(0x2066, 0x206A)):
        assert display_name(f"{chr(code)}cat") == f"'\\u{code:04x}cat'"
    for kept in ("مثلث", "עברית", "👩\u200d🔬", "a\u200eb"):  # letters, ZWJ, LRM: as written
        assert display_name(kept) == kept


def test_short_name_cuts_between_whole_escapes_and_keeps_the_closing_quote():
    cut = short_name("a" * 35 + "\u2028b")  # was 'aaaa…a\u2…: an escape cut in two, no closing quote
    assert cut == "'" + "a" * 35 + "…'"
    assert short_name("a" * 30 + "\\" * 10 + "\n") == "'" + "a" * 30 + "\\\\" * 3 + "…'"
    assert short_name("\n" * 30, 10) == "'\\n\\n\\n…'"
    for name in ("x" * 37 + "\t", "\u202e" * 20 + "y", "葉" * 18 + "\n"):
        shown = short_name(name)
        assert shown.startswith("'") and shown.endswith("'") and display_width(shown) <= NAME_COLUMNS


def test_shorten_to_display_columns_with_an_ellipsis():
    assert shorten("x" * NAME_COLUMNS) == "x" * NAME_COLUMNS  # fits: unchanged
    long = shorten("N" * 300)
    assert long == "N" * (NAME_COLUMNS - 1) + "…" and display_width(long) == NAME_COLUMNS
    wide = shorten("葉" * 30)  # 2 columns each: 19 of them and "…" make 39 columns, a 20th would be 41
    assert wide == "葉" * 19 + "…" and display_width(wide) <= NAME_COLUMNS
    escaped = short_name("a\nb" * 100)
    assert escaped.startswith("'a\\nba\\nb") and display_width(escaped) == NAME_COLUMNS


def _png(draw) -> np.ndarray:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 1))
    ax.axis("off")
    draw(ax)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=50)
    plt.close(fig)
    return np.asarray(Image.open(buf))


def test_mpl_literal_draws_dollar_names_as_written():
    pytest.importorskip("matplotlib")
    name = "$x$ and $y$"
    literal = _png(lambda ax: ax.set_title(mpl_literal(name)))
    as_written = _png(lambda ax: ax.set_title(name, parse_math=False))  # matplotlib's own literal text
    as_math = _png(lambda ax: ax.set_title(name))  # "$x$" drawn as a formula: an italic x, no dollars
    assert (literal == as_written).all() and (literal != as_math).any()
    assert mpl_literal("a\\$b") == "a\\\\$b"  # an escaped dollar stays: shown as the name's "\$"


def test_confusion_figure_with_a_mathtext_error_name(tmp_path):
    """'$\\frac{$' raised ParseSyntaxException from eval --analysis after the whole evaluation."""
    pytest.importorskip("matplotlib")
    from maskrcnn.engine.analysis_report import plot_confusion

    names = ["$\\frac{$", "cost $5 and $6", "N" * 300, "new\nline"]
    confusion = {"rows": names + ["background"], "columns": names + ["missed"],
                 "counts": np.eye(5, dtype=int).tolist()}
    assert plot_confusion(confusion, tmp_path / "c.png", title="bbox: $\\frac{$") == tmp_path / "c.png"
    with Image.open(tmp_path / "c.png") as im:
        assert im.size[0] < 1000  # the 300-character name shortened: the figure stays its own size


def test_class_table_shows_names_on_one_line_within_40_columns():
    from maskrcnn.engine.class_table import format_class_table

    rows = [{"name": n, "category_id": i, "ground_truth": 1, "detections": 2, "bbox_AP": 50.0,
             "bbox_AP50": 60.0} for i, n in enumerate(["N" * 300, "new\nline\ttab", "cat"])]
    lines = format_class_table(rows, 0.5).splitlines()
    assert len(lines) == 4 and len({display_width(line) for line in lines}) == 1
    assert lines[1].startswith("N" * 39 + "…  ") and lines[2].startswith("'new\\nline\\ttab'")
    assert display_width(lines[0]) == NAME_COLUMNS + 2 + 2 * 11 + 7 + 11  # bbox AP, AP50, gt, dets


def test_wide_image_lines_and_font_follow_the_shorter_side():
    from maskrcnn.visualize import line_and_font_size

    assert line_and_font_size(300, 8000) == (2, 13)  # was 20 px lines and a 48 px font: a third of 300 px
    assert line_and_font_size(480, 640) == (2, 14)  # ordinary photos: by the longer side, as before
    assert line_and_font_size(1, 1) == (1, 10)


def _det(n, scores):
    boxes = torch.tensor([[10.0 + 3 * i, 10.0 + 3 * i, 60.0 + 3 * i, 60.0 + 3 * i] for i in range(n)])
    return {"boxes": boxes, "scores": torch.tensor(scores), "labels": torch.ones(n, dtype=torch.int64)}


def test_a_long_label_is_shortened_and_stacked_labels_are_not_drawn_over_each_other():
    from maskrcnn.visualize import draw_instances

    image = np.full((120, 160, 3), 255, np.uint8)
    one = _det(1, [0.9])
    short = np.asarray(draw_instances(image, one, ["bg", "N" * (NAME_COLUMNS - 1) + "…"]))
    long = np.asarray(draw_instances(image, one, ["bg", "N" * 300]))
    assert (short == long).all()  # the 300-character name is drawn as its first 39 and "…"
    # 6 boxes 3 px apart: their labels fit in three places at most; the others are left out, not piled up
    many = draw_instances(image, _det(6, [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]), ["bg", "cat"], show_boxes=False)
    label_bg = np.asarray(many)[:, :, 0] < 140  # the labels' dark backgrounds (masks: none)
    rows = np.nonzero(label_bg.any(axis=1))[0]
    assert rows.size and np.diff(rows).max() > 1  # separate bands: above, inside, below, not one block


def test_with_shown_escapes_a_name_inside_a_message_and_leaves_the_rest():
    from maskrcnn.shown_text import with_shown

    assert with_shown("d/a\nb.png: empty file", "d/a\nb.png") == "'d/a\\nb.png': empty file"
    assert with_shown("d/ok.png: empty file", "d/ok.png") == "d/ok.png: empty file"
    assert with_shown("text", None) == "text"


def test_display_name_escapes_noncharacters_and_c1_controls_as_the_xml_refusals_do():
    """U+FFFE printed raw in every message outside the XML refusals (nothing, or garbage, on a terminal):
    the noncharacters are escaped as those refusals escape them, C1 controls and U+202E as before."""
    from maskrcnn.data.pre_annotations.xml_text import shown_in_message

    for name in ("a\ufffeb", "a\uffffb", "a\ufdd0b", "a\U0001fffeb", "a\x85b\x9b", "x\u202ey\ufffe.png"):
        shown = display_name(name)
        assert shown == "'" + repr(name)[1:-1] + "'" == shown_in_message(name), (name, shown)
    assert display_name("a\ufffeb") == "'a\\ufffeb'"
    assert display_name("a\U0001fffeb") == "'a\\U0001fffeb'"  # not "\u1fffe": read as U+1FFF and an e
    for kept in ("a\ufffdb", "a\ufdcfb", "a\U0001fffdb"):  # the replacement character, letters beside
        assert display_name(kept) == kept


def test_a_file_named_with_u202e_and_ufffe_is_shown_escaped_in_the_datasets_refusal(tmp_path):
    import json
    import warnings

    from maskrcnn.data.coco import CocoDataset

    name = "x\u202ey\ufffe.png"
    (tmp_path / name).write_bytes(b"not an image")
    (tmp_path / "train.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": name, "width": 8, "height": 8}],
        "categories": [{"id": 1, "name": "cat"}], "annotations": []}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = CocoDataset(json_path=tmp_path / "train.json", image_dir=tmp_path)
        ds.check_image_files(threads=1)
    said = " ".join(ds.problems)
    assert ds.skipped.get("unreadable_image") == 1, ds.skipped
    assert "x\\u202ey\\ufffe.png" in said and "\u202e" not in said and "\ufffe" not in said, said
