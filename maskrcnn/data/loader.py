"""Batching: collate, a seeded resumable infinite training sampler, aspect-ratio grouping, sharding.

Shapes: a batch is (images, targets), two lists of length B (images (3, Hi, Wi) of different sizes,
padding happens in the model). N images in the dataset; P processes (world_size), this one is rank r.

The training order is a pure function of (seed, iteration): epoch e's order is a permutation drawn
from (seed, e); images are grouped by orientation (landscape h <= w, portrait h > w) so a batch holds
images of one orientation (less padding); the epoch's batches are then shuffled. Global batch t holds
B * P images; rank r takes its r-th slice. Every sample carries its own augmentation seed drawn from
(seed, t, position), so a run resumed at iteration t (``start_iter=t``) sees exactly the batches,
images and augmentations an uninterrupted run would have seen, whatever the number of workers.

Repeat-factor sampling (``repeat_factors``, r_i >= 1 per image; ``data/repeat_factors.py``): epoch e's
pool holds image i floor(r_i) times plus once more with probability frac(r_i), drawn from (seed, e, 3),
a stream of its own; the pool is then permuted, grouped and batched as above. Epochs then differ in
length, so iteration t's epoch is found from the cumulative lengths (cheap: one uniform per image and
epoch). Without factors the pool is every image once and the batches are those of a sampler that never
had the option (bit-identical: the same permutation draw of the same generator).
"""

from __future__ import annotations

import atexit
import bisect
import math
import random
import signal
import warnings
import weakref
from typing import Iterator, List, Optional, Sequence

import numpy as np
import torch

from maskrcnn.data.repeat_factors import draw_repeats

__all__ = ["TrainBatchSampler", "TrainLoader", "build_test_loader", "build_train_loader", "collate"]


def collate(batch: Sequence) -> tuple:
    """[(image, target), ...] -> ([image, ...], [target, ...]); images keep their own sizes."""
    images, targets = zip(*batch) if batch else ((), ())
    return list(images), list(targets)


def _seed_of(*values: int) -> int:
    """A 63-bit seed mixing integers (stable across runs, platforms and Python hash seeds)."""
    return (
        int(
            np.random.SeedSequence([int(v) & 0xFFFFFFFFFFFFFFFF for v in values]).generate_state(
                2, np.uint64
            )[0]
        )
        >> 1
    )


class TrainBatchSampler:
    """Infinite batches of (dataset index, augmentation seed) pairs for one rank.

    ``aspect_ratios`` (height / width per image) enable grouping; None puts all images in one group.
    ``repeat_factors`` (r_i >= 1 per image) enable repeat-factor sampling; None shows each image once
    per epoch.
    """

    def __init__(
        self,
        num_images: int,
        *,
        batch_size: int,
        seed: int = 0,
        aspect_ratios: Optional[Sequence[float]] = None,
        rank: int = 0,
        world_size: int = 1,
        start_iter: int = 0,
        repeat_factors: Optional[Sequence[float]] = None,
    ):
        if num_images <= 0:
            raise ValueError("cannot sample batches from an empty dataset")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        if aspect_ratios is not None and len(aspect_ratios) != num_images:
            raise ValueError(f"{len(aspect_ratios)} aspect ratios for {num_images} images")
        if repeat_factors is not None:
            repeat_factors = np.asarray(repeat_factors, dtype=np.float64)
            if repeat_factors.shape != (num_images,):
                raise ValueError(f"{len(repeat_factors)} repeat factors for {num_images} images")
            if not (np.isfinite(repeat_factors).all() and (repeat_factors >= 1.0).all()):
                raise ValueError("repeat factors must be finite numbers >= 1")
        self.repeat_factors = repeat_factors
        self.num_images = num_images
        self.batch_size = batch_size
        self.seed = int(seed)
        self.rank = rank
        self.world_size = world_size
        self.iteration = int(start_iter)
        self.global_batch = batch_size * world_size
        if aspect_ratios is None:
            self.portrait = np.zeros(num_images, dtype=bool)
        else:
            self.portrait = np.asarray(aspect_ratios, dtype=np.float64) > 1.0
        # batches in an epoch without repeat factors (with them: ``epoch_length(e)``, epoch by epoch)
        self.batches_per_epoch = math.ceil(num_images / self.global_batch)
        self._epoch_starts = [0]  # first iteration of epochs 0, 1, ... (repeat factors), grown on demand
        self._cached_epoch: Optional[int] = None
        self._cached_batches: Optional[np.ndarray] = None

    def epoch_pool(self, epoch: int) -> np.ndarray:
        """(M,) the dataset indices epoch ``epoch`` shows, in index order (M = N without repeat factors)."""
        if self.repeat_factors is None:
            return np.arange(self.num_images)
        rng = np.random.Generator(np.random.PCG64(_seed_of(self.seed, epoch, 3)))
        return np.repeat(np.arange(self.num_images), draw_repeats(self.repeat_factors, rng))

    def epoch_length(self, epoch: int) -> int:
        """Batches in epoch ``epoch``."""
        if self.repeat_factors is None:
            return self.batches_per_epoch
        return math.ceil(len(self.epoch_pool(epoch)) / self.global_batch)

    def locate(self, iteration: int) -> tuple:
        """(epoch, position in the epoch) of batch number ``iteration``."""
        if self.repeat_factors is None:
            return divmod(iteration, self.batches_per_epoch)
        starts = self._epoch_starts
        while starts[-1] <= iteration:
            starts.append(starts[-1] + self.epoch_length(len(starts) - 1))
        epoch = bisect.bisect_right(starts, iteration) - 1
        return epoch, iteration - starts[epoch]

    def _epoch_batches(self, epoch: int) -> np.ndarray:
        """(epoch_length(epoch), global_batch) dataset indices of one epoch."""
        if epoch == self._cached_epoch:
            return self._cached_batches
        pool = self.epoch_pool(epoch)  # (M,)
        rng = np.random.Generator(np.random.PCG64(_seed_of(self.seed, epoch)))
        order = pool[rng.permutation(len(pool))]  # without factors: rng.permutation(N) itself
        b = self.global_batch
        full, leftovers = [], []
        for group in (order[~self.portrait[order]], order[self.portrait[order]]):
            n_full = len(group) // b * b
            full.extend(group[:n_full].reshape(-1, b))  # same-orientation batches
            leftovers.append(group[n_full:])
        rest = np.concatenate(leftovers)
        if len(rest):
            # The few images left over mix orientations; the last batch is topped up from the epoch start.
            n_rest = math.ceil(len(rest) / b) * b
            rest = np.concatenate([rest, np.resize(order, n_rest - len(rest))])
            full.extend(rest.reshape(-1, b))
        batches = np.stack(full)[rng.permutation(len(full))]  # (batches_per_epoch, B * P)
        self._cached_epoch, self._cached_batches = epoch, batches
        return batches

    def batch(self, iteration: int) -> List[tuple]:
        """This rank's batch number ``iteration``: [(index, augmentation seed), ...]."""
        epoch, position = self.locate(iteration)
        indices = self._epoch_batches(epoch)[position]
        lo = self.rank * self.batch_size
        return [
            (int(indices[k]), _seed_of(self.seed, iteration, k, 1)) for k in range(lo, lo + self.batch_size)
        ]

    def __iter__(self) -> Iterator[List[tuple]]:
        while True:
            yield self.batch(self.iteration)
            self.iteration += 1

    def state_dict(self) -> dict:
        return {"seed": self.seed, "iteration": self.iteration}

    def load_state_dict(self, state: dict) -> None:
        if int(state["seed"]) != self.seed:
            raise ValueError(f"sampler state has seed {state['seed']}, this sampler uses {self.seed}")
        self.iteration = int(state["iteration"])


def _worker_init(seed: int, rank: int):
    def init(worker_id: int) -> None:
        # Ctrl-C in a terminal reaches the whole process group: a worker it ended left the main process,
        # which stops at the end of its iteration and saves, waiting for a batch that never came
        # ('DataLoader worker exited unexpectedly', nothing saved). The main process handles it and
        # shuts the workers down. SIGTERM to the group (timeout, a scheduler, kill -- -PGID) likewise: the
        # main process saves at the end of its iteration and exits 143.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        # Augmentation draws from per-sample seeds; this only makes any other randomness reproducible.
        s = _seed_of(seed, rank, worker_id, 2)
        torch.manual_seed(s)
        np.random.seed(s % (2**32))
        random.seed(s)
        # each worker keeps its own record of unreadable images: warned there, each was said once per
        # worker; the samples carry the warnings to the main process instead (TrainLoader says each once)
        _defer_unread_warnings(torch.utils.data.get_worker_info().dataset)

    return init


def _defer_unread_warnings(dataset, depth: int = 0) -> None:
    """Set ``defer_unread_warnings`` on ``dataset`` and the datasets it wraps (``.dataset``, ``.datasets``)
    that have it (``CocoDataset``)."""
    if dataset is None or depth > 8:
        return
    if hasattr(dataset, "defer_unread_warnings"):
        dataset.defer_unread_warnings = True
    _defer_unread_warnings(getattr(dataset, "dataset", None), depth + 1)
    for inner in getattr(dataset, "datasets", None) or ():
        _defer_unread_warnings(inner, depth + 1)


def _say_unread(targets, said: set) -> None:
    """Warn, once per loader, each unreadable-image warning a worker put in a sample's target."""
    from maskrcnn.data.coco import UNREAD_WARNINGS

    for target in targets:
        for message in target.pop(UNREAD_WARNINGS, ()) if isinstance(target, dict) else ():
            if message not in said:
                said.add(message)
                warnings.warn(message, stacklevel=3)


# The worker-holding iterators of TrainLoader iterations not yet finished (weakly: a finished or collected
# one drops out). An iteration left open (a user's loop that breaks out and keeps the generator, a notebook)
# kept its workers to the interpreter's exit, where multiprocessing ends its daemonic children with SIGTERM,
# which our workers ignore (``_worker_init``), and then joins them: the process never exited. This module's
# exit hook, registered after multiprocessing's (its workers exist by then) and so run before it, tells
# them to stop as the end of an iteration does.
_OPEN_ITERATIONS: weakref.WeakSet = weakref.WeakSet()
_EXIT_HOOK: list = []


def _shut_down_at_exit(batches) -> None:
    if not _EXIT_HOOK:
        atexit.register(_shut_down_open_iterations)
        _EXIT_HOOK.append(True)
    _OPEN_ITERATIONS.add(batches)


def _shut_down_open_iterations() -> None:
    for batches in list(_OPEN_ITERATIONS):
        shutdown = getattr(batches, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()


class TrainLoader:
    """Yields (images, targets) batches forever; ``iteration`` counts the batches handed out so far
    (including ``start_iter``), ``state_dict()`` stores it for resuming."""

    def __init__(self, dataset, sampler: TrainBatchSampler, *, num_workers: int = 0):
        self.dataset = dataset
        self.sampler = sampler
        self.num_workers = num_workers
        self.iteration = sampler.iteration
        self._said: set = set()  # the workers' unreadable-image warnings said so far

    def __iter__(self):
        self.sampler.iteration = self.iteration
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_sampler=self.sampler,
            num_workers=self.num_workers,
            collate_fn=collate,
            worker_init_fn=_worker_init(self.sampler.seed, self.sampler.rank) if self.num_workers else None,
            persistent_workers=False,
        )
        batches = iter(loader)
        if self.num_workers:
            _shut_down_at_exit(batches)
        try:
            for batch in batches:
                self.iteration += 1
                if self.num_workers:
                    _say_unread(batch[1], self._said)
                yield batch
        finally:
            # Workers ignore SIGTERM (see _worker_init), so they must be told to stop: an iterator left
            # alive (a worker's error holds it in its traceback) kept them waiting for work while the
            # process, exiting, waited for them. torch's iterator does this when it is collected.
            shutdown = getattr(batches, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()
            _OPEN_ITERATIONS.discard(batches)

    def state_dict(self) -> dict:
        return {"seed": self.sampler.seed, "iteration": self.iteration}

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state)
        self.iteration = self.sampler.iteration


def build_train_loader(
    dataset,
    *,
    batch_size: int,
    num_workers: int = 0,
    seed: int = 0,
    aspect_ratio_grouping: bool = True,
    rank: int = 0,
    world_size: int = 1,
    start_iter: int = 0,
    repeat_factors: Optional[Sequence[float]] = None,
) -> TrainLoader:
    """An infinite, seeded, resumable training loader; ``batch_size`` images per process (rank).

    The dataset is indexed with ``(index, augmentation_seed)`` tuples (``CocoDataset`` accepts them);
    ``aspect_ratios()`` on the dataset, when present, enables grouping; ``repeat_factors`` (one r_i >= 1
    per image, ``data/repeat_factors.py``, computed once by the caller) enable repeat-factor sampling. A
    trainer's
    ``make_batches(start_iter)`` is ``iter(build_train_loader(..., start_iter=start_iter))``."""
    ratios = None
    if aspect_ratio_grouping and hasattr(dataset, "aspect_ratios"):
        ratios = dataset.aspect_ratios()
    sampler = TrainBatchSampler(
        len(dataset),
        batch_size=batch_size,
        seed=seed,
        aspect_ratios=ratios,
        rank=rank,
        world_size=world_size,
        start_iter=start_iter,
        repeat_factors=repeat_factors,
    )
    return TrainLoader(dataset, sampler, num_workers=num_workers)


def build_test_loader(dataset, *, batch_size: int = 1, num_workers: int = 0) -> torch.utils.data.DataLoader:
    """Every image once, in dataset order."""
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate
    )
