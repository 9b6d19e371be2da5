"""Gated DeltaNet (Qwen3.5's linear-attention layer) for megatron-core, with packed THD input on any device.

megatron-core's ``GatedDeltaNet`` cannot run here: its constructor raises without flash-linear-attention (FLA, a
Triton package with no CPU path), its forward calls FLA's ``l2norm``, conv and recurrence unconditionally, and its
torch fallback refuses ``cu_seqlens``. This subclass keeps everything a checkpoint sees (the parameters ``in_proj``,
``conv1d``, ``dt_bias``, ``A_log``, ``out_norm``, ``out_proj``, their TP layout and the inherited
``sharded_state_dict``, which splits ``in_proj`` and ``conv1d`` into named q/k/v/z/beta/alpha parts), and replaces
the constructor's FLA gate and the forward with :mod:`cod_megatron.policy.gated_delta_ops`: a causal conv and a
delta-rule recurrence that both restart at every packed segment.

GPU hook (not wired yet): FLA's ``causal_conv1d`` and ``chunk_gated_delta_rule`` take ``cu_seqlens`` and are the
fast path; they belong behind a capability check in place of the two ``*_segments`` calls.

No context parallelism (megatron's all-to-alls are not reproduced): ``context_parallel_size`` must be 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from megatron.core.packed_seq_params import PackedSeqParams
from megatron.core.process_groups_config import ProcessGroupCollection
from megatron.core.ssm.gated_delta_net import GatedDeltaNet, GatedDeltaNetSubmodules
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.spec_utils import build_module
from megatron.core.transformer.transformer_config import TransformerConfig

from cod_megatron.policy import gated_delta_ops as ops
from cod_megatron.policy.packed_attention import SegmentPlan


class PackedGatedDeltaNet(GatedDeltaNet):
    """megatron's GatedDeltaNet parameters and checkpoint layout, computed in torch with per-segment resets.

    Shapes: s sequence, b batch (1 for THD), h hidden; in_proj's output per TP rank is ``[q, k, v, z, beta, alpha]``.
    """

    def __init__(
        self,
        config: TransformerConfig,
        submodules: GatedDeltaNetSubmodules,
        layer_number: int | None = None,
        pg_collection: ProcessGroupCollection | None = None,
        A_init_range: tuple[float, float] = (1, 16),  # noqa: N803 (megatron's name)
        **_: object,
    ):
        MegatronModule.__init__(self, config)  # megatron's own __init__ starts by refusing to run without FLA
        if config.context_parallel_size != 1:
            raise NotImplementedError("PackedGatedDeltaNet has no context parallelism")
        if pg_collection is None:
            pg_collection = ProcessGroupCollection.use_mpu_process_groups(required_pgs=["tp", "cp"])
        self.layer_number, self.bias, self.conv_bias, self.conv_init = layer_number, False, False, None
        self.A_init_range, self.use_qk_l2norm = A_init_range, True
        self.pg_collection, self.tp_group = pg_collection, pg_collection.tp
        self.cp_size, self.tp_size = 1, pg_collection.tp.size()
        self.sp_size = self.tp_size if config.sequence_parallel else 1
        self.hidden_size, self.act_fn = config.hidden_size, config.activation_func
        self.activation = self.act_fn.__name__
        self.conv_kernel_dim = config.linear_conv_kernel_dim
        self.key_head_dim, self.value_head_dim = config.linear_key_head_dim, config.linear_value_head_dim
        self.num_key_heads, self.num_value_heads = config.linear_num_key_heads, config.linear_num_value_heads
        self.qk_dim = self.key_head_dim * self.num_key_heads
        self.v_dim = self.value_head_dim * self.num_value_heads
        self.qk_dim_local_tp, self.v_dim_local_tp = self.qk_dim // self.tp_size, self.v_dim // self.tp_size
        self.num_v_heads_local_tp = self.num_value_heads // self.tp_size
        self.num_k_heads_local_tp = self.num_key_heads // self.tp_size
        self._setup_variant_attrs()  # megatron's in_proj sections and names (the checkpoint split uses them)
        self.in_proj_qkvg_dim = self.qk_dim * 2 + self.v_dim * 2
        self.in_proj_dim = self.in_proj_qkvg_dim + self.in_proj_extra_dim
        self.in_proj = build_module(
            submodules.in_proj,
            self.hidden_size,
            self.in_proj_dim,
            config=config,
            init_method=config.init_method,
            gather_output=False,
            bias=False,
            skip_bias_add=False,
            is_expert=False,
            tp_comm_buffer_name="fc1",
            tp_group=self.tp_group,
        )
        self.conv_dim = self.qk_dim * 2 + self.v_dim
        self.conv_dim_local_tp = self.conv_dim // self.tp_size
        device = "cpu" if config.use_cpu_initialization else torch.cuda.current_device()
        self.conv1d = torch.nn.Conv1d(
            self.conv_dim_local_tp,
            self.conv_dim_local_tp,
            kernel_size=self.conv_kernel_dim,
            groups=self.conv_dim_local_tp,
            padding=self.conv_kernel_dim - 1,
            bias=False,
            device=device,
            dtype=config.params_dtype,
        )
        self.dt_bias = torch.nn.Parameter(torch.empty(self.dt_bias_dim, dtype=config.params_dtype, device=device))
        self.A_log = torch.nn.Parameter(torch.empty(self.a_log_dim, dtype=config.params_dtype, device=device))
        for p in (self.conv1d.weight, self.dt_bias, self.A_log):
            p.tensor_model_parallel, p.partition_dim = True, 0
        self.out_norm = build_module(
            submodules.out_norm, config=config, hidden_size=self.value_head_dim, eps=config.layernorm_epsilon
        )
        self.recompute_norm_out, self.norm_out_checkpoint = False, None
        self.out_proj = build_module(
            submodules.out_proj,
            self.v_dim,
            self.hidden_size,
            config=config,
            init_method=config.output_layer_init_method,
            bias=False,
            input_is_parallel=True,
            skip_bias_add=True,
            is_expert=False,
            tp_comm_buffer_name="fc2",
            tp_group=self.tp_group,
        )
        self.reset_parameters()

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        packed_seq_params: PackedSeqParams | None = None,
        **_: object,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``[s, b, h]`` -> (``[s, b, h]`` before the output bias, the bias); THD input resets at each segment."""
        qkvzba, _ = self.in_proj(hidden_states)
        s, b = qkvzba.shape[:2]
        flat = qkvzba.transpose(0, 1).reshape(b * s, -1)  # batch-major tokens; THD: b = 1, the packed order
        if packed_seq_params is not None and packed_seq_params.qkv_format == "thd":
            if b != 1:
                raise ValueError(f"packed THD input has batch 1, got {b}")
            groups = SegmentPlan.from_params(packed_seq_params).length_groups(flat.device)
        else:
            groups = ops.whole_batch_groups(b, s, flat.device)
        qkv, z, beta, alpha = flat.split(self.feat_dim_split, dim=-1)
        qkv = ops.causal_conv1d_segments(qkv, self.conv1d.weight, groups)
        q, k, v = qkv.split([self.qk_dim_local_tp, self.qk_dim_local_tp, self.v_dim_local_tp], dim=-1)
        q, k = (ops.l2norm(x.unflatten(-1, (-1, self.key_head_dim)).float()) for x in (q, k))
        repeat = self.num_value_heads // self.num_key_heads
        q, k = q.repeat_interleave(repeat, dim=1), k.repeat_interleave(repeat, dim=1)
        v = v.unflatten(-1, (-1, self.value_head_dim))
        g = -self.A_log.float().exp() * F.softplus(alpha.float() + self.dt_bias)
        y = ops.gated_delta_rule_segments(q, k, v, g, beta.sigmoid(), groups)
        y = self.out_norm(y) * self.act_fn(z.unflatten(-1, (-1, self.value_head_dim)).float())
        y = y.to(hidden_states.dtype).reshape(b, s, -1).transpose(0, 1).contiguous()
        return self.out_proj(y)
