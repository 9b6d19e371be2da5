"""optimizer.warmup_steps / lr_decay_style reach megatron-core's OptimizerParamScheduler; the default stays constant."""

from tests.dist import free_port
from tests.policy.parallel_utils import batches, tiny_cfg


def _lrs_and_wds(*overrides: str, steps: int = 4):
    from cod_megatron.config import finalize
    from cod_megatron.policy.distributed import destroy_distributed, init_distributed
    from cod_megatron.policy.trainer import PolicyTrainer

    cfg = tiny_cfg("model.num_layers=1", "optimizer.lr=1e-3", *overrides)
    layout = finalize(cfg)
    init_distributed(layout, master_port=free_port())
    try:
        trainer = PolicyTrainer(cfg, layout)
        groups = lambda: [(float(g["lr"]), float(g["weight_decay"])) for g in trainer.optimizer.param_groups]  # noqa: E731
        seen = [groups()]
        for _ in range(steps):
            trainer.train_step(batches(cfg.model.vocab_size, n=1))
            seen.append(groups())
        return seen
    finally:
        destroy_distributed()


def test_default_schedule_is_constant_and_keeps_megatrons_weight_decay():
    seen = _lrs_and_wds()
    assert all(s == seen[0] for s in seen)
    # megatron's wd_mult: norms and biases are not decayed (before the scheduler existed every group was)
    assert {lr for lr, _ in seen[0]} == {1e-3} and {wd for _, wd in seen[0]} == {0.0, 0.01}


def test_warmup_ramps_linearly_to_the_peak():
    seen = _lrs_and_wds("optimizer.warmup_steps=4")
    peak = [lr for lr, _ in seen[0]]
    assert peak == [0.0] * len(peak)  # megatron's convention: the warmup starts at lr 0 (lr_warmup_init)
    for k in range(1, 5):
        assert all(abs(lr - 1e-3 * k / 4) < 1e-12 for lr, _ in seen[k])


def test_cosine_decay_reaches_min_lr_at_the_last_step():
    seen = _lrs_and_wds("optimizer.lr_decay_style=cosine", "optimizer.min_lr=1e-4", "run.steps=4")
    assert all(abs(lr - 1e-3) < 1e-12 for lr, _ in seen[0])
    assert all(abs(lr - 1e-4) < 1e-12 for lr, _ in seen[4])
