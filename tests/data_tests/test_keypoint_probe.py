"""What a hostile probe of keypoint datasets found: names without left/right words (OpenPose, Human3.6M,
iBUG's numbers) got no flip swap, two keypoint sets in one file, eval's keypoint names unchecked, no
ground-truth keypoints in show-data, silent default OKS sigmas, labelled points far outside the image."""

import io
import json
import warnings

import numpy as np
import pytest
from PIL import Image

from maskrcnn.config import load_config
from maskrcnn.data.keypoints import flip_map_from_names, keypoint_flip_map, pairs_nothing


def _kp_json(folder, names, annotations, *, categories=None, size=(32, 32), name="kp.json"):
    """A COCO keypoint file with two ``size`` images written beside it (folder/images)."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    w, h = size
    for i in (1, 2):
        Image.fromarray(np.full((h, w, 3), 60 * i, np.uint8)).save(images / f"{i}.png")
    cats = categories or [{"id": 1, "name": "person", "keypoints": list(names), "skeleton": []}]
    path = folder / name
    path.write_text(json.dumps({
        "images": [{"id": i, "file_name": f"{i}.png", "width": w, "height": h} for i in (1, 2)],
        "categories": cats, "annotations": annotations}))
    return path, images


def _person(aid, image_id, points, category_id=1):
    """points: [(x, y, v), ...]"""
    return {"id": aid, "image_id": image_id, "category_id": category_id, "bbox": [4, 4, 20, 20],
            "area": 400.0, "iscrowd": 0, "num_keypoints": sum(1 for p in points if p[2] > 0),
            "keypoints": [float(c) for p in points for c in p]}


# ---------------------------------------------------------------------------- 2. the flip map


def test_side_prefixes_and_suffixes_without_left_right_words_pair():
    openpose = ["Nose", "Neck", "RShoulder", "RElbow", "LShoulder", "LElbow", "REye", "LEye"]
    assert flip_map_from_names(openpose) == (0, 1, 4, 5, 2, 3, 7, 6)
    h36m = ["Hip", "RHip", "RKnee", "LHip", "LKnee", "Spine"]
    assert flip_map_from_names(h36m) == (0, 3, 4, 1, 2, 5)
    assert flip_map_from_names(["l_eye", "r_eye", "eye_L", "eye_R", "paw_left", "paw_right", "LeftEar",
                                "RightEar", "left_hip", "right_hip"]) == (1, 0, 3, 2, 5, 4, 7, 6, 9, 8)
    numbers = [str(i) for i in range(1, 69)]  # iBUG face68: nothing to pair by name
    assert pairs_nothing(flip_map_from_names(numbers)) and not pairs_nothing(flip_map_from_names(openpose))


def test_configured_flip_map_wins_as_indices_or_names():
    names = ["1", "2", "3", "4"]
    assert keypoint_flip_map(names, 4, configured=[[0, 3]]) == (3, 1, 2, 0)
    assert keypoint_flip_map(names, 4, configured=[["2", "3"]]) == (0, 2, 1, 3)
    # it wins over the names' own pairing
    assert keypoint_flip_map(["left_a", "right_a", "c"], 3, configured=[[0, 2]]) == (2, 1, 0)
    with pytest.raises(ValueError, match=r"data.keypoint_flip_map: index 4 is not in 0..3"):
        keypoint_flip_map(names, 4, configured=[[0, 4]])
    with pytest.raises(ValueError, match=r"data.keypoint_flip_map: 'x' is neither"):
        keypoint_flip_map(names, 4, configured=[["1", "x"]])
    with pytest.raises(ValueError, match=r"^animal.json: keypoint 'left_paw' has no mirror"):
        keypoint_flip_map(["left_paw", "tail"], 2, source="animal.json")


def test_glued_sides_pair_only_by_their_exact_spelling_and_the_map_is_its_own_inverse():
    # 'Rear' is no right ear: LEar kept in place (it was paired with 'Rear', which stayed put, so every
    # flip copied Rear's point into LEar)
    assert flip_map_from_names(["LEar", "Rear"]) == (0, 1)
    assert flip_map_from_names(["LEar", "REar"]) == (1, 0)
    with pytest.raises(ValueError, match=r"^kp.json: keypoint 'rightArm_L' pairs with 'leftArm_L', which "
                                         r"does not pair back \(it maps to 'leftArm_R'\)"):
        flip_map_from_names(["leftArm_L", "leftArm_R", "rightArm_L"], source="kp.json")


def test_too_few_names_are_said_before_the_configured_pairs_are_read():
    with pytest.raises(ValueError, match=r"^kp.json: 2 keypoint names for 3 keypoints$"):
        keypoint_flip_map(["a", "b"], 3, configured=[["a", "b"]], source="kp.json")


def _build(tmp_path, path, images, **overrides):
    from maskrcnn.engine.training import build_training

    cfg = load_config("demo_keypoints", {"model.backbone": "resnet18", "model.fpn_dim": 8,
                                         "data.num_workers": 0, **overrides})
    stream = io.StringIO()
    _, cfg = build_training(cfg, train_json=path, train_images=images, output=tmp_path / "run",
                            log_stream=stream, overwrite=True, trainer_kwargs={"tensorboard": False})
    return stream.getvalue(), cfg


def test_training_warns_when_names_pair_nothing_and_flips_are_on(tmp_path):
    names = ["1", "2", "3"]
    path, images = _kp_json(tmp_path, names, [_person(1, 1, [(8, 8, 2), (12, 8, 2), (10, 12, 2)])])
    said, _ = _build(tmp_path, path, images)
    (line,) = [s for s in said.splitlines() if "swap no point" in s]
    assert line.startswith(f"warning: {path}: its keypoint names pair no left with a right")
    assert "data.keypoint_flip_map" in line and "input.flip_prob=0" in line
    said, _ = _build(tmp_path, path, images, **{"data.keypoint_flip_map": [[0, 1]]})
    assert "swap no point" not in said
    other, images = _kp_json(tmp_path / "b", ["left_paw", "tail", "3"], [_person(1, 1, [(8, 8, 2)] * 3)])
    with pytest.raises(ValueError, match=f"^{other}: keypoint 'left_paw' has no mirror"):
        _build(tmp_path / "b", other, images)


def test_a_partial_configured_flip_map_warns_for_the_sided_names_it_leaves_in_place(tmp_path):
    """Only hand.L/hand.R given: foot_l/foot_r, which the names pair, stayed in place at every flip
    without the warning the names' own map gives."""
    names = ["head", "hand.L", "hand.R", "foot_l", "foot_r"]
    with pytest.warns(UserWarning) as seen:
        assert keypoint_flip_map(names, 5, configured=[["hand.L", "hand.R"]], source="kp5.json") == \
            (0, 2, 1, 3, 4)
    assert [str(w.message) for w in seen] == [
        "kp5.json: keypoints foot_l, foot_r look like one side but data.keypoint_flip_map pairs them with no "
        "other name, so a horizontal flip keeps them in place; add the pairs to data.keypoint_flip_map, or "
        "train without flips (input.flip_prob=0)"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every sided name paired, or none sided: no warning
        keypoint_flip_map(names, 5, configured=[["hand.L", "hand.R"], [3, 4]], source="kp5.json")
        keypoint_flip_map(["1", "2", "3"], 3, configured=[[0, 1]])
    path, images = _kp_json(tmp_path, names, [_person(1, 1, [(8, 8, 2)] * 5)])
    said, _ = _build(tmp_path, path, images, **{"data.keypoint_flip_map": [["hand.L", "hand.R"]]})
    assert f"warning: {path}: keypoints foot_l, foot_r look like one side but data.keypoint_flip_map" in said


def test_images_left_out_for_too_few_keypoints_are_counted_and_other_classes_kept(tmp_path):
    """data.min_keypoints_per_image left images out without a word (the "N of M left out" line then
    wrong), and an image whose only object is a class without keypoints (a car) lost its box."""
    from maskrcnn.data.coco import CocoDataset

    names = ["nose", "left_eye", "right_eye"]
    unlabelled = _person(2, 2, [(0, 0, 0)] * 3)
    path, images = _kp_json(tmp_path, names, [_person(1, 1, [(8, 8, 2)] * 3), unlabelled])
    said, _ = _build(tmp_path, path, images)
    assert (f"note: {path}: 1 of 2 training images has no labelled keypoint (data.min_keypoints_per_image "
            "1) and is left out (data.min_keypoints_per_image=0 keeps it for the box (and mask) heads)\n"
            ) in said
    said, _ = _build(tmp_path, path, images, **{"data.min_keypoints_per_image": 0})
    assert "left out" not in said
    cats = [{"id": 1, "name": "person", "keypoints": names}, {"id": 2, "name": "car"}]
    car = {"id": 3, "image_id": 2, "category_id": 2, "bbox": [2, 2, 10, 10], "area": 100.0, "iscrowd": 0}
    path, images = _kp_json(tmp_path / "car", names, [_person(1, 1, [(8, 8, 2)] * 3), unlabelled, car],
                            categories=cats)
    ds = CocoDataset(json_path=path, image_dir=images, keypoints=True, filter_empty=True,
                     min_keypoints_per_image=1)
    assert ds.ids == [1, 2] and "image_with_too_few_keypoints" not in ds.skipped


# ---------------------------------------------------------------------------- 3. two keypoint sets


def test_two_categories_with_different_keypoint_sets_are_refused(tmp_path):
    from maskrcnn.data.coco import CocoDataset

    person = [f"p{i}" for i in range(17)]
    cats = [{"id": 1, "name": "person", "keypoints": person},
            {"id": 2, "name": "dog", "keypoints": ["nose", "l_ear", "r_ear", "tail", "back"]}]
    path, images = _kp_json(tmp_path, person, [_person(1, 1, [(8, 8, 2)] * 17),
                                               _person(2, 2, [(8, 8, 2)] * 5, category_id=2)],
                            categories=cats)
    with pytest.raises(ValueError) as e:
        CocoDataset(json_path=path, image_dir=images, keypoints=True)
    assert str(e.value) == (f"{path}: categories person (17 keypoints) and dog (5) define different keypoint "
                            "sets; one keypoint set per dataset")
    cats[1]["keypoints"] = person  # the same set twice is fine
    path.write_text(json.dumps({**json.loads(path.read_text()), "categories": cats,
                                "annotations": [_person(1, 1, [(8, 8, 2)] * 17),
                                                _person(2, 2, [(8, 8, 2)] * 17, category_id=2)]}))
    ds = CocoDataset(json_path=path, image_dir=images, keypoints=True)
    assert len(ds) == 2 and sum(ds.skipped.values()) == 0


# ---------------------------------------------------------------------------- 7. points outside the image


def test_labelled_keypoints_far_outside_are_unlabelled_near_ones_clipped(tmp_path, caplog):
    from maskrcnn.data.coco import CocoDataset

    # 32x32 images, margin 5%: 33 is clipped to 32, 40 and -500 are far
    path, images = _kp_json(tmp_path, ["a", "b", "c", "d"], [
        _person(7, 1, [(8, 8, 2), (33, 10, 2), (40, 10, 1), (-500, 3, 2)]),
        _person(8, 2, [(8, 8, 2), (10, 10, 0), (10, 1e6, 2), (5, 5, 1)])])
    with caplog.at_level("WARNING"):
        ds = CocoDataset(json_path=path, image_dir=images, keypoints=True)
    assert ds.keypoints_outside_image == 3
    (note,) = [r.getMessage() for r in caplog.records if "keypoints lie" in r.getMessage()]
    assert note.startswith(f"{path}: 3 labelled keypoints lie more than 5% of the image's size outside it "
                           "(the first in annotation id 7): treated as unlabelled (v=0)")
    kp = ds[0][1]["keypoints"][0].tolist()  # (K, 3)
    assert kp == [[8, 8, 2], [32, 10, 2], [0, 0, 0], [0, 0, 0]]
    assert ds[1][1]["keypoints"][0, 2].tolist() == [0, 0, 0]


# ---------------------------------------------------------------------------- 4 and 6. eval's keypoints


def _evaluator(tmp_path, model_names, data_names, capsys, sigmas=()):
    import types

    from maskrcnn.data.coco import CocoDataset
    from maskrcnn.engine.inference import build_evaluator

    truth = [(6, 6, 2), (20, 6, 2), (12, 20, 2)]  # in the dataset's order
    path, images = _kp_json(tmp_path, data_names, [_person(1, 1, truth)])
    cfg = load_config("demo_keypoints", {"data.keypoint_names": list(model_names),
                                         "model.roi_heads.num_keypoints": len(model_names),
                                         "data.keypoint_sigmas": list(sigmas)})
    ds = CocoDataset(json_path=path, image_dir=images, keypoints=True)
    predictor = types.SimpleNamespace(cfg=cfg, class_names=["__background__", "person"],
                                      label_to_category_id={1: 1})
    capsys.readouterr()
    evaluator = build_evaluator(predictor, ds)
    return evaluator, truth, capsys.readouterr().err


def _score_truth_in_model_order(evaluator, truth, model_names, data_names):
    import torch

    by_name = dict(zip(data_names, truth))
    kp = torch.tensor([[list(by_name[n]) for n in model_names]], dtype=torch.float32)  # (1, K, 3)
    evaluator.process(1, {"boxes": torch.tensor([[4.0, 4, 24, 24]]), "scores": torch.tensor([0.9]),
                          "labels": torch.tensor([1]), "keypoints": kp})
    return evaluator.evaluate()["keypoints"]


def test_eval_matches_a_reordered_keypoint_set_by_name_and_warns_on_other_names(tmp_path, capsys):
    model = ["head", "neck", "tail"]
    reordered = ["tail", "head", "neck"]
    evaluator, truth, err = _evaluator(tmp_path / "a", model, reordered, capsys)
    assert "lists the model's keypoints in another order" in err
    assert evaluator.keypoint_order == [2, 0, 1]
    assert _score_truth_in_model_order(evaluator, truth, model, reordered)["AP"] == pytest.approx(100.0)
    _, _, err = _evaluator(tmp_path / "b", model, ["a", "b", "c"], capsys)
    (line,) = [s for s in err.splitlines() if "are not the model's" in s]
    assert "['a', 'b', 'c']" in line and "['head', 'neck', 'tail']" in line


def test_eval_says_the_default_oks_sigmas_and_writes_the_sigmas_used(tmp_path, capsys):
    names = ["nose", "neck", "tail"]
    evaluator, truth, err = _evaluator(tmp_path / "a", names, names, capsys)
    (line,) = [s for s in err.splitlines() if s.startswith("OKS sigmas")]
    assert line == ("OKS sigmas: 0.0669 (default) for neck, tail; set data.keypoint_sigmas (one per "
                    "keypoint) for your own")
    metrics = _score_truth_in_model_order(evaluator, truth, names, names)
    assert metrics["oks_sigmas"] == {"nose": 0.026, "neck": 0.0669, "tail": 0.0669}
    evaluator, truth, err = _evaluator(tmp_path / "b", names, names, capsys, sigmas=[0.1, 0.2, 0.3])
    assert "OKS sigmas" not in err
    metrics = _score_truth_in_model_order(evaluator, truth, names, names)
    assert metrics["oks_sigmas"] == {"nose": 0.1, "neck": 0.2, "tail": 0.3}


# ---------------------------------------------------------------------------- 5. show-data's keypoints


def test_show_data_draws_ground_truth_keypoints_and_skeleton_and_counts_them(tmp_path, capsys):
    from maskrcnn.cli import main

    cats = [{"id": 1, "name": "person", "keypoints": ["head", "tail", "paw"], "skeleton": [[1, 2]]}]
    path, images = _kp_json(tmp_path, [], [
        _person(1, 1, [(8, 16, 2), (20, 16, 1), (0, 0, 0)]),
        _person(2, 1, [(0, 0, 0)] * 3),
        _person(3, 2, [(10, 10, 2), (200, 10, 2), (12, 12, 2)])], categories=cats)
    for a in json.loads(path.read_text())["annotations"]:
        assert "segmentation" not in a  # boxes standing in for masks: tinted evenly inside
    data = json.loads(path.read_text())  # a third image without people: nothing drawn, no error
    data["images"].append({**data["images"][0], "id": 3})
    path.write_text(json.dumps(data))
    out = tmp_path / "show"
    assert main(["show-data", "--json", str(path), "--images", str(images), "--output", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["keypoints"] == {"persons": 3, "persons_without_labelled_keypoints": 1, "labelled_v1": 1,
                                    "labelled_v2": 3, "outside_image": 1}
    assert "keypoints: 3 persons (1 without a labelled point)" in capsys.readouterr().out
    overlay = np.asarray(Image.open(out / "overlays" / "1.png").convert("RGB")).astype(int)
    scale = overlay.shape[0] // 32  # show-data enlarges small images
    tint = overlay[21 * scale, 12 * scale]  # inside the box, away from points and line
    for x, y in ((8, 16), (20, 16), (14, 16)):  # the two points and the skeleton line between them
        assert np.abs(overlay[y * scale, x * scale] - tint).sum() > 30, (x, y)


def test_show_data_counts_persons_of_the_keypoint_category_only(tmp_path):
    from maskrcnn.commands.show_data import summarise
    from maskrcnn.data.coco import CocoDataset

    cats = [{"id": 1, "name": "person", "keypoints": ["head", "tail"], "skeleton": []},
            {"id": 2, "name": "car"}]
    car = {"id": 2, "image_id": 1, "category_id": 2, "bbox": [2, 2, 10, 10], "area": 100.0, "iscrowd": 0}
    path, images = _kp_json(tmp_path, [], [_person(1, 1, [(8, 8, 2), (0, 0, 0)]), car], categories=cats)
    summary = summarise(CocoDataset(json_path=path, image_dir=images, keypoints="auto"))
    assert summary["instances"] == 2
    assert summary["keypoints"]["persons"] == 1  # the car is no person (it was counted as one)
    assert summary["keypoints"]["persons_without_labelled_keypoints"] == 0


def test_eval_results_scores_the_same_clipped_ground_truth_as_the_model_evaluation(tmp_path):
    import torch

    from maskrcnn.data.coco import CocoDataset
    from maskrcnn.engine.evaluator import CocoEvaluator, evaluate_results_file

    # 32x32 images: 33 is clipped to 32, 200 is far outside (made unlabelled) in both evaluations
    truth = [(8, 8, 2), (33, 10, 2), (200, 10, 2)]
    path, images = _kp_json(tmp_path, ["a", "b", "c"], [_person(5, 1, truth)])
    guess = [(8.0, 8.0, 1.0), (32.0, 10.0, 1.0), (20.0, 10.0, 1.0)]
    model = CocoEvaluator(CocoDataset(json_path=path, image_dir=images, keypoints=True).to_coco_dict(),
                          iou_types=("keypoints",))
    model.process(1, {"boxes": torch.tensor([[4.0, 4, 24, 24]]), "scores": torch.tensor([0.9]),
                      "labels": torch.tensor([1]), "keypoints": torch.tensor([guess])})
    results = tmp_path / "results.json"
    results.write_text(json.dumps([{"image_id": 1, "category_id": 1, "score": 0.9, "bbox": [4, 4, 20, 20],
                                    "keypoints": [c for p in guess for c in p]}]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from_file = evaluate_results_file(path, results, iou_types=["keypoints"])
    assert model.evaluate()["keypoints"]["AP"] == pytest.approx(100.0)
    assert from_file["keypoints"]["AP"] == pytest.approx(100.0)  # was 0-30: the far point was scored
    (line,) = [str(w.message) for w in caught if "keypoints lie" in str(w.message)]
    assert line == (f"{path}: 1 labelled keypoints lie more than 5% of the image's size outside it (the "
                    "first in annotation id 5): treated as unlabelled (v=0), as training reads them")
