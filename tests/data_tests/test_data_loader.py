"""Training sampler: determinism, resuming, epochs, aspect-ratio grouping, DDP sharding, workers."""

import itertools

import pytest
import torch

from maskrcnn.data.loader import TrainBatchSampler, build_test_loader, build_train_loader, collate


class _Toy(torch.utils.data.Dataset):
    """Image i is portrait when i % 3 == 0; items carry the index and a seeded random draw."""

    def __init__(self, n=10):
        self.n = n

    def __len__(self):
        return self.n

    def aspect_ratios(self):
        return [2.0 if i % 3 == 0 else 0.5 for i in range(self.n)]

    def __getitem__(self, item):
        index, seed = item if isinstance(item, tuple) else (item, 0)
        draw = torch.rand((), generator=torch.Generator().manual_seed(seed)).item()
        return torch.zeros(3, 2, 2), {"index": index, "draw": draw}


def _take(loader, n):
    return [[(t["index"], t["draw"]) for t in targets] for _, targets in itertools.islice(iter(loader), n)]


def test_collate_keeps_lists():
    images, targets = collate([(torch.zeros(3, 2, 2), {"a": 1}), (torch.ones(3, 4, 5), {"a": 2})])
    assert [i.shape for i in images] == [(3, 2, 2), (3, 4, 5)] and [t["a"] for t in targets] == [1, 2]


def test_order_is_a_function_of_seed_and_iteration_and_resumes_exactly():
    ds = _Toy(10)
    run = _take(build_train_loader(ds, batch_size=2, seed=3), 12)
    assert run == _take(build_train_loader(ds, batch_size=2, seed=3), 12)
    assert run != _take(build_train_loader(ds, batch_size=2, seed=4), 12)
    assert _take(build_train_loader(ds, batch_size=2, seed=3, start_iter=7), 5) == run[7:]
    loader = build_train_loader(ds, batch_size=2, seed=3)
    _take(loader, 4)
    state = loader.state_dict()
    assert state == {"seed": 3, "iteration": 4}
    fresh = build_train_loader(ds, batch_size=2, seed=3)
    fresh.load_state_dict(state)
    assert _take(fresh, 3) == run[4:7]


def test_each_epoch_visits_every_image_and_batches_share_orientation():
    sampler = TrainBatchSampler(12, batch_size=2, seed=0, aspect_ratios=_Toy(12).aspect_ratios())
    assert sampler.batches_per_epoch == 6
    for epoch in range(3):
        batches = [sampler.batch(epoch * 6 + k) for k in range(6)]
        seen = sorted(i for b in batches for i, _ in b)
        assert seen == list(range(12))
        assert all(len({i % 3 == 0 for i, _ in b}) == 1 for b in batches)  # 4 portrait, 8 landscape
    assert [i for i, _ in sampler.batch(0)] != [i for i, _ in sampler.batch(6)]  # reshuffled per epoch


def test_ranks_split_the_global_batch():
    ratios = _Toy(11).aspect_ratios()
    samplers = [
        TrainBatchSampler(11, batch_size=2, seed=1, aspect_ratios=ratios, rank=r, world_size=2)
        for r in (0, 1)
    ]
    single = TrainBatchSampler(11, batch_size=4, seed=1, aspect_ratios=ratios)
    for t in range(6):
        a, b = samplers[0].batch(t), samplers[1].batch(t)
        assert [i for i, _ in a + b] == [i for i, _ in single.batch(t)]
    with pytest.raises(ValueError, match="rank"):
        TrainBatchSampler(4, batch_size=1, rank=2, world_size=2)


def test_workers_do_not_change_batches():
    ds = _Toy(9)
    assert _take(build_train_loader(ds, batch_size=3, seed=5, num_workers=2), 4) == _take(
        build_train_loader(ds, batch_size=3, seed=5), 4
    )


def test_test_loader_is_ordered():
    batches = list(build_test_loader(_Toy(5), batch_size=2))
    assert [[t["index"] for t in targets] for _, targets in batches] == [[0, 1], [2, 3], [4]]


def test_an_iteration_left_open_with_workers_does_not_hang_the_exit(tmp_path):
    # a user's loop that breaks out and keeps the iterator: at the interpreter's exit multiprocessing sent
    # the workers SIGTERM, which they ignore, and joined them forever
    import os
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    script = tmp_path / "left_open.py"
    script.write_text(textwrap.dedent("""
        import torch
        from maskrcnn.data.loader import build_train_loader

        class DS(torch.utils.data.Dataset):
            def __len__(self):
                return 8

            def __getitem__(self, key):
                return torch.zeros(1), {"index": key[0]}

        it = iter(build_train_loader(DS(), batch_size=2, num_workers=2))
        print(len(next(it)[1]), flush=True)
    """))
    root = str(Path(__file__).resolve().parents[2])
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=20,
                          env={**os.environ, "PYTHONPATH": root})  # it never ended
    assert done.returncode == 0 and done.stdout == "2\n", done.stderr
