"""The one owner of the parallel layout, for the trainer and the rollout engines alike.

Pure arithmetic: no megatron, torch.distributed or Ray import, so recipes, packing and tests can use it anywhere.
Megatron's rank order is tp-cp-ep-dp-pp; the trainer's world is ``tp * cp * dp * pp`` and EP is carved out of
``dp * cp`` (dense models keep ``ep = 1``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cod_megatron.config.base import ConfigError
from cod_megatron.config.model import ModelConfig


@dataclass(kw_only=True)
class ParallelConfig:
    """How the trainer is split and how many rollout engines serve it (the ``parallel`` config section)."""

    tp: int = 1
    """Tensor-parallel size of the trainer (Megatron ``tensor_model_parallel_size``)."""
    pp: int = 1
    """Pipeline-parallel stages."""
    vpp: int | None = None
    """Virtual pipeline stages per rank (interleaved schedule); None disables interleaving."""
    cp: int = 1
    """Context-parallel size: each packed sequence is split over ``cp`` ranks."""
    ep: int = 1
    """Expert-parallel size (MoE only; must divide dp * cp)."""
    dp: int = 1
    """Data-parallel size of the trainer."""
    sequence_parallel: bool = False
    """Megatron sequence parallelism (needs tp > 1; needs Transformer Engine, i.e. a GPU)."""
    engines: int = 1
    """Rollout engines (SGLang servers on GPU; embedded engines on CPU)."""
    engine_tp: int = 1
    """Tensor-parallel size of each rollout engine."""
    colocated: bool = True
    """Engines share the trainer's devices (memory released/resumed around training) instead of their own."""
    teacher_engines: int = 1
    """Engines per distillation teacher (``distill.teachers``), each on its own devices."""
    teacher_engine_tp: int = 1
    """Tensor-parallel size of each teacher engine."""
    gpus_per_node: int = 8
    """Devices per node (on CPU: processes per machine)."""


class LayoutError(ConfigError):
    """An impossible layout; ``field`` names the factor at fault."""


@dataclass(frozen=True, kw_only=True)
class ParallelLayout:
    """Validated layout of trainer (TP x CP x EP x DP x PP, with VPP) and engines (count x engine TP)."""

    tp: int
    pp: int
    cp: int
    ep: int
    dp: int
    vpp: int | None
    sequence_parallel: bool
    engines: int
    engine_tp: int
    colocated: bool
    gpus_per_node: int
    teachers: int = 0
    """Distillation teachers (one per training domain; 0 without distillation)."""
    teacher_engines: int = 1
    teacher_engine_tp: int = 1

    @classmethod
    def from_config(
        cls, cfg: ParallelConfig, model: ModelConfig | None = None, prefix: str = "parallel", teachers: int = 0
    ) -> ParallelLayout:
        """Build and validate; ``model`` adds the checks against heads and layers, ``teachers`` places that many
        teachers' engines beside the student's."""
        layout = cls(
            tp=cfg.tp,
            pp=cfg.pp,
            cp=cfg.cp,
            ep=cfg.ep,
            dp=cfg.dp,
            vpp=cfg.vpp,
            sequence_parallel=cfg.sequence_parallel,
            engines=cfg.engines,
            engine_tp=cfg.engine_tp,
            colocated=cfg.colocated,
            gpus_per_node=cfg.gpus_per_node,
            teachers=teachers,
            teacher_engines=cfg.teacher_engines,
            teacher_engine_tp=cfg.teacher_engine_tp,
        )
        layout.check(model, prefix)
        return layout

    # ---- sizes ---------------------------------------------------------------------------------------------
    @property
    def trainer_world_size(self) -> int:
        """Ranks of the trainer: tp * cp * dp * pp."""
        return self.tp * self.cp * self.dp * self.pp

    @property
    def model_parallel_size(self) -> int:
        """Ranks that hold one copy of the model: tp * pp (CP ranks hold the same weights, like DP)."""
        return self.tp * self.pp

    @property
    def engine_gpus(self) -> int:
        """Devices used by all rollout engines together."""
        return self.engines * self.engine_tp

    @property
    def teacher_gpus(self) -> int:
        """Devices of every distillation teacher's engines (never shared: teachers score every step)."""
        return self.teachers * self.teacher_engines * self.teacher_engine_tp

    @property
    def world_size(self) -> int:
        """Devices of the whole job: the trainer's (shared with the engines when colocated, else plus theirs) and the
        teachers'."""
        student = self.trainer_world_size if self.colocated else self.trainer_world_size + self.engine_gpus
        return student + self.teacher_gpus

    @property
    def nodes(self) -> int:
        """Nodes the job needs (world_size is checked to fill them exactly when it spans more than one)."""
        return max(1, -(-self.world_size // self.gpus_per_node))

    # ---- validation ----------------------------------------------------------------------------------------
    def check(self, model: ModelConfig | None = None, prefix: str = "parallel") -> None:
        """Raise :class:`LayoutError` naming the first impossible factor."""

        def need(cond: bool, field: str, reason: str) -> None:
            if not cond:
                raise LayoutError(f"{prefix}.{field}", reason)

        for name in ("tp", "pp", "cp", "ep", "dp", "engines", "engine_tp", "teacher_engines", "teacher_engine_tp"):
            need(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        need(self.gpus_per_node >= 1, "gpus_per_node", f"must be >= 1, got {self.gpus_per_node}")
        need(
            self.teacher_engine_tp <= self.gpus_per_node,
            "teacher_engine_tp",
            f"a teacher engine must fit in a node ({self.teacher_engine_tp} > gpus_per_node={self.gpus_per_node})",
        )
        need(
            self.tp <= self.gpus_per_node,
            "tp",
            f"tensor parallelism must stay inside a node (tp={self.tp} > gpus_per_node={self.gpus_per_node})",
        )
        need(
            self.engine_tp <= self.gpus_per_node,
            "engine_tp",
            f"an engine must fit in a node (engine_tp={self.engine_tp} > gpus_per_node={self.gpus_per_node})",
        )
        need((self.dp * self.cp) % self.ep == 0, "ep", f"must divide dp * cp = {self.dp * self.cp}, got {self.ep}")
        need(not self.sequence_parallel or self.tp > 1, "sequence_parallel", "needs tp > 1")
        if self.vpp is not None:
            need(self.vpp >= 1, "vpp", f"must be >= 1 or None, got {self.vpp}")
            need(self.pp > 1, "vpp", "virtual pipeline stages need pp > 1")
        if model is not None:
            self._check_model(model, need)
        if self.colocated:
            need(
                self.engine_gpus == self.trainer_world_size,
                "engines",
                f"colocated engines must cover the trainer's devices exactly: engines * engine_tp = "
                f"{self.engine_gpus} != tp * cp * dp * pp = {self.trainer_world_size}",
            )
        if self.world_size > self.gpus_per_node:
            need(
                self.world_size % self.gpus_per_node == 0,
                "gpus_per_node",
                f"{self.world_size} devices do not fill whole nodes of {self.gpus_per_node}",
            )
            if not self.colocated:
                need(
                    self.trainer_world_size % self.gpus_per_node == 0,
                    "dp",
                    f"trainer ({self.trainer_world_size} devices) must fill whole nodes of {self.gpus_per_node}",
                )

    def _check_model(self, model: ModelConfig, need) -> None:
        heads, groups, layers = model.num_attention_heads, model.num_query_groups, model.num_layers
        need(heads % self.tp == 0, "tp", f"must divide model.num_attention_heads ({heads}), got {self.tp}")
        need(groups % self.tp == 0, "tp", f"must divide model.num_query_groups ({groups}), got {self.tp}")
        need(
            heads % self.engine_tp == 0,
            "engine_tp",
            f"must divide model.num_attention_heads ({heads}), got {self.engine_tp}",
        )
        stages = self.pp * (self.vpp or 1)
        need(layers % stages == 0, "pp", f"pp * vpp = {stages} must divide model.num_layers ({layers})")
        need(
            model.vocab_size % self.tp == 0,
            "tp",
            f"must divide model.vocab_size ({model.vocab_size}) for the vocab-parallel embedding and LM head",
        )

    # ---- what others need ----------------------------------------------------------------------------------
    def megatron_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``megatron.core.parallel_state.initialize_model_parallel``."""
        return {
            "tensor_model_parallel_size": self.tp,
            "pipeline_model_parallel_size": self.pp,
            "virtual_pipeline_model_parallel_size": self.vpp,
            "context_parallel_size": self.cp,
            "expert_model_parallel_size": self.ep,
        }

    def engine_bundles(self) -> list[list[dict[str, float]]]:
        """Ray placement-group bundles, one list per engine (one GPU per engine TP rank)."""
        return [[{"GPU": 1.0, "CPU": 1.0} for _ in range(self.engine_tp)] for _ in range(self.engines)]

    def teacher_bundles(self) -> list[list[dict[str, float]]]:
        """Ray placement-group bundles of the teachers' engines, teacher by teacher (one GPU per engine TP rank)."""
        per_engine = [{"GPU": 1.0, "CPU": 1.0} for _ in range(self.teacher_engine_tp)]
        return [list(per_engine) for _ in range(self.teachers * self.teacher_engines)]

    def colocated_engine_ranks(self) -> list[list[int]]:
        """For colocated engines, the trainer's global ranks on each engine's GPUs, in engine-TP-rank order.

        Engine ``i`` runs on the job's devices ``i * engine_tp ..`` and trainer rank ``r`` on device ``r``, so engine
        ``i``'s TP rank ``k`` shares a GPU with trainer rank ``i * engine_tp + k``: the rank whose CUDA-IPC payload
        that TP rank loads. (A payload from another GPU fails loudly on the engine: SGLang resolves the device UUID.)
        That is a guess about the placement: on GPUs the loop matches the GPUs Ray actually assigned, by device UUID
        (:func:`~cod_megatron.config.device_map.engine_ranks_by_device`); this index rule serves CPU stand-ins.
        """
        if not self.colocated:
            raise ValueError("engine ranks are defined for colocated engines only (parallel.colocated=true)")
        return [[i * self.engine_tp + k for k in range(self.engine_tp)] for i in range(self.engines)]

    def describe(self) -> dict[str, Any]:
        """Every size by name, for the dry run and the logs."""
        return {
            "trainer": {
                "tp": self.tp,
                "pp": self.pp,
                "vpp": self.vpp,
                "cp": self.cp,
                "ep": self.ep,
                "dp": self.dp,
                "sequence_parallel": self.sequence_parallel,
                "world_size": self.trainer_world_size,
            },
            "engines": {
                "count": self.engines,
                "engine_tp": self.engine_tp,
                "gpus": self.engine_gpus,
                "colocated": self.colocated,
            },
            "teachers": {
                "count": self.teachers,
                "engines_each": self.teacher_engines,
                "engine_tp": self.teacher_engine_tp,
                "gpus": self.teacher_gpus,
            },
            "job": {"world_size": self.world_size, "gpus_per_node": self.gpus_per_node, "nodes": self.nodes},
        }
