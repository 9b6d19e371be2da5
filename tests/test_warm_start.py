"""The warm start has its own settings and a cache key over everything that determines its weights (issue 28 item 2):
an RL run's learning-rate schedule neither reaches the warm start nor picks another run's cached one."""

from pathlib import Path

import pytest

import cod_recipes
from cod_megatron.config import apply_overrides, finalize
from cod_megatron.loop import warm_start
from cod_megatron.policy import trainer as trainer_module
from cod_megatron.rollout.renderers import run_renderer


class RecordingTrainer:
    """Stands in for PolicyTrainer inside ``ensure_warm_start``: records the config it was built with."""

    built: list = []

    def __init__(self, cfg, layout):
        RecordingTrainer.built.append(cfg)
        self.step = 0

    def train_step(self, microbatches, denominators):
        return {"loss": 0.0}

    def save(self, path, with_optimizer):
        Path(path).mkdir(parents=True)


def _cfg(tmp_path: Path, *overrides: str):
    cfg = cod_recipes.get("debug_cpu")
    apply_overrides(cfg, [f"run.output_dir={tmp_path / 'run'}", "env.warm_start_steps=2", "env.warm_start_batch=4"])
    apply_overrides(cfg, list(overrides))
    return cfg, finalize(cfg)


def _trained_with(tmp_path: Path, monkeypatch, *overrides: str):
    """The config the warm start's trainer is built with, and the cache directory it was saved to."""
    monkeypatch.setattr(trainer_module, "PolicyTrainer", RecordingTrainer)
    RecordingTrainer.built = []
    cfg, layout = _cfg(tmp_path, *overrides)
    out = warm_start.ensure_warm_start(cfg, layout, run_renderer(cfg))
    assert len(RecordingTrainer.built) == 1
    return RecordingTrainer.built[0], out


COSINE = ("optimizer.lr_decay_style=cosine", "optimizer.min_lr=1e-4", "optimizer.warmup_steps=5", "run.steps=40")


def test_the_rl_schedule_neither_reaches_the_warm_start_nor_changes_its_cache_key(tmp_path, monkeypatch):
    constant, out_constant = _trained_with(tmp_path / "a", monkeypatch)
    cosine, out_cosine = _trained_with(tmp_path / "b", monkeypatch, *COSINE)
    assert cosine.optimizer.lr_decay_style == "constant" and cosine.optimizer.warmup_steps == 0
    assert cosine.optimizer.lr == cosine.env.warm_start_lr == 1e-3
    assert cosine.optimizer == constant.optimizer and cosine.run.steps == constant.run.steps == 2
    assert out_cosine.name == out_constant.name  # the same cache entry: the schedule does not determine it


def test_the_rl_optimizer_settings_do_not_reach_the_warm_start(tmp_path, monkeypatch):
    plain, _ = _trained_with(tmp_path / "a", monkeypatch)
    other, _ = _trained_with(
        tmp_path / "b", monkeypatch, "optimizer.lr=3e-4", "optimizer.weight_decay=0.1", "algorithm.entropy_coef=0.01"
    )
    assert other.optimizer == plain.optimizer and other.algorithm == plain.algorithm


@pytest.mark.parametrize(
    "override",
    [
        "env.warm_start_lr=5e-4",
        "env.warm_start_steps=3",
        "env.warm_start_batch=8",
        "run.seed=7",
        "model.ffn_hidden_size=96",
        "optimizer.micro_batch_tokens=2048",
        "env.train_domains=code_lock",
        "parallel.tp=2 parallel.engine_tp=2",
    ],
)
def test_every_field_that_determines_the_warm_start_changes_its_cache_key(tmp_path, override):
    base, _ = _cfg(tmp_path)
    changed, _ = _cfg(tmp_path, *override.split())
    assert warm_start.cache_dir(changed) != warm_start.cache_dir(base), override


def test_the_cache_key_covers_the_code_that_trains_the_warm_start(tmp_path, monkeypatch):
    cfg, _ = _cfg(tmp_path)
    before = warm_start.cache_dir(cfg)
    sources = warm_start.TRAINING_SOURCES
    assert {"loop/warm_start.py", "policy/trainer.py", "policy/loss.py", "cod/losses.py"} <= set(sources)
    # a changed training file (here: the trainer swapped for another file) is a different warm start
    monkeypatch.setattr(warm_start, "TRAINING_SOURCES", tuple(s.replace("trainer.py", "model.py") for s in sources))
    assert warm_start.cache_dir(cfg) != before


def test_source_digest_changes_with_one_byte(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("lr = 1\n")
    first = warm_start.source_digest([f])
    f.write_text("lr = 2\n")
    assert warm_start.source_digest([f]) != first


def test_a_mixtures_warm_start_splits_each_batch_by_weight(tmp_path):
    """Issue 32: each domain's own samples, by the training packs' quota rule; one domain's are its hook's."""
    cfg, _ = _cfg(tmp_path, "env.train_domains=hidden_key@3,code_lock@1", "env.warm_start_batch=8")
    hooks = warm_start.warm_start_hooks(cfg)
    assert [h.domain for h in hooks] == ["hidden_key", "code_lock"]
    pairs = warm_start.warm_start_samples(cfg, hooks, step=0)
    seed = cfg.run.seed * 100_003
    assert pairs == hooks[0].hook.samples(6, seed) + hooks[1].hook.samples(2, seed)
    one, _ = _cfg(tmp_path, "env.warm_start_batch=8")
    (hook,) = warm_start.warm_start_hooks(one)
    assert warm_start.warm_start_samples(one, [hook], step=3) == hook.hook.samples(8, seed + 3)
    mixed_key, single_key = warm_start.cache_key(cfg), warm_start.cache_key(one)
    assert mixed_key["domain"] == ["hidden_key@3", "code_lock@1"] and single_key["domain"] == "hidden_key"
