"""Weight sync: Megatron shards -> HF names (the public map) -> buckets -> transport -> engines; the sync planner.

* :mod:`~cod_megatron.sync.hf_map`: the one Megatron <-> HF name and tensor-layout map (HF conversion uses it too);
* :mod:`~cod_megatron.sync.buckets`: byte-bounded buckets, shared by the orchestration and the transports;
* :mod:`~cod_megatron.sync.weight_sync`: :class:`WeightSync`, export once and push every engine in buckets;
* :mod:`~cod_megatron.sync.dist_transport`: bucketed transfer over torch.distributed (broadcast, TP-aligned);
* :mod:`~cod_megatron.sync.plan`: bytes per link and wire time of each method (``python -m cod_megatron.sync``).

Sits below :mod:`cod_megatron.policy`: the policy and the CLIs import it, never the reverse. Nothing is imported
here, so ``cod_megatron.sync.plan`` stays free of torch.
"""
