"""Weight sync: Megatron shards -> HF names (through :mod:`cod_megatron.models`) -> buckets -> transport -> engines;
the sync planner.

* :mod:`~cod_megatron.sync.buckets`: byte-bounded buckets, shared by the orchestration and the transports;
* :mod:`~cod_megatron.sync.weight_sync`: :class:`WeightSync`, export once and push every engine in buckets;
* :mod:`~cod_megatron.sync.dist_transport`: bucketed transfer over torch.distributed (broadcast, TP-aligned);
* :mod:`~cod_megatron.sync.plan`: bytes per link and wire time of each method (``python -m cod_megatron.sync``).

The HF names come from :mod:`cod_megatron.models.hf_names` and the TP-gathered stream from
:mod:`cod_megatron.policy.hf_export`: sync imports policy and models, never the reverse. Nothing is imported
here, so ``cod_megatron.sync.plan`` stays free of torch.
"""
