"""Repeat-factor sampling (LVIS): factors against hand computation, appearances per epoch, the stream
with the option off unchanged, exact resume, DDP sharding, bad thresholds refused."""

import hashlib
import itertools
import json
import math
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from maskrcnn.cli import main
from maskrcnn.data.coco import CocoDataset
from maskrcnn.data.loader import TrainBatchSampler, build_train_loader
from maskrcnn.data.repeat_factors import (
    category_repeat_factors,
    draw_repeats,
    image_repeat_factors,
    summary_lines,
)

RATIOS = [2.0 if i % 3 == 0 else 0.5 for i in range(11)]  # image i portrait when i % 3 == 0


def _dataset(tmp_path):
    """10 images (categories 5 'common', 6 'uncommon', 9 'rare'): common in images 1-6 (twice in 2),
    uncommon in 1 and 7, rare in 7 and as a crowd region in 9; images 8 and 10 empty."""
    folder = tmp_path / "img"
    folder.mkdir()
    images = []
    for i in range(1, 11):
        Image.new("RGB", (30, 20)).save(folder / f"{i}.png")
        images.append({"id": i, "file_name": f"{i}.png", "height": 20, "width": 30})
    placed = [(1, 5, 0), (1, 6, 0), (2, 5, 0), (2, 5, 0), (3, 5, 0), (4, 5, 0), (5, 5, 0), (6, 5, 0),
              (7, 6, 0), (7, 9, 0), (9, 9, 1)]  # fmt: skip
    anns = [
        {"id": k + 1, "image_id": i, "category_id": c, "bbox": [2, 2, 8, 6], "iscrowd": crowd,
         "segmentation": [[2, 2, 10, 2, 10, 8, 2, 8]]}
        for k, (i, c, crowd) in enumerate(placed)
    ]  # fmt: skip
    cats = [{"id": 5, "name": "common"}, {"id": 6, "name": "uncommon"}, {"id": 9, "name": "rare"}]
    path = tmp_path / "train.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path, folder


def test_factors_match_hand_computation(tmp_path):
    path, folder = _dataset(tmp_path)
    ds = CocoDataset(json_path=path, image_dir=folder, filter_empty=False)
    labels = ds.labels_per_image()
    # crowd regions do not count: image 9 holds no usable instance
    assert labels == [[1, 2], [1], [1], [1], [1], [1], [2, 3], [], [], []]
    by_class = category_repeat_factors(labels, threshold=0.3)
    # f = 6/10, 2/10, 1/10: r = max(1, sqrt(0.3 / f)) = 1, sqrt(1.5), sqrt(3)
    assert by_class == pytest.approx({1: 1.0, 2: 1.224744871391589, 3: 1.7320508075688772})
    factors = image_repeat_factors(labels, by_class)
    assert factors.tolist() == pytest.approx([1.224744871391589, 1, 1, 1, 1, 1, 1.7320508075688772, 1, 1, 1])
    # empty images dropped (filter_empty): f over the 7 images in use
    dropped = CocoDataset(json_path=path, image_dir=folder, filter_empty=True).labels_per_image()
    assert category_repeat_factors(dropped, threshold=0.3)[3] == pytest.approx(math.sqrt(0.3 * 7))
    lines = summary_lines(factors, by_class, ds.class_names, threshold=0.3)
    assert lines == [
        "repeat-factor sampling (data.repeat_threshold=0.3): 2 of 10 images repeated, an epoch shows "
        "11.0 images on average (1.10x the dataset)",
        "  rarest classes' repeat factors: rare 1.73, uncommon 1.22",
    ]
    with pytest.raises(ValueError, match="repeat threshold must be in"):
        category_repeat_factors(labels, threshold=float("nan"))


def test_appearances_per_epoch_average_the_factor():
    factors = np.array([1.0, 1.25, 1.5, 2.7, 3.0, 1.1])
    sampler = TrainBatchSampler(6, batch_size=1, seed=11, repeat_factors=factors)  # batch 1: no top-up
    epochs, seen, t = 800, Counter(), 0
    while sampler.locate(t)[0] < epochs:
        seen.update(i for i, _ in sampler.batch(t))
        t += 1
    mean = np.array([seen[i] for i in range(6)]) / epochs
    assert np.abs(mean - factors).max() < 0.06, mean  # binomial sd of a mean over 800 epochs <= 0.018
    for epoch in range(20):  # each epoch: floor(r_i) or ceil(r_i) times
        counts = np.bincount(sampler.epoch_pool(epoch), minlength=6)
        assert ((counts == np.floor(factors)) | (counts == np.ceil(factors))).all()
        assert sampler.epoch_length(epoch) == counts.sum()
    assert len({sampler.epoch_length(e) for e in range(20)}) > 1  # lengths vary with the draws
    assert draw_repeats(np.array([2.0, 1.0]), np.random.default_rng(0)).tolist() == [2, 1]


def test_off_is_the_stream_of_the_sampler_without_the_option():
    # the digest of batches 0..39 (indices and augmentation seeds) of the sampler before repeat factors
    # existed: runs started then resume identically
    s = TrainBatchSampler(11, batch_size=2, seed=7, aspect_ratios=RATIOS, rank=1, world_size=2)
    digest = hashlib.sha256(json.dumps([s.batch(t) for t in range(40)]).encode()).hexdigest()
    assert digest == "8394f16d370c3fd6ce39fd6b4f1729b9385d5bd599902f293059c60a2ede79f2"
    ones = TrainBatchSampler(11, batch_size=2, seed=7, aspect_ratios=RATIOS, rank=1, world_size=2,
                             repeat_factors=[1.0] * 11)  # fmt: skip
    assert [ones.batch(t) for t in range(40)] == [s.batch(t) for t in range(40)]


def test_resume_mid_epoch_gives_the_same_stream():
    factors = [1.0, 2.4, 1.0, 1.0, 3.6, 1.0, 1.3, 1.0, 1.0, 1.0, 1.8]
    kw = dict(batch_size=2, seed=5, repeat_factors=factors)
    run = [[(t["index"], t["draw"]) for t in b] for b in _take(build_train_loader(_Toy(11), **kw), 40)]
    sampler = TrainBatchSampler(11, batch_size=2, seed=5, repeat_factors=factors)
    start = sampler.locate(30)
    assert start[1] > 0  # mid-epoch
    resumed = [[(t["index"], t["draw"]) for t in b]
               for b in _take(build_train_loader(_Toy(11), start_iter=30, **kw), 10)]  # fmt: skip
    assert resumed == run[30:]
    loader = build_train_loader(_Toy(11), **kw)
    _take(loader, 17)
    fresh = build_train_loader(_Toy(11), **kw)
    fresh.load_state_dict(loader.state_dict())
    assert [[(t["index"], t["draw"]) for t in b] for b in _take(fresh, 5)] == run[17:22]
    different = build_train_loader(_Toy(11), **{**kw, "seed": 6})
    assert [[(t["index"], t["draw"]) for t in b] for b in _take(different, 40)] != run


def test_ranks_take_disjoint_slices_of_each_epoch():
    factors = [1.0, 2.4, 1.0, 1.0, 3.6, 1.0, 1.3, 1.0, 1.0, 1.0, 1.8]
    ranks = [TrainBatchSampler(11, batch_size=2, seed=1, aspect_ratios=RATIOS, rank=r, world_size=2,
                               repeat_factors=factors) for r in (0, 1)]  # fmt: skip
    single = TrainBatchSampler(11, batch_size=4, seed=1, aspect_ratios=RATIOS, repeat_factors=factors)
    t = 0
    for epoch in range(4):
        per_rank = [Counter(), Counter()]
        while single.locate(t)[0] == epoch:
            a, b = ranks[0].batch(t), ranks[1].batch(t)
            assert [i for i, _ in a + b] == [i for i, _ in single.batch(t)]  # the global batch, split
            per_rank[0].update(i for i, _ in a)
            per_rank[1].update(i for i, _ in b)
            t += 1
        pool = Counter(single.epoch_pool(epoch).tolist())
        seen = per_rank[0] + per_rank[1]
        # every slot of the epoch goes to one rank; only the last batch's top-up repeats images
        assert not pool - seen and sum((seen - pool).values()) < 4
    # grouping still holds: only the leftovers of the two orientations (< 2 x 4 images) mix in a batch
    for epoch in range(4):
        first = next(t for t in range(200) if single.locate(t) == (epoch, 0))
        batches = [single.batch(first + k) for k in range(single.epoch_length(epoch))]
        assert sum(len({i % 3 == 0 for i, _ in b}) > 1 for b in batches) <= 2


@pytest.mark.parametrize("value", ["-0.1", "1.5", "nan"])
def test_bad_threshold_is_refused_in_one_line(tmp_path, capsys, value):
    path, folder = _dataset(tmp_path)
    rc = main(["train", "--config", "demo", "--set", f"data.repeat_threshold={value}", "--train-json",
               str(path), "--train-images", str(folder), "--output", str(tmp_path / "run")])  # fmt: skip
    text = (lambda c: c.err + c.out)(capsys.readouterr())
    assert rc == 1 and f"data.repeat_threshold must be in [0, 1] (0: off), got {value}" in text, text
    assert len(text.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


class _Toy:
    """Items carry their index and a draw from their augmentation seed."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, item):
        index, seed = item
        return np.zeros((3, 2, 2), np.float32), {"index": index, "draw": np.random.default_rng(seed).random()}


def _take(loader, n):
    return [targets for _, targets in itertools.islice(iter(loader), n)]


def test_resume_with_another_threshold_is_named(tmp_path):
    from maskrcnn.config import load_config, save_config
    from maskrcnn.engine.training import _resumed_config

    run = load_config("demo")
    run.data.repeat_threshold = 0.2
    save_config(run, tmp_path / "config.yaml")
    said = []
    asked = run.copy()
    _resumed_config(asked, tmp_path, said.append)
    assert not said
    asked.data.repeat_threshold = 0.0
    cfg, _ = _resumed_config(asked, tmp_path, said.append)
    assert said == ["warning: --resume with data.repeat_threshold=0, the run's was 0.2: the images drawn "
                    "from now on differ from the run's"]  # fmt: skip
    assert cfg.data.repeat_threshold == 0.0


def test_resume_with_another_batch_size_is_named(tmp_path):
    """Applied, but the sampler plans epochs per batch size: the run no longer resumes exactly."""
    from maskrcnn.config import load_config, save_config
    from maskrcnn.engine.training import _resumed_config

    run = load_config("demo")
    save_config(run, tmp_path / "config.yaml")
    said = []
    asked = run.copy()
    asked.solver.batch_size = run.solver.batch_size * 2
    cfg, _ = _resumed_config(asked, tmp_path, said.append)
    assert said == [f"warning: --resume with solver.batch_size={asked.solver.batch_size}, the run's was "
                    f"{run.solver.batch_size}: the images drawn from now on differ from an uninterrupted "
                    "run's (the order is planned per iteration and batch size), and solver.iters counts "
                    f"batches of {asked.solver.batch_size}"]  # fmt: skip
    assert cfg.solver.batch_size == asked.solver.batch_size
