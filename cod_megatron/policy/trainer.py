"""PolicyTrainer: the megatron-core model chunks, DDP, optimizer and one training step over packed micro-batches."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

import torch
import torch.distributed as dist
from megatron.core import parallel_state
from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig, finalize_model_grads
from megatron.core.optimizer import OptimizerConfig as McoreOptimizerConfig
from megatron.core.optimizer import get_megatron_optimizer
from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler
from megatron.core.pipeline_parallel import get_forward_backward_func

from cod_megatron.cod.losses import LossDenominators
from cod_megatron.config import ParallelLayout, RunConfig
from cod_megatron.data import PackedBatch
from cod_megatron.data.denominators import check_samples_known, sample_ids, segment_offsets, step_denominators
from cod_megatron.policy import checkpoint
from cod_megatron.policy.hf_weights import load_hf_weights
from cod_megatron.policy.logprobs import tp_logprobs
from cod_megatron.policy.loss import check_teacher_logprobs, packed_policy_loss
from cod_megatron.policy.microbatches import fixed_shape_microbatches, local_share
from cod_megatron.policy.model import build_model, transformer_config
from cod_megatron.policy.packed_attention import PlannedSeqParams, SegmentPlan
from cod_megatron.policy.pg_head import head_inputs, loss_scale, pg_head, pg_head_loss, pg_loss_fn


def packed_seq_params(batch: PackedBatch) -> PlannedSeqParams:
    """megatron's THD description of a packed micro-batch, with the segment plan the project's attention reads
    (from the host copy of ``cu_seqlens``: once per micro-batch, no device sync)."""
    cu = batch.cu_seqlens.to(torch.int32)
    padded = None if batch.cu_seqlens_padded is None else batch.cu_seqlens_padded.to(torch.int32)
    return PlannedSeqParams(
        qkv_format="thd",
        cu_seqlens_q=cu,
        cu_seqlens_kv=cu,
        cu_seqlens_q_padded=padded,
        cu_seqlens_kv_padded=padded,
        max_seqlen_q=batch.max_seqlen,
        max_seqlen_kv=batch.max_seqlen,
        plan=SegmentPlan(*batch.cu_seqlens_on_host()),
    )


def model_forward(model: torch.nn.Module, batch: PackedBatch, head=None):
    """Run one chunk on a packed batch: tokens go in as batch 1 (``[1, T]``); logits come out ``[1, T, V/TP]``.

    ``head`` replaces the output layer on the last stage (megatron's ``output_processor``): the fused kernel path.
    """
    # position_ids=None: with RoPE, megatron derives positions from cu_seqlens (restarting per segment, CP-aware).
    return model(batch.tokens[None], None, None, packed_seq_params=packed_seq_params(batch), output_processor=head)


@dataclass(frozen=True)
class StepCall:
    """The values one forward(-backward) pass over a step's micro-batches hands to every micro-batch's step.

    Passed as an argument to the forward step (megatron calls it once per micro-batch), never kept on the trainer,
    so one pass's values cannot leak into the next.
    """

    denominators: LossDenominators
    """The step's global loss denominators, on the model's device."""
    forward_only: bool
    """No backward (evaluation, log-probs): the ``pg_head`` path then builds no loss-gradient callback."""
    loss_scale: float = 1.0
    """megatron's grad scale, read once per step for the ``pg_head`` path (1.0 elsewhere)."""
    collect: list[tuple[torch.Tensor, PackedBatch]] | None = None
    """When a list: each micro-batch appends ``(masked log-probs, batch)`` (``compute_logprobs``)."""


def fused_head(batch: PackedBatch, temperature: float = 1.0):
    """An ``output_processor`` that turns the final hidden states into (log-prob, entropy) without logits.

    The Triton kernel tiles the vocab shard with an online max / sum-exp, so no [T, V/TP] tensor exists; only the
    per-row max, sum-exp, target logit and entropy sum cross the TP group. ``logits / T = (hidden / T) @ W^T``, so
    the sampling temperature scales the hidden states.
    """
    from cod_kernels.fused_linear_logprob import fused_linear_logprob

    def head(hidden_states, output_layer, output_weight, **_):
        hidden, weight = head_inputs(hidden_states, output_layer, output_weight, temperature)
        rank = parallel_state.get_tensor_model_parallel_rank()
        return fused_linear_logprob(
            hidden,
            weight,
            batch.labels,
            batch.loss_mask != 0,
            vocab_start=rank * weight.shape[0],
            group=parallel_state.get_tensor_model_parallel_group(),
        )

    return head


class PolicyTrainer:
    """Owns this rank's model chunks, the DDP wrappers and the megatron optimizer."""

    def __init__(self, cfg: RunConfig, layout: ParallelLayout):
        self.cfg, self.layout = cfg, layout
        self.tconfig = transformer_config(cfg.model, layout, recompute=cfg.optimizer.recompute)
        stages = range(layout.vpp) if layout.vpp else [None]
        chunks = [build_model(cfg.model, layout, config=self.tconfig, vp_stage=v) for v in stages]
        ddp_config = DistributedDataParallelConfig(
            grad_reduce_in_fp32=True,
            overlap_grad_reduce=cfg.optimizer.overlap_grad_reduce,
            use_distributed_optimizer=cfg.optimizer.use_distributed_optimizer,
        )
        self.model = [DistributedDataParallel(config=self.tconfig, ddp_config=ddp_config, module=c) for c in chunks]
        o = cfg.optimizer
        self.optimizer = get_megatron_optimizer(
            McoreOptimizerConfig(
                optimizer=o.name,
                lr=o.lr,
                min_lr=o.min_lr,
                weight_decay=o.weight_decay,
                adam_beta1=o.adam_beta1,
                adam_beta2=o.adam_beta2,
                adam_eps=o.adam_eps,
                clip_grad=o.clip_grad,
                use_distributed_optimizer=o.use_distributed_optimizer,
                params_dtype=self.tconfig.params_dtype,
                bf16=self.tconfig.bf16,
            ),
            self.model,
        )
        self.scheduler = OptimizerParamScheduler(
            self.optimizer,
            init_lr=0.0 if o.warmup_steps else o.lr,
            max_lr=o.lr,
            min_lr=o.min_lr,
            lr_warmup_steps=o.warmup_steps,
            lr_decay_steps=max(cfg.run.steps, o.warmup_steps + 1),
            lr_decay_style=o.lr_decay_style,
            start_wd=o.weight_decay,
            end_wd=o.weight_decay,
            wd_incr_steps=1,
            wd_incr_style="constant",
        )
        self.tconfig.finalize_model_grads_func = finalize_model_grads
        self.tconfig.no_sync_func = [m.no_sync for m in self.model] if len(self.model) > 1 else self.model[0].no_sync
        self.step = 0
        fused = cfg.model.fused_lm_head
        self.fused = torch.cuda.is_available() if fused is None else fused
        self.head_kernel = cfg.model.fused_lm_head_kernel
        """With ``fused``: ``pg_head`` (loss gradient inside the head) or ``logprob`` (the first kernel)."""
        self.device = next(self.model[0].parameters()).device
        """Where the micro-batches go: the model's own device (batches are packed on the host)."""

    # ---- forward/backward ----------------------------------------------------------------------------------
    def _forward_step(self, call: StepCall, data_iterator: Iterator[tuple[PackedBatch, int]], model: torch.nn.Module):
        batch, offset = next(data_iterator)
        if self.fused and self.head_kernel == "pg_head":
            return self._pg_head_step(call, model, batch, offset)
        batch = batch.to(self.device)  # this rank's share (CP split, SP padding) only
        # Log-probs of the distribution the engines sample from: softmax(logits / rollout.temperature).
        temperature = self.cfg.rollout.temperature
        output = model_forward(model, batch, fused_head(batch, temperature) if self.fused else None)

        def loss_func(output):
            logits = output[0] if temperature == 1.0 else output[0] / temperature
            logp, ent = output if self.fused else tp_logprobs(logits, batch.labels)
            if call.collect is not None:
                call.collect.append((logp.detach() * batch.loss_mask, batch))
            return packed_policy_loss(logp, ent, batch, call.denominators, self.cfg.algorithm, offset)

        return output, loss_func

    def _pg_head_step(self, call: StepCall, model: torch.nn.Module, batch: PackedBatch, offset: int):
        """The ``pg_head`` forward step: the head computes the loss gradient itself (``policy/pg_head.py``)."""
        rows = (batch.loss_mask != 0).nonzero().squeeze(1)  # on the host batch: no device sync
        batch = batch.to(self.device)
        algo = self.cfg.algorithm
        train = not call.forward_only and torch.is_grad_enabled()
        loss_fn = pg_loss_fn(batch, call.denominators, algo, offset) if train else None
        head = pg_head(
            batch,
            rows.to(self.device, non_blocking=True),
            loss_fn,
            self.cfg.rollout.temperature,
            call.loss_scale,
            self.cfg.model.lm_head_chunk_rows,
        )
        output = model_forward(model, batch, head)

        def loss_func(output):
            if call.collect is not None:
                call.collect.append((output[0].detach() * batch.loss_mask, batch))
            return pg_head_loss(output, batch, call.denominators, algo, offset)

        return output, loss_func

    def _run(
        self,
        batches: list[PackedBatch],
        forward_only: bool,
        denominators: LossDenominators | None = None,
        collect: list[tuple[torch.Tensor, PackedBatch]] | None = None,
    ) -> dict[str, float]:
        """Forward (and backward) over ``batches``; ``denominators`` default to these batches alone (DP = 1);
        ``collect``: see :attr:`StepCall.collect`."""
        if denominators is None and self.layout.dp > 1:
            raise ValueError("with dp > 1 pass the step's LossDenominators over every DP rank's micro-batches")
        if (
            denominators is not None
            and self.cfg.algorithm.loss_agg != "token_mean"
            and any(b.sample_ids is None for b in batches)
        ):
            raise ValueError(
                f"loss_agg={self.cfg.algorithm.loss_agg!r} with given denominators needs batches with "
                "global sample_ids (pack_episodes sets them)"
            )
        check_teacher_logprobs(batches, self.cfg.algorithm)
        offsets = segment_offsets(batches)
        if denominators is not None and self.cfg.algorithm.loss_agg == "seq_mean_token_mean":
            for b, o in zip(batches, offsets, strict=True):  # on the host, once per micro-batch (not per chunk)
                check_samples_known(b.loss_mask, sample_ids(b, o), denominators)
        pg = self.fused and self.head_kernel == "pg_head" and not forward_only
        call = StepCall(
            denominators=(denominators or step_denominators(batches)).to(self.device),
            forward_only=forward_only,
            loss_scale=loss_scale(self.tconfig, self.device) if pg else 1.0,  # once per step
            collect=collect,
        )
        items = [(local_share(b, self.layout), o) for b, o in zip(batches, offsets, strict=True)]
        seq_length = max(b.num_tokens for b, _ in items)  # 1F1B: a hint only, variable_seq_lengths exchanges shapes
        if self.layout.vpp:
            items, seq_length = fixed_shape_microbatches(items, self.layout.pp)
        iters = [iter(items) for _ in self.model]
        out = get_forward_backward_func()(
            forward_step_func=partial(self._forward_step, call),
            data_iterator=iters if len(iters) > 1 else iters[0],
            model=self.model if len(self.model) > 1 else self.model[0],
            num_microbatches=len(items),
            seq_length=seq_length * self.layout.cp,  # megatron divides by cp (and by tp under SP) for the p2p shape
            micro_batch_size=1,
            forward_only=forward_only,
        )
        return self._reduce_metrics(out)

    def _reduce_metrics(self, per_microbatch: list[dict[str, torch.Tensor]]) -> dict[str, float]:
        """``sum / count`` of every ``[sum, count]`` metric over micro-batches and DP x CP, on every PP stage."""
        # The union: an all-padding filler micro-batch (interleaved schedule) has no rollout log-probs to compare.
        keys = [sorted(set().union(*per_microbatch))] if per_microbatch else [None]
        if dist.is_initialized() and parallel_state.get_pipeline_model_parallel_world_size() > 1:
            last = parallel_state.get_pipeline_model_parallel_last_rank()
            dist.broadcast_object_list(keys, src=last, group=parallel_state.get_pipeline_model_parallel_group())
        keys = keys[0]
        totals = torch.zeros(len(keys), 2, dtype=torch.float64)
        none = torch.zeros(2, dtype=torch.float64)
        for m in per_microbatch:
            totals += torch.stack([m[k].double().cpu() if k in m else none for k in keys])
        if dist.is_initialized():
            dev = "cpu" if not torch.cuda.is_available() else torch.cuda.current_device()
            t = totals.to(dev)
            dist.all_reduce(t, group=parallel_state.get_pipeline_model_parallel_group())
            dist.all_reduce(t, group=parallel_state.get_data_parallel_group(with_context_parallel=True))
            totals = t.cpu()
        return {k: (totals[i, 0] / totals[i, 1].clamp(min=1)).item() for i, k in enumerate(keys)} | {
            "num_tokens": totals[0, 1].item()
        }

    def train_step(self, batches: list[PackedBatch], denominators: LossDenominators | None = None) -> dict[str, float]:
        """One optimizer step over ``batches`` (this DP rank's micro-batches; see :meth:`_run` for ``denominators``)."""
        for m in self.model:
            m.train()
            m.zero_grad_buffer()
        self.optimizer.zero_grad()
        metrics = self._run(batches, forward_only=False, denominators=denominators)
        ok, grad_norm, _ = self.optimizer.step()
        self.step += 1
        self.scheduler.step(increment=1)
        return metrics | {"grad_norm": float(grad_norm or 0.0), "update_ok": float(bool(ok))}

    @torch.no_grad()
    def evaluate(self, batches: list[PackedBatch], denominators: LossDenominators | None = None) -> dict[str, float]:
        """Forward-only metrics (the loss the next step would see)."""
        for m in self.model:
            m.eval()
        return self._run(batches, forward_only=True, denominators=denominators)

    @torch.no_grad()
    def compute_logprobs(self, batches: list[PackedBatch]) -> list[torch.Tensor]:
        """Per-token log-probs of ``batches`` under the current weights (0 off the loss mask), one tensor per batch.

        Forward only, same kernels as the training step: the old-policy log-probs of an off-policy update, and the
        step-0 check against the engine's rollout log-probs. Pipeline and context parallelism are not supported here.
        """
        if self.layout.pp > 1 or self.layout.cp > 1:
            raise NotImplementedError("compute_logprobs supports pp = cp = 1")
        for m in self.model:
            m.eval()
        collected: list[tuple[torch.Tensor, PackedBatch]] = []
        denominators = step_denominators(batches) if self.layout.dp > 1 else None
        self._run(batches, forward_only=True, denominators=denominators, collect=collected)
        return [logp[: b.num_tokens] for logp, b in collected]

    # ---- checkpoints ---------------------------------------------------------------------------------------
    def save(self, path: str, with_optimizer: bool = True) -> None:
        """dist-checkpoint (torch_dist) of weights, optimizer state and step: loadable under any TP/PP/CP/DP."""
        checkpoint.save(path, self.model, self.optimizer if with_optimizer else None, step=self.step)

    def load(self, path: str, with_optimizer: bool | None = None) -> None:
        """Load a checkpoint from :meth:`save` or ``cod_megatron.convert`` (``None``: optimizer if it has one).

        Every load that bypasses the optimizer ends in ``reload_model_params``: with bf16 weights megatron's
        optimizer steps fp32 master copies taken when it was built and writes them back after each step, so
        without it the first step would replace the loaded weights by the random init (plus one update).
        """
        if with_optimizer is None:
            with_optimizer = checkpoint.has_optimizer_state(path)
        self.step = checkpoint.load(
            path,
            self.model,
            self.optimizer if with_optimizer else None,
            distributed=self.cfg.optimizer.use_distributed_optimizer,
        )
        self.scheduler.num_steps = 0
        self.scheduler.step(increment=self.step)  # the schedule is a function of the step: nothing else to restore
        if not with_optimizer:
            self.optimizer.reload_model_params()

    def load_hf(self, hf_dir: str) -> None:
        """Start from the HF safetensors in ``hf_dir`` (this rank's TP/PP slices; no collective)."""
        load_hf_weights(self.model, hf_dir, self.cfg.model)
        self.optimizer.reload_model_params()
