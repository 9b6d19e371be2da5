"""The policy architecture: Llama / Qwen2 / Qwen3-style decoders (RMSNorm, SwiGLU, RoPE, GQA) and the Qwen3.5 hybrid
(Gated DeltaNet layers between gated full-attention layers)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cod_megatron.config.base import require


@dataclass(kw_only=True)
class ModelConfig:
    """Decoder-only transformer shape; field names follow megatron-core's TransformerConfig where they exist."""

    arch: Literal["llama", "qwen2", "qwen3", "qwen3_5"] = "qwen3"
    """Family: qwen2 adds a bias on q/k/v; qwen3 adds RMSNorm on q and k (QK-norm); qwen3_5 is the hybrid (the
    ``linear_*`` fields, zero-centred norms, an output gate on attention, partial RoPE)."""
    num_layers: int = 2
    hidden_size: int = 64
    ffn_hidden_size: int = 128
    """SwiGLU inner width (HF ``intermediate_size``)."""
    num_attention_heads: int = 4
    num_query_groups: int = 2
    """Key/value heads (GQA); HF ``num_key_value_heads``."""
    kv_channels: int | None = None
    """Head dimension; None means hidden_size // num_attention_heads (Qwen3 sets it explicitly)."""
    vocab_size: int = 256
    max_position_embeddings: int = 4096
    rope_theta: float = 1_000_000.0
    rope_scaling_factor: float | None = None
    """Llama-3.1 style RoPE scaling factor (8.0 for Llama-3.1/3.3); None disables it."""
    norm_epsilon: float = 1e-6
    rotary_percent: float = 1.0
    """Fraction of each head's dims that RoPE rotates (Qwen3.5: 0.25; HF ``partial_rotary_factor``)."""
    full_attention_interval: int = 0
    """Hybrid only: every n-th layer (n, 2n, ...) is full attention, the others Gated DeltaNet; 0: no GDN layers."""
    linear_num_key_heads: int = 0
    """GDN query/key heads (HF ``linear_num_key_heads``)."""
    linear_num_value_heads: int = 0
    """GDN value heads (a multiple of the key heads); the recurrent state is ``[value heads, dk, dv]`` per layer."""
    linear_key_head_dim: int = 0
    linear_value_head_dim: int = 0
    linear_conv_kernel_dim: int = 4
    """Width of GDN's causal depthwise convolution over q/k/v."""
    tie_word_embeddings: bool = False
    hf_weight_prefix: str = "model."
    """Where the decoder's tensors sit in the HF checkpoint: ``model.`` (``*ForCausalLM``) or ``model.language_model.``
    (Qwen3.5's vision-language checkpoints; their ``model.visual.*`` tower is not trained and is carried unchanged
    into exports). Read from the checkpoint by :func:`cod_megatron.models.hf_config.shapes_from_hf`."""
    params_dtype: Literal["float32", "bfloat16"] = "float32"
    """Parameter dtype: float32 on CPU (tests compare at 1e-5), bfloat16 on GPU."""
    fused_lm_head: bool | None = None
    """A fused LM-head kernel (``cod_kernels``) instead of materialised logits; None: on with CUDA.
    True on CPU: ``pg_head`` runs its row passes as torch ops (``linear_pg_head_rows.TORCH_ROW_PASS``: logits only
    at the loss rows, no interpreter); ``logprob`` runs under ``TRITON_INTERPRET=1`` (tests only: slow)."""
    fused_lm_head_kernel: Literal["pg_head", "logprob"] = "pg_head"
    """Which fused head: ``pg_head`` (``linear_pg_head``: the loss gradient inside the forward, per row chunk, cuBLAS
    GEMMs, dW straight into ``main_grad``; docs/linear_pg_head.md) or ``logprob`` (``fused_linear_logprob``: the
    first design, log-probs in one Triton kernel, logits recomputed in its backward)."""
    lm_head_chunk_rows: int = 2048
    """``pg_head``: loss rows per chunk; one [chunk, V/TP] fp32 logits block is the largest temporary."""
    hf_path: str | None = None
    """Optional HF checkpoint to start from (converted with ``python -m cod_megatron.convert``): a local directory or a
    hub id. When set, the run plays through its tokenizer, chat template and end-of-turn token (``run_renderer``):
    a local directory is checked by the dry run, a hub id is loaded at start."""

    @property
    def head_dim(self) -> int:
        """Head dimension after resolving the default."""
        return self.kv_channels or self.hidden_size // self.num_attention_heads

    @property
    def linear_layers(self) -> list[bool]:
        """Per layer: True for a Gated DeltaNet layer (megatron's ``linear_attention_freq`` pattern)."""
        n = self.full_attention_interval
        return [bool(n) and (i + 1) % n != 0 for i in range(self.num_layers)]

    @property
    def qk_layernorm(self) -> bool:
        """Qwen3 normalises queries and keys per head. For the parameter count and the memory plan only: the config
        sits below ``cod_megatron.models``, whose family decides the layers (tests/models holds the two equal)."""
        return self.arch in ("qwen3", "qwen3_5")

    @property
    def add_qkv_bias(self) -> bool:
        """Qwen2 has a bias on the fused q/k/v projection (parameter count only, like :attr:`qk_layernorm`)."""
        return self.arch == "qwen2"

    def attention_parameters(self) -> int:
        """One full-attention block (projections, q/k norms; Qwen3.5's output gate doubles the query projection)."""
        h, hd = self.hidden_size, self.head_dim
        q, kv = self.num_attention_heads * hd, self.num_query_groups * hd
        gate = q if self.arch == "qwen3_5" else 0
        bias = q + 2 * kv if self.add_qkv_bias else 0
        return h * (q + gate + 2 * kv) + q * h + bias + (2 * hd if self.qk_layernorm else 0)

    def gated_delta_net_parameters(self) -> int:
        """One Gated DeltaNet block: in_proj (q, k, v, z, beta, alpha), conv1d, dt_bias, A_log, out_norm, out_proj."""
        h, qk = self.hidden_size, self.linear_num_key_heads * self.linear_key_head_dim
        nv, v = self.linear_num_value_heads, self.linear_num_value_heads * self.linear_value_head_dim
        in_proj = h * (2 * qk + 2 * v + 2 * nv)
        return in_proj + (2 * qk + v) * self.linear_conv_kernel_dim + 2 * nv + self.linear_value_head_dim + v * h

    def num_parameters(self) -> int:
        """Parameter count (used by the memory budget and in the dry-run summary)."""
        h, f, v = self.hidden_size, self.ffn_hidden_size, self.vocab_size
        mixers = sum(
            self.gated_delta_net_parameters() if linear else self.attention_parameters()
            for linear in self.linear_layers
        )
        return mixers + self.num_layers * (3 * h * f + 2 * h) + v * h * (1 if self.tie_word_embeddings else 2) + h

    def check(self, prefix: str = "model") -> None:
        """Shape rules that do not depend on the parallel layout."""
        for name in (
            "num_layers",
            "hidden_size",
            "ffn_hidden_size",
            "num_attention_heads",
            "num_query_groups",
            "vocab_size",
            "max_position_embeddings",
        ):
            require(getattr(self, name) > 0, f"{prefix}.{name}", "must be positive")
        require(
            self.num_attention_heads % self.num_query_groups == 0,
            f"{prefix}.num_query_groups",
            f"must divide num_attention_heads ({self.num_attention_heads}), got {self.num_query_groups}",
        )
        if self.kv_channels is None:
            require(
                self.hidden_size % self.num_attention_heads == 0,
                f"{prefix}.hidden_size",
                "must be a multiple of num_attention_heads when kv_channels is unset",
            )
        require(
            self.rope_theta > 0 and float(self.rope_theta).is_integer(),
            f"{prefix}.rope_theta",
            f"must be a positive whole number (megatron's rotary_base is an int), got {self.rope_theta}",
        )
        require(self.norm_epsilon > 0, f"{prefix}.norm_epsilon", "must be positive")
        require(self.lm_head_chunk_rows >= 1, f"{prefix}.lm_head_chunk_rows", "must be >= 1")
        require(0 < self.rotary_percent <= 1, f"{prefix}.rotary_percent", "must be in (0, 1]")
        if self.full_attention_interval:
            for name in (
                "linear_num_key_heads",
                "linear_num_value_heads",
                "linear_key_head_dim",
                "linear_value_head_dim",
            ):
                require(getattr(self, name) > 0, f"{prefix}.{name}", "must be positive in a hybrid model")
            require(
                self.linear_num_value_heads % self.linear_num_key_heads == 0,
                f"{prefix}.linear_num_value_heads",
                f"must be a multiple of linear_num_key_heads ({self.linear_num_key_heads})",
            )
        if self.rope_scaling_factor is not None:
            require(self.rope_scaling_factor >= 1.0, f"{prefix}.rope_scaling_factor", "must be >= 1")
