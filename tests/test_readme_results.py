"""The README's Python API "Results" bullet and the snippet's comment above it name every key a Predictor
returns (``mask_probs`` was left out), and what the bullet says of ``mask_probs`` holds: ``masks`` is
them pasted into the image at the mask threshold."""

import re
from pathlib import Path

import pytest
import torch
from tiny_model import cat_dog_inputs  # tests/ is on the path

import maskrcnn
from maskrcnn.ops.paste import paste_masks_in_image

pytestmark = pytest.mark.usefixtures("single_thread")
README = Path(__file__).resolve().parents[1] / "README.md"


def _named(text: str) -> set:
    return set(re.findall(r"\b[a-z_]+\b", text))


def _results_bullet(text: str) -> str:
    start = text.index("- **Results**:")
    return text[start:text.index("\n- ", start + 1)]


def _snippet_comment(text: str) -> str:
    """The comment on ``det = detections[0]`` in the first Python snippet, with its continuation lines."""
    lines = text[text.index("det = detections[0]"):].splitlines()
    comment = [lines[0].split("#", 1)[1]]
    for line in lines[1:]:
        if not line.lstrip().startswith("#"):
            break
        comment.append(line.lstrip()[1:])
    return " ".join(comment)


def test_the_readme_names_every_result_key_and_mask_probs_paste_to_the_masks(tmp_path):
    ckpt, images = cat_dog_inputs(tmp_path, {"a.png": (50, 70)})
    dense = maskrcnn.Predictor.from_weights(ckpt, device="cpu", score_thresh=0)
    det = dense([images / "a.png"])[0]
    as_rle = maskrcnn.Predictor.from_weights(ckpt, device="cpu", score_thresh=0, masks="rle")
    rle = as_rle([images / "a.png"])[0]
    assert len(det["scores"]) > 0 and "mask_probs" in det and "masks_rle" in rle
    text = README.read_text(encoding="utf-8")
    bullet = _results_bullet(text)
    missing = (set(det) | set(rle)) - set(re.findall(r"`(\w+)`", bullet))
    assert not missing, f"README's Results bullet does not name {sorted(missing)}"
    missing = set(det) - _named(_snippet_comment(text))
    assert not missing, f"README's snippet comment does not name {sorted(missing)}"
    # "masks is them pasted into the image at model.roi_heads.mask_threshold"
    n, one, m, m2 = det["mask_probs"].shape
    assert (one, m) == (1, m2) and n == len(det["scores"])
    pasted = paste_masks_in_image(det["mask_probs"], det["boxes"], tuple(det["masks"].shape[1:]),
                                  threshold=dense.mask_threshold)
    assert torch.equal(pasted, det["masks"]) and det["masks"].any()


def test_the_readme_coco_ids_snippet_writes_the_datasets_category_ids(tmp_path, monkeypatch):
    """The "COCO category ids" bullet's snippet, run as written on a model of cat 5 and dog 9: the records
    carry 5 and 9, not the labels 1 and 2 (``category_id = label`` scores such a model at AP 0)."""
    import json
    import textwrap

    ckpt, images = cat_dog_inputs(tmp_path, {"street.jpg": (50, 70)})
    text = README.read_text(encoding="utf-8")
    start = text.index("```python", text.index("- **COCO category ids**")) + len("```python")
    code = textwrap.dedent(text[start:text.index("```", start)])
    code = code.replace('masks="rle")', 'masks="rle", score_thresh=0)')  # a random model: keep every box
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r50fpn.pth").write_bytes(Path(ckpt).read_bytes())
    (tmp_path / "street.jpg").write_bytes((images / "street.jpg").read_bytes())
    exec(compile(code, "README snippet", "exec"), {})
    records = json.loads((tmp_path / "results.json").read_text())
    assert records and {(r["category_name"], r["category_id"]) for r in records} <= {("cat", 5), ("dog", 9)}
