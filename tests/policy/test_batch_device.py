"""Batches reach the model's device in the trainer's own path (issue: the first CUDA forward failed on CPU tensors).

The trainer is told its model lives on the meta device; a forward pre-hook on the model records the device of every
tensor the forward receives (tokens, the THD ``cu_seqlens``) and stops the forward. A batch tensor left on the CPU
fails the test, which is what a CUDA run would hit.
"""

import pytest
import torch

from cod_megatron.data.packed import PackedBatch
from tests.dist import free_port
from tests.policy.parallel_utils import batches, tiny_cfg


class _Stop(Exception):
    pass


def test_every_tensor_the_forward_receives_is_on_the_models_device():
    from cod_megatron.config import finalize
    from cod_megatron.policy.distributed import destroy_distributed, init_distributed
    from cod_megatron.policy.trainer import PolicyTrainer

    cfg = tiny_cfg("model.num_layers=1")
    layout = finalize(cfg)
    init_distributed(layout, master_port=free_port())
    seen: list[tuple[str, torch.device]] = []

    def hook(module, args, kwargs):
        for i, a in enumerate(args):
            if isinstance(a, torch.Tensor):
                seen.append((f"arg{i}", a.device))
        psp = kwargs["packed_seq_params"]
        seen.extend((name, getattr(psp, name).device) for name in ("cu_seqlens_q", "cu_seqlens_kv"))
        raise _Stop

    try:
        trainer = PolicyTrainer(cfg, layout)
        assert trainer.device == torch.device("cpu")  # the model's own device
        trainer.device = torch.device("meta")
        trainer.model[0].module.register_forward_pre_hook(hook, with_kwargs=True)
        with pytest.raises(_Stop):
            trainer.compute_logprobs(batches(cfg.model.vocab_size, n=1))
    finally:
        destroy_distributed()
    assert seen and all(device.type == "meta" for _, device in seen), seen


def test_a_packed_batch_moves_every_tensor_and_keeps_its_host_max_seqlen():
    b = batches(64, n=1)[0]
    moved = b.to(torch.device("meta"))
    assert isinstance(moved, PackedBatch) and moved is not b
    for name in ("tokens", "labels", "loss_mask", "segment_ids", "cu_seqlens", "advantages"):
        assert getattr(moved, name).device.type == "meta" and getattr(b, name).device.type == "cpu"
    assert moved.max_seqlen == b.max_seqlen  # no .item() on the device (a sync on CUDA, an error on meta)
    assert moved.cu_seqlens_on_host() == b.cu_seqlens_on_host() == (b.cu_seqlens.tolist(), None)  # nor .tolist()
    assert b.to(torch.device("cpu")) is b
