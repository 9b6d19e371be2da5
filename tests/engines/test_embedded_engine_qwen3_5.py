"""The step-0 gate with the Qwen3.5 hybrid: the trainer (megatron, packed THD, per-segment GDN resets) gives the
log-probs the embedded transformers engine sampled with (left-padded batches, GDN's recurrent decode with a cache).
"""

import pytest
import torch

import cod_recipes
from cod_envs import registry
from cod_megatron.cod.credit import assign_credit
from cod_megatron.config import apply_overrides, finalize
from cod_megatron.data.episodes import pack_episodes
from cod_megatron.engines.embedded import EmbeddedEngine
from cod_megatron.models.hf_config import hf_config_from_model
from cod_megatron.rollout.manager import DomainPlay, RolloutManager
from cod_megatron.rollout.pack_source import PackSource
from cod_megatron.rollout.renderers import renderer_for
from cod_megatron.sync.weight_sync import WeightSync
from cod_recipes.debug import HIDDEN_KEY_VOCAB
from cod_recipes.models import tiny_qwen3_5
from tests.dist import free_port


@pytest.fixture(scope="module")
def setup():
    from cod_megatron.policy.distributed import destroy_distributed, init_distributed
    from cod_megatron.policy.trainer import PolicyTrainer

    cfg = apply_overrides(cod_recipes.get("debug_cpu"), ["rollout.packs_per_step=2", "rollout.group_size=4"])
    cfg.model = tiny_qwen3_5()
    cfg.model.vocab_size = HIDDEN_KEY_VOCAB
    layout = finalize(cfg)
    init_distributed(layout, master_port=free_port())
    try:
        trainer = PolicyTrainer(cfg, layout)
        renderer = renderer_for("hidden_key")
        engine = EmbeddedEngine(hf_config_from_model(cfg.model), stop_token_ids=[renderer.end_of_turn_id])
        WeightSync(cfg.model, [engine], bucket_bytes=16 << 10).sync(trainer.model, version=0)
        yield cfg, trainer, renderer, engine
    finally:
        destroy_distributed()


def test_step0_trainer_logprobs_equal_the_engines_with_the_hybrid(setup):
    cfg, trainer, renderer, engine = setup
    assert type(engine.model).__name__ == "Qwen3_5ForCausalLM"
    domain = registry.load("hidden_key")
    manager = RolloutManager(
        [engine], {domain.name: DomainPlay(domain.env)}, renderer, max_new_tokens=8, temperature=1.0, run_seed=7
    )
    result = manager.run(PackSource(domain, cfg).train_packs(1), cfg.rollout.group_size, step=1)
    assert result.failed == 0
    ranks, _ = pack_episodes(assign_credit(result.lifecycles, cfg.algorithm).episodes, budget=256, dp=1)
    batches = ranks[0]
    assert any(len(b.cu_seqlens) > 2 for b in batches)  # several episodes share a packed row
    n = 0
    for b, logp in zip(batches, trainer.compute_logprobs(batches), strict=True):
        m = b.loss_mask.bool()
        n += int(m.sum())
        torch.testing.assert_close(logp[m], b.rollout_logprobs[m], atol=1e-5, rtol=0)
    assert n > 0
