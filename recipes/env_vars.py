"""Environment variables of GPU runs, each with the reason it is set (read by the launcher and the Ray runtime env)."""

COMMON_ENV: dict[str, str] = {
    "CUDA_DEVICE_MAX_CONNECTIONS": "1",  # keeps Megatron's TP communication kernels in launch order (overlap)
    "TORCH_NCCL_AVOID_RECORD_STREAMS": "1",  # releases collective buffers sooner
    "NCCL_NVLS_ENABLE": "0",  # NVLink SHARP buffers cost memory that colocated engines need
    "TOKENIZERS_PARALLELISM": "false",  # tokenizers' thread pool deadlocks after fork in Ray workers
}

SEPARATE_ENGINES_ENV: dict[str, str] = {
    # less fragmentation with variable-length THD batches; only where no CUDA-IPC handle or memory saver is used:
    # colocated engines need neither expandable segments in the trainer (IPC needs pidfd_getfd, refused in
    # containers) nor in the servers (torch_memory_saver refuses them), see cod_megatron/config/colocation.py
    "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
}
