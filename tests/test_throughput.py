"""Per-step throughput metrics: tokens per second and model FLOPs (MFU only where the GPU's peak is known)."""

import pytest

from cod_megatron.config import ModelConfig
from cod_megatron.loop.throughput import model_flops, throughput_metrics


def tiny() -> ModelConfig:
    return ModelConfig(
        num_layers=2, hidden_size=8, ffn_hidden_size=16, num_attention_heads=2, num_query_groups=1, kv_channels=4,
        vocab_size=10, tie_word_embeddings=True,
    )  # fmt: skip


def test_model_flops_count_the_weight_gemms_and_causal_attention_per_segment():
    m = tiny()
    n = m.num_parameters()
    # weights: 6 N per token; attention: 6 L d_q len^2 per segment (two segments, not one of 5 tokens)
    assert model_flops(m, [2, 3]) == 6 * n * 5 + 6 * 2 * (2 * 4) * (4 + 9)
    assert model_flops(m, [5]) > model_flops(m, [2, 3])  # packing segments apart saves attention FLOPs


def test_throughput_from_the_step_timings():
    m = tiny()
    timings = {"time/generate_s": 2.0, "time/train_s": 0.5}
    out = throughput_metrics(timings, generated_tokens=100, model=m, segment_lengths=[2, 3], gpus=2, peak_flops=1e9)
    assert out["perf/generate_tokens_per_s"] == 50.0 and out["perf/train_tokens_per_s"] == 10.0
    flops = model_flops(m, [2, 3])
    assert out["perf/model_tflops_per_gpu"] == pytest.approx(flops / 0.5 / 2 / 1e12)
    assert out["perf/mfu"] == pytest.approx(flops / 0.5 / 2 / 1e9)
    cpu = throughput_metrics(timings, generated_tokens=100, model=m, segment_lengths=[2, 3], gpus=2, peak_flops=None)
    assert "perf/mfu" not in cpu  # no peak, no made-up utilisation
