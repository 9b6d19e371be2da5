"""Off-policy rollouts: stale batches are dropped at hand-over, never trained on; producer errors surface."""

import itertools

import pytest

from cod_megatron.rollout.pipeline import OffPolicyRollouts, SyncRollouts


def test_batches_older_than_the_bound_are_dropped_and_counted():
    versions = itertools.chain([0, 0], itertools.repeat(4))  # the producer reads the version once per batch
    src = OffPolicyRollouts(lambda i: f"batch{i}", lambda: next(versions), first=10)
    try:
        batch, dropped = src.next(step=6, trainer_version=5, max_staleness=2)
        assert (batch.result, batch.version, batch.index, dropped) == ("batch12", 4, 12, 2)
        batch, dropped = src.next(step=7, trainer_version=5, max_staleness=2)
        assert (batch.index, dropped) == (13, 0)  # in order, nothing skipped once fresh
    finally:
        src.close()


def test_a_producer_error_reaches_the_trainer():
    def boom(i):
        raise ConnectionError("engine gone")

    src = OffPolicyRollouts(boom, lambda: 0, first=1)
    with pytest.raises(RuntimeError, match="producer failed") as e:
        src.next(step=1, trainer_version=0, max_staleness=1)
    assert isinstance(e.value.__cause__, ConnectionError)
    src.close()


def test_sync_rollouts_generate_for_the_step_with_the_current_version():
    batch, dropped = SyncRollouts(lambda i: i * 10, lambda: 7).next(step=3, trainer_version=7, max_staleness=0)
    assert (batch.result, batch.version, dropped) == (30, 7, 0)
