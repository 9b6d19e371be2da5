"""Memory planner: the arithmetic by hand on a small case, the recipes' verdicts, rejection of over-sized layouts."""

import dataclasses

import pytest

import cod_recipes
from cod_megatron.config import ConfigError, ParallelConfig, ParallelLayout, RunConfig, finalize
from cod_megatron.config.memory import (
    GIB,
    activation_bytes_per_token_layer,
    check_fits,
    kv_bytes_per_token,
    params_per_rank,
    plan_memory,
)
from cod_recipes.models import tiny_qwen3

H100 = ["qwen3_8b_cod_8gpu_h100", "llama3_70b_cod_64gpu_h100"]


def small_cfg() -> RunConfig:
    cfg = RunConfig()
    # the recipes' tiny model (4 layers, 2 query groups) at sizes small enough for the arithmetic by hand
    cfg.model = dataclasses.replace(
        tiny_qwen3(),
        arch="llama",
        hidden_size=8,
        ffn_hidden_size=16,
        num_attention_heads=2,
        kv_channels=4,
        vocab_size=32,
        max_position_embeddings=4096,
        params_dtype="bfloat16",
    )
    cfg.parallel = ParallelConfig(tp=2, pp=2, dp=2, sequence_parallel=True, engines=8, engine_tp=1, colocated=True)
    cfg.optimizer.micro_batch_tokens = 1000
    cfg.rollout.packs_per_step, cfg.rollout.group_size, cfg.rollout.max_model_len = 2, 4, 12_000
    cfg.rollout.off_policy = False  # colocated SGLang engines are released during the train step
    return cfg


def test_small_case_matches_the_arithmetic_by_hand():
    cfg = small_cfg()
    layout = finalize(cfg)
    # layer: q, k, v, o 8x8 each -> 256; MLP 3 x 8 x 16 = 384; two norms 16 -> 656
    # heaviest rank: 4/2 layers x 656 / tp 2 = 656, plus the vocab-parallel embedding 32 x 8 / 2 = 128, plus norm 8
    assert params_per_rank(cfg.model, layout) == 656 + 128 + 8 == 792
    # per token and layer: 8h / tp (SP) = 32; q,k,v 2*(8+16) = 48, attention out 16, LSE 4*2 = 8, SwiGLU 8*16 = 128
    # -> 32 + (48 + 16 + 8 + 128) / tp 2 = 132 bytes
    assert activation_bytes_per_token_layer(cfg.model, layout) == 132
    # K and V: 2 x 4 layers x 2 groups x 4 dims x 2 bytes
    assert kv_bytes_per_token(cfg.model) == 128
    train = plan_memory(cfg, layout).phases[0].items
    assert train["weights"] == pytest.approx(792 * 2 / GIB)
    assert train["grads (fp32)"] == pytest.approx(792 * 4 / GIB)
    assert train["optimizer"] == pytest.approx(792 * 12 / 2 / GIB)  # distributed over dp=2
    # first stage keeps pp=2 micro-batches of 2 layers: 4 layers x 132 B x 1000 tokens (no vpp)
    assert train["activations"] == pytest.approx(4 * 132 * 1000 / GIB)
    rollout = plan_memory(cfg, layout).phases[1].items
    # ceil(2 packs x 4 rollouts / 8 engines) = 1 sequence of 12000 tokens, 128 B each, engine_tp 1
    assert rollout["kv cache"] == pytest.approx(12_000 * 128 / GIB)


def test_distributed_optimizer_shards_over_dp_and_cp():
    cfg = small_cfg()
    cfg.parallel.cp = 2
    cfg.parallel.engines = 16
    sharded = plan_memory(cfg, finalize(cfg)).phases[0].items["optimizer"]
    cfg.optimizer.use_distributed_optimizer = False
    assert plan_memory(cfg, finalize(cfg)).phases[0].items["optimizer"] == pytest.approx(4 * sharded)


def test_context_parallelism_splits_the_micro_batch():
    cfg = small_cfg()
    base = plan_memory(cfg, finalize(cfg)).phases[0].items["activations"]
    cfg.parallel.cp, cfg.parallel.engines = 2, 16
    assert plan_memory(cfg, finalize(cfg)).phases[0].items["activations"] == pytest.approx(base / 2)


@pytest.mark.parametrize("recipe", H100)
def test_h100_recipes_fit_at_8k_tokens_per_micro_batch(recipe):
    cfg = cod_recipes.get(recipe)
    cfg.optimizer.micro_batch_tokens = 8192
    plan = check_fits(cfg, finalize(cfg), gpu_gb=80)
    assert all(p.total_gib < 80 for p in plan.phases)


@pytest.mark.parametrize("recipe", H100)
def test_h100_recipes_fit_as_shipped(recipe):
    cfg = cod_recipes.get(recipe)
    check_fits(cfg, finalize(cfg), gpu_gb=80)


def test_70b_at_tp1_pp1_is_rejected_naming_the_model_parallel_factor():
    cfg = cod_recipes.get("llama3_70b_cod_64gpu_h100")
    cfg.parallel.tp, cfg.parallel.pp, cfg.parallel.vpp, cfg.parallel.sequence_parallel = 1, 1, None, False
    cfg.parallel.dp, cfg.parallel.engines = 32, 4
    with pytest.raises(ConfigError) as err:
        check_fits(cfg, finalize(cfg))
    assert err.value.field == "parallel.tp"
    assert "train phase" in err.value.reason and "GiB per GPU" in err.value.reason


def test_too_many_tokens_blame_the_token_budget():
    cfg = cod_recipes.get("llama3_70b_cod_64gpu_h100")
    cfg.optimizer.micro_batch_tokens, cfg.optimizer.recompute = 65_536, "none"
    with pytest.raises(ConfigError) as err:
        check_fits(cfg, finalize(cfg))
    assert err.value.field == "optimizer.micro_batch_tokens"


def test_colocated_kv_cache_that_cannot_fit_blames_colocation():
    cfg = cod_recipes.get("qwen3_8b_cod_8gpu_h100")
    cfg.optimizer.micro_batch_tokens = 4096
    cfg.rollout.packs_per_step = 64  # 64 sequences of 12000 tokens per TP=1 engine: ~105 GiB of KV cache
    with pytest.raises(ConfigError) as err:
        check_fits(cfg, finalize(cfg))
    assert err.value.field == "parallel.colocated"


def test_table_lists_every_item_and_phase():
    cfg = cod_recipes.get("llama3_70b_cod_64gpu_h100")
    table = plan_memory(cfg, ParallelLayout.from_config(cfg.parallel, cfg.model)).table()
    for word in ("weights", "grads (fp32)", "optimizer", "activations", "kv cache", "train", "engine", "capacity"):
        assert word in table


def hybrid_cfg() -> RunConfig:
    """The tiny Qwen3.5 hybrid (3 Gated DeltaNet layers, 1 attention layer) in the small case's layout."""
    from cod_recipes.models import tiny_qwen3_5

    cfg = small_cfg()
    cfg.model = dataclasses.replace(tiny_qwen3_5(), params_dtype="bfloat16")
    cfg.parallel = ParallelConfig(tp=1, pp=1, dp=8, engines=8, engine_tp=1, colocated=True)
    return cfg


def test_hybrid_caches_kv_only_in_attention_layers_and_a_fixed_state_per_sequence_in_gdn_layers():
    from cod_megatron.config.memory import recurrent_state_bytes_per_sequence

    cfg = hybrid_cfg()
    m = cfg.model
    assert kv_bytes_per_token(m) == 2 * 1 * 2 * 32 * 2  # K and V, 1 attention layer, 2 groups x 32 dims, bf16
    # 3 GDN layers: fp32 state [4 heads, 16, 16] + bf16 conv inputs (q, k: 2 x 16; v: 4 x 16) x (4 - 1) taps
    assert recurrent_state_bytes_per_sequence(m) == 3 * (4 * 4 * 16 * 16 + (2 * 32 + 64) * 3 * 2)
    layout = finalize(cfg)
    short = plan_memory(cfg, layout).phases[1].items
    cfg.rollout.max_model_len *= 2
    long = plan_memory(cfg, layout).phases[1].items
    assert long["kv cache"] == pytest.approx(2 * short["kv cache"])  # KV grows with the length
    sequences = 1  # ceil(2 packs x 4 rollouts / 8 engines)
    assert long["recurrent state"] == short["recurrent state"] == sequences * 3 * (4096 + 768) / GIB  # it does not


def test_a_dense_model_has_no_recurrent_state_item():
    cfg = small_cfg()
    assert "recurrent state" not in plan_memory(cfg, finalize(cfg)).phases[1].items


def test_hybrid_activations_average_the_two_layer_kinds():
    cfg = hybrid_cfg()
    dense = dataclasses.replace(cfg.model, full_attention_interval=0)
    layout = finalize(cfg)
    per_layer, attention_only = (activation_bytes_per_token_layer(m, layout) for m in (cfg.model, dense))
    assert per_layer != attention_only and per_layer > 8 * cfg.model.hidden_size
