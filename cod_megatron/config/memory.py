"""Per-GPU memory budget of a recipe, so a layout that cannot fit in the GPU is rejected before a job is queued.

Pure arithmetic over :class:`ModelConfig`, :class:`ParallelLayout` and the optimizer/rollout sections; GiB
(2^30 bytes) throughout. What it assumes, matching the trainer in ``cod_megatron/policy``:

* bf16 weights (2 B/param; fp32 on CPU), gradients reduced in fp32 (``grad_reduce_in_fp32=True``: 4 B/param),
  Adam keeping an fp32 master copy plus two moments (12 B/param for bf16, 8 for fp32), sharded over ``dp * cp``
  when ``optimizer.use_distributed_optimizer`` is on (megatron shards over the data-parallel group with CP).
* ``optimizer.recompute="full"``: every layer keeps only its input (``2h`` bytes per token, divided by TP with
  sequence parallelism) and one layer at a time holds its full activations during backward; ``selective``
  recomputes core attention, which with flash attention saves nothing this budget counts, so it is budgeted as
  ``none``.
* Otherwise: flash attention (no ``s^2`` term), no dropout, unfused SwiGLU. Per token and layer the
  saved tensors are the two norm inputs and the two linear inputs (``8h`` bytes, divided by TP only with sequence
  parallelism), q/k/v and the attention output, QK-norm inputs for Qwen3, and the SwiGLU tensors (``8f``), all
  divided by TP (Korthikanti et al. 2022, with GQA and SwiGLU).
* A packed micro-batch holds ``optimizer.micro_batch_tokens`` tokens, split over CP ranks. Under 1F1B the first
  pipeline stage keeps ``pp`` micro-batches of ``L/pp`` layers in flight (``L`` layers' worth), times
  ``1 + (pp-1)/(pp*vpp)`` when interleaved; the last stage keeps one, plus the logits.
* Logits ``[T/cp, V/tp]``: bf16 output, fp32 upcast and the fp32 log-softmax saved for backward (10 B each).
* Colocated engines release weights and KV cache while the trainer steps (a small residual stays) and the trainer
  stays resident during rollouts, so the rollout phase holds trainer weights, grads and optimizer state plus the
  engine's weights and KV cache. Disaggregated engines are budgeted on their own GPUs.
* The KV cache must hold every sequence an engine serves at once at full length:
  ``ceil(packs_per_step * group_size / engines) * max_model_len`` tokens. A hybrid (Qwen3.5) caches K and V only
  in its full-attention layers; each Gated DeltaNet layer holds instead a fixed recurrent state per sequence (fp32
  ``[value heads, dk, dv]`` plus the convolution's last inputs), whatever the length.
* Distillation teachers (``distill.teachers``) hold their weights and a KV cache on their own GPUs, budgeted with the
  student's architecture (the paper's teachers are CoD checkpoints of the student's base); a step's samples are sent
  to a teacher in chunks of a student engine's concurrency, so its cache holds the same sequences as one student
  engine's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from cod_megatron.config.base import ConfigError
from cod_megatron.config.colocation import engines_released_for_train
from cod_megatron.config.layout import ParallelLayout
from cod_megatron.config.model import ModelConfig
from cod_megatron.config.root import RunConfig

GIB = float(1 << 30)
RESERVE_GIB = 5.0
"""CUDA context, NCCL communicator buffers and allocator fragmentation, per GPU."""
ENGINE_RESIDUAL_GIB = 1.0
"""What a colocated SGLang engine keeps while released (CUDA context, graphs' metadata)."""
ENGINE_WORKSPACE_GIB = 3.0
"""SGLang activations and CUDA graphs while serving."""
LOGIT_BYTES = 10
"""Bytes per ``[T, V/tp]`` logit element: bf16 output + fp32 upcast + fp32 log-softmax kept for backward."""


@dataclass(frozen=True)
class PhaseBudget:
    """One phase on one kind of GPU: named items in GiB against the capacity."""

    name: str
    items: dict[str, float]
    capacity_gib: float

    @property
    def total_gib(self) -> float:
        """Sum of the items."""
        return sum(self.items.values())

    @property
    def fits(self) -> bool:
        """Whether the phase stays within the GPU."""
        return self.total_gib <= self.capacity_gib


@dataclass(frozen=True)
class MemoryPlan:
    """The budgets of a recipe: trainer step, rollouts (colocated or on engine GPUs), and the KV need."""

    phases: list[PhaseBudget]
    kv_tokens_per_engine: int
    notes: list[str] = field(default_factory=list)

    def table(self) -> str:
        """A fixed-width table (GiB) for docstrings, the CLI and error messages."""
        names = [p.name for p in self.phases]
        keys: list[str] = []
        for p in self.phases:
            keys += [k for k in p.items if k not in keys]
        width = max(len(k) for k in [*keys, "total", "capacity"]) + 2
        lines = [f"{'GiB per GPU':<{width}}" + "".join(f"{n:>12}" for n in names)]
        for k in keys:
            cells = "".join(f"{p.items[k]:>12.1f}" if k in p.items else f"{'-':>12}" for p in self.phases)
            lines.append(f"{k:<{width}}{cells}")
        lines.append(f"{'total':<{width}}" + "".join(f"{p.total_gib:>12.1f}" for p in self.phases))
        lines.append(f"{'capacity':<{width}}" + "".join(f"{p.capacity_gib:>12.1f}" for p in self.phases))
        return "\n".join(lines)


def param_bytes(model: ModelConfig) -> int:
    """Bytes per parameter of the weights (the dtype the trainer and the engines hold)."""
    return 2 if model.params_dtype == "bfloat16" else 4


def layer_params(model: ModelConfig) -> int:
    """Parameters of one transformer layer (attention, MLP, norms)."""
    return (
        model.num_parameters()
        - model.vocab_size * model.hidden_size * (1 if model.tie_word_embeddings else 2)
        - model.hidden_size
    ) // model.num_layers


def params_per_rank(model: ModelConfig, layout: ParallelLayout) -> int:
    """Parameters on the heaviest trainer rank: ``L/pp`` layers / tp plus the vocab-parallel embedding or head."""
    vocab = model.vocab_size * model.hidden_size // layout.tp
    if layout.pp == 1:
        vocab *= 1 if model.tie_word_embeddings else 2
    return model.num_layers // layout.pp * layer_params(model) // layout.tp + vocab + model.hidden_size


def activation_bytes_per_token_layer(model: ModelConfig, layout: ParallelLayout) -> float:
    """Bytes an average layer saves for backward per token on one rank (bf16 activations, see the module docstring;
    a hybrid model averages its attention and Gated DeltaNet layers)."""
    h, f = model.hidden_size, model.ffn_hidden_size
    replicated = 8 * h  # norm inputs and the inputs of the QKV (GDN: in_proj) and FC1 linears
    linear = sum(model.linear_layers)
    mixers = (model.num_layers - linear) * _attention_saved_bytes(model) + linear * _gdn_saved_bytes(model)
    sharded = mixers / model.num_layers + 8 * f
    tp = layout.tp
    return (replicated / tp if layout.sequence_parallel else replicated) + sharded / tp


def _attention_saved_bytes(model: ModelConfig) -> int:
    """Full attention per token, whole layer (before TP): q/k/v, output and softmax stats, QK-norm inputs, and
    Qwen3.5's output gate (its input and the gated output)."""
    hd = model.head_dim
    q, kv = model.num_attention_heads * hd, model.num_query_groups * hd
    saved = 2 * (q + 2 * kv) + 2 * q + 4 * model.num_attention_heads
    if model.qk_layernorm:
        saved += 2 * (q + kv)
    if model.arch == "qwen3_5":
        saved += 4 * q
    return saved


def _gdn_saved_bytes(model: ModelConfig) -> float:
    """A Gated DeltaNet mixer per token, whole layer (before TP): in_proj output and conv output (bf16), the fp32
    q/k (repeated to the value heads), v, decay and beta the recurrence keeps, its fp32 output, the gated norm's
    inputs, and the fp32 chunk states ``[H, dk, dv]`` the chunked rule keeps every 64 tokens."""
    dk, dv, nv = model.linear_key_head_dim, model.linear_value_head_dim, model.linear_num_value_heads
    qk, v = model.linear_num_key_heads * dk, nv * dv
    saved = 2 * (2 * qk + 2 * v + 2 * nv) + 2 * (2 * qk + v)
    saved += 4 * (2 * nv * dk + v + 2 * nv) + 4 * v + 2 * 2 * v
    return saved + 4 * nv * dk * dv / 64


def kv_bytes_per_token(model: ModelConfig) -> int:
    """K and V of every full-attention layer for one token, whole model (an engine rank holds ``1/engine_tp``)."""
    attention_layers = model.num_layers - sum(model.linear_layers)
    return 2 * attention_layers * model.num_query_groups * model.head_dim * param_bytes(model)


def recurrent_state_bytes_per_sequence(model: ModelConfig) -> int:
    """What a Gated DeltaNet layer keeps per sequence instead of a KV cache, whole model: the fp32 state
    ``[value heads, dk, dv]`` and the last ``K - 1`` inputs of its convolution (weights' dtype); 0 without GDN."""
    dk, dv, nv = model.linear_key_head_dim, model.linear_value_head_dim, model.linear_num_value_heads
    conv = (2 * model.linear_num_key_heads * dk + nv * dv) * (model.linear_conv_kernel_dim - 1) * param_bytes(model)
    return sum(model.linear_layers) * (4 * nv * dk * dv + conv)


def optimizer_bytes_per_param(cfg: RunConfig) -> int:
    """Adam: fp32 master (bf16 only) + two fp32 moments; SGD: master + momentum."""
    master = 4 if cfg.model.params_dtype == "bfloat16" else 0
    return master + (8 if cfg.optimizer.name == "adam" else 4)


def plan_memory(cfg: RunConfig, layout: ParallelLayout, gpu_gb: float = 80.0) -> MemoryPlan:
    """Budget per GPU for the trainer step and the rollouts; ``gpu_gb`` is the device memory in GiB."""
    model, opt = cfg.model, cfg.optimizer
    n_rank = params_per_rank(model, layout)
    shards = layout.dp * layout.cp if opt.use_distributed_optimizer else 1
    weights = n_rank * param_bytes(model) / GIB
    grads = n_rank * 4 / GIB
    optimizer = n_rank * optimizer_bytes_per_param(cfg) / shards / GIB

    tokens = opt.micro_batch_tokens / layout.cp
    per_layer = activation_bytes_per_token_layer(model, layout) * tokens
    working = 0.0  # what one layer's backward holds on top of what every layer keeps
    if opt.recompute == "full":  # each layer keeps its input; one layer at a time is recomputed in full
        working = per_layer
        per_layer = 2 * model.hidden_size / (layout.tp if layout.sequence_parallel else 1) * tokens
    interleave = 1 + (layout.pp - 1) / (layout.pp * layout.vpp) if layout.vpp else 1.0
    first_stage = per_layer * model.num_layers * interleave
    logits = tokens * model.vocab_size / layout.tp * LOGIT_BYTES
    last_stage = per_layer * model.num_layers / layout.pp + logits
    if layout.pp == 1:
        activations, logit_gib = (per_layer * model.num_layers + working) / GIB, logits / GIB
    elif first_stage >= last_stage:
        activations, logit_gib = (first_stage + working) / GIB, 0.0
    else:
        activations, logit_gib = (per_layer * model.num_layers / layout.pp + working) / GIB, logits / GIB

    in_flight = math.ceil(cfg.rollout.packs_per_step * cfg.rollout.group_size / layout.engines)
    kv_tokens = in_flight * cfg.rollout.max_model_len
    engine = {
        "engine weights": model.num_parameters() * param_bytes(model) / layout.engine_tp / GIB,
        "kv cache": kv_tokens * kv_bytes_per_token(model) / layout.engine_tp / GIB,
        **_recurrent_state(model, layout.engine_tp, in_flight),
        "engine workspace": ENGINE_WORKSPACE_GIB,
    }

    train = {"weights": weights, "grads (fp32)": grads, "optimizer": optimizer, "activations": activations}
    train["logits"] = logit_gib
    if engines_released_for_train(cfg.rollout, layout):
        train["engine (released)"] = ENGINE_RESIDUAL_GIB
    elif layout.colocated:  # kept while the trainer steps (an off-policy producer may be generating)
        train |= engine
    train["reserve"] = RESERVE_GIB
    if layout.colocated:
        rollout = {"weights": weights, "grads (fp32)": grads, "optimizer": optimizer, **engine}
        rollout["reserve"] = RESERVE_GIB
        phases = [PhaseBudget("train", train, gpu_gb), PhaseBudget("rollout", rollout, gpu_gb)]
    else:
        engine["reserve"] = RESERVE_GIB
        phases = [PhaseBudget("train", train, gpu_gb), PhaseBudget("engine", engine, gpu_gb)]
    if layout.teachers:  # distillation teachers on their own GPUs, budgeted with the student's architecture
        teacher = {  # scoring is sent in chunks of a student engine's concurrency (in_flight sequences)
            "teacher weights": model.num_parameters() * param_bytes(model) / layout.teacher_engine_tp / GIB,
            "kv cache": kv_tokens * kv_bytes_per_token(model) / layout.teacher_engine_tp / GIB,
            **_recurrent_state(model, layout.teacher_engine_tp, in_flight),
            "engine workspace": ENGINE_WORKSPACE_GIB,
            "reserve": RESERVE_GIB,
        }
        phases.append(PhaseBudget("teacher", teacher, gpu_gb))
    notes = [
        f"{n_rank / 1e9:.2f}B params on the heaviest trainer rank of {model.num_parameters() / 1e9:.2f}B",
        f"{tokens:.0f} tokens per rank per micro-batch; optimizer sharded over {shards}",
        f"KV cache for {in_flight} sequences x {cfg.rollout.max_model_len} tokens per engine",
    ]
    return MemoryPlan(phases=phases, kv_tokens_per_engine=kv_tokens, notes=notes)


def _recurrent_state(model: ModelConfig, engine_tp: int, sequences: int) -> dict[str, float]:
    """An engine's Gated DeltaNet states for every sequence it serves at once (none without GDN layers)."""
    if not any(model.linear_layers):
        return {}
    return {"recurrent state": sequences * recurrent_state_bytes_per_sequence(model) / engine_tp / GIB}


def _blame(cfg: RunConfig, layout: ParallelLayout, phase: PhaseBudget) -> str:
    """The dotted field a user should change first for an over-budget phase."""
    items = phase.items
    if phase.name == "train":
        static = items["weights"] + items["grads (fp32)"] + items["optimizer"] + items["reserve"]
        if static <= phase.capacity_gib:
            return "optimizer.micro_batch_tokens"
        if not cfg.optimizer.use_distributed_optimizer and layout.dp * layout.cp > 1:
            return "optimizer.use_distributed_optimizer"
        return "parallel.tp" if layout.tp < layout.gpus_per_node else "parallel.pp"
    if phase.name == "rollout":
        return "parallel.colocated"
    if phase.name == "teacher":
        return (
            "parallel.teacher_engine_tp"
            if layout.teacher_engine_tp < layout.gpus_per_node
            else "parallel.teacher_engines"
        )
    return "parallel.engine_tp" if layout.engine_tp < layout.gpus_per_node else "rollout.max_model_len"


def check_fits(cfg: RunConfig, layout: ParallelLayout, gpu_gb: float = 80.0) -> MemoryPlan:
    """Return the plan, or raise :class:`ConfigError` naming the field to change when a phase exceeds ``gpu_gb``."""
    plan = plan_memory(cfg, layout, gpu_gb)
    for phase in plan.phases:
        if not phase.fits:
            raise ConfigError(
                _blame(cfg, layout, phase),
                f"the {phase.name} phase needs {phase.total_gib:.1f} GiB per GPU > {gpu_gb:.0f} GiB\n{plan.table()}",
            )
    return plan
