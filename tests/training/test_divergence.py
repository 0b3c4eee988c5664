"""The divergence guard alone (engine/divergence.py): what it calls divergence and what it calls noise."""

import random

import pytest

from maskrcnn.engine.divergence import DivergenceGuard


def _feed(guard, losses):
    """-> the 1-based index of the loss at which the guard reported divergence, or None."""
    for i, loss in enumerate(losses, 1):
        if guard.update(loss):
            return i
    return None


def test_a_loss_that_stays_exploded_stops_after_patience_iterations():
    guard = DivergenceGuard(factor=20, window=10, patience=5)
    losses = [1.0, 0.9, 1.1, 0.8, 1.2] + [30.0, 1e4, 1e6, 2e5, 5e7, 1e8]
    assert _feed(guard, losses) == 10  # the 5th loss above 20 x median(1.0, 0.9, 1.1, 0.8, 1.2) = 20
    assert guard.median == 1.0 and guard.streak == 5
    # the exploded losses never entered the reference
    assert list(guard.history) == [1.0, 0.9, 1.1, 0.8, 1.2]


def test_spikes_shorter_than_patience_and_a_fast_early_drop_are_noise():
    guard = DivergenceGuard(factor=20, window=10, patience=5)
    rng = random.Random(0)
    falling = [10.0 * 0.7**i for i in range(15)]  # the first iterations: the loss drops 50x
    noisy = [rng.uniform(0.1, 0.5) for _ in range(200)]
    for start, length in ((20, 1), (60, 2), (120, 4)):  # spikes of 1, 2 and 4 iterations, 100x the level
        noisy[start : start + length] = [50.0] * length
    assert _feed(guard, falling + noisy) is None
    assert guard.streak == 0 and 50.0 not in guard.history  # spikes are left out of the reference


def test_exactly_the_threshold_is_not_flagged_and_zero_turns_it_off():
    guard = DivergenceGuard(factor=10, window=3, patience=2)
    assert _feed(guard, [1.0, 1.0, 1.0, 10.0, 10.0, 10.0]) is None  # 10 is not above 10 x 1
    assert _feed(DivergenceGuard(factor=0, window=3, patience=1), [1.0] * 3 + [1e30] * 50) is None
    # a median of 0 (a loss that cannot fall further) gives no ratio: nothing is flagged
    assert _feed(DivergenceGuard(factor=10, window=3, patience=1), [0.0] * 3 + [1.0] * 10) is None


def test_state_round_trip_continues_exactly():
    losses = [1.0, 0.8, 0.9, 0.7] + [50.0, 60.0] + [0.5, 40.0, 45.0, 70.0]
    whole = DivergenceGuard(factor=20, window=4, patience=3)
    assert _feed(whole, losses) == 10
    first = DivergenceGuard(factor=20, window=4, patience=3)
    assert _feed(first, losses[:8]) is None
    state = first.state_dict()
    assert state == {"history": [0.8, 0.9, 0.7, 0.5], "streak": 1}  # the window's last 4 good losses
    resumed = DivergenceGuard(factor=20, window=4, patience=3)
    resumed.load_state_dict(state)
    assert _feed(resumed, losses[8:]) == 2  # iteration 10, as without the interruption
    fresh = DivergenceGuard(factor=20, window=4, patience=3)
    fresh.load_state_dict(None)  # a checkpoint written before the guard existed
    assert fresh.state_dict() == {"history": [], "streak": 0}


@pytest.mark.parametrize("kwargs", [dict(factor=-1, window=3, patience=1), dict(factor=float("nan"), window=3,
                                    patience=1), dict(factor=20, window=0, patience=1),
                                    dict(factor=20, window=3, patience=0)])  # fmt: skip
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError, match="must be >= "):
        DivergenceGuard(**kwargs)
