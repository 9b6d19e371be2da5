"""The CUDA-IPC payloads of ``/update_weights_from_tensor``: SGLang 0.5.23's wire format, opened by another process.

The consumer is an unrelated process (``subprocess``, its own multiprocessing ``authkey``), as an SGLang server is,
decoding with the stand-in's copy of SGLang's algorithm (strict base64, restricted unpickler). On CPU the tensors go
through shared-memory files; the ``gpu`` test sends real CUDA-IPC handles.
"""

from __future__ import annotations

import base64
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cod_megatron.engines.sglang.client import SGLangEngine
from cod_megatron.engines.sglang.ipc import serialize_named_tensors, serializer_for
from cod_megatron.engines.sglang.protocol import SGLangError
from tests.engines.sglang_standin import SGLangStandIn, deserialize_payload

ROOT = Path(__file__).resolve().parents[2]

CONSUMER = """
import sys, torch
from tests.engines.sglang_standin import deserialize_payload
named = deserialize_payload(sys.stdin.read())
out = [(n, t.device.type, t.to("cpu", copy=True)) for n, t in named]
if len(sys.argv) > 2:  # write through the handle: the producer must see it (shared memory, not a copy)
    named[0][1].fill_(float(sys.argv[2]))
    torch.cuda.synchronize() if named[0][1].is_cuda else None
torch.save(out, sys.argv[1])
"""


def consume(payload: str, out: Path, *fill: str) -> list[tuple[str, str, torch.Tensor]]:
    """Decode ``payload`` in a fresh interpreter (not a multiprocessing child); returns (name, device, CPU copy)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-c", CONSUMER, str(out), *fill],
        input=payload,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(out, weights_only=True)


def bucket(device: str = "cpu") -> list[tuple[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    big = torch.randn(10, 4, generator=g)
    return [
        ("model.layers.0.mlp.down_proj.weight", big[2:5].to(device)),  # a view into a larger storage
        ("model.embed_tokens.weight", torch.randn(6, 4, generator=g).to(torch.bfloat16).to(device)),
        ("ids", torch.arange(7).to(device)),
        ("mask", torch.tensor([True, False, True]).to(device)),
    ]


def test_a_cpu_payload_decodes_bit_equal_in_an_unrelated_process(tmp_path):
    named = bucket()
    strategy = torch.multiprocessing.get_sharing_strategy()
    payload = serialize_named_tensors(named)
    assert torch.multiprocessing.get_sharing_strategy() == strategy  # file_system only while pickling
    base64.b64decode(payload, validate=True)  # SGLang decodes strictly
    got = consume(payload, tmp_path / "got.pt")
    assert [(n, d) for n, d, _ in got] == [(n, "cpu") for n, _ in named]
    for (name, want), (_, _, t) in zip(named, got, strict=True):
        assert t.dtype == want.dtype and t.shape == want.shape and torch.equal(t, want), name


def test_serializing_leaves_the_parameters_where_they_are():
    """Parameters are copied into shared memory, not moved there (the optimizer keeps its own storage)."""
    param = torch.nn.Parameter(torch.randn(4, 4))
    before = param.data_ptr()
    assert deserialize_payload(serialize_named_tensors([("w", param.detach())]))[0][1].is_shared()
    assert not param.is_shared() and param.data_ptr() == before


def test_the_standin_refuses_globals_sglang_refuses():
    evil = base64.b64encode(pickle.dumps([("w", os.system)])).decode()
    with pytest.raises(RuntimeError, match="Blocked unsafe global"):
        deserialize_payload(evil)
    with pytest.raises(ValueError):  # binascii.Error: SGLang's b64decode(validate=True)
        deserialize_payload("not base64!")


def test_one_process_serializes_for_an_engine_at_tp_1_only():
    assert len(serializer_for(1)(bucket())) == 1
    with pytest.raises(ValueError, match="engine_ranks"):
        serializer_for(2)(bucket())


class Kept:
    """The stand-in's engine: keeps what it is sent."""

    def __init__(self):
        self.params: dict[str, torch.Tensor] = {}
        self.closed: list[int] = []

    def update_weights(self, named_tensors, *, version, last):
        self.params |= {n: t.clone() for n, t in named_tensors}
        if last:
            self.closed.append(version)

    def health(self):
        return {"ok": True}


def test_an_engine_at_tp_2_takes_one_payload_per_tp_rank():
    kept = Kept()
    with SGLangStandIn(kept, server_args={"tp_size": 2}) as server:
        engine = SGLangEngine(server.url, transport="tensor")
        payloads = [serialize_named_tensors(bucket()), serialize_named_tensors(bucket())]  # as from two ranks
        engine.update_weights_serialized(payloads, version=4, last=True)
        assert server.calls[-2][1]["serialized_named_tensors"] == payloads and server.calls[-2][1]["weight_version"]
        assert kept.closed == [4] and engine.weight_version == 4 and not server.session_open
        for name, t in bucket():
            assert torch.equal(kept.params[name], t), name
        with pytest.raises(SGLangError, match=r"one payload per TP rank \(2\), got 1"):
            engine.update_weights_serialized(payloads[:1], version=5, last=True)
        assert engine.weight_version == 4 and not server.session_open  # the failed update closed its session
        with pytest.raises(ValueError, match="transport='tensor'"):
            SGLangEngine(server.url).update_weights_serialized(payloads, version=5, last=True)


@pytest.mark.gpu
def test_a_cuda_payload_is_an_ipc_handle_another_process_opens(tmp_path):
    """Real CUDA IPC between two processes on one GPU: bit-equal on the other side, and the same memory (a write
    through the consumer's handle shows up here)."""
    named = bucket("cuda")
    want = [(n, t.to("cpu", copy=True)) for n, t in named]
    payload = serialize_named_tensors(named)
    got = consume(payload, tmp_path / "got.pt", "7")
    torch.cuda.synchronize()
    assert [(n, d) for n, d, _ in got] == [(n, "cuda") for n, _ in named]
    for (name, w), (_, _, t) in zip(want, got, strict=True):
        assert t.dtype == w.dtype and torch.equal(t, w), name
    assert torch.equal(named[0][1].cpu(), torch.full_like(want[0][1], 7.0))


PRODUCER = """
import subprocess, sys, torch
from tests.engines.test_sglang_ipc import CONSUMER, bucket
from cod_megatron.engines.sglang.ipc import serialize_named_tensors
named = bucket("cuda")  # allocated under this process's PYTORCH_CUDA_ALLOC_CONF (the recipe's trainer env)
proc = subprocess.run([sys.executable, "-c", CONSUMER, sys.argv[1]], input=serialize_named_tensors(named), text=True,
                      capture_output=True)
sys.stderr.write(proc.stderr)
sys.exit(proc.returncode)
"""


@pytest.mark.gpu
@pytest.mark.parametrize("recipe", ["qwen3_8b_cod_8gpu_h100"])
def test_cuda_ipc_works_under_the_colocated_recipes_process_env(recipe, tmp_path):
    """Issue 26 item 2: trainer and server processes started with the recipe's ``run.env_vars`` (no
    ``expandable_segments``, whose IPC needs ``pidfd_getfd``, refused in containers) pass weights by CUDA IPC."""
    import cod_recipes
    from cod_megatron.config import finalize
    from cod_megatron.config.colocation import ALLOC_CONF, shares_gpus_with_engines

    cfg = cod_recipes.get(recipe)
    assert shares_gpus_with_engines(cfg.rollout, finalize(cfg))
    env = {k: v for k, v in os.environ.items() if k != ALLOC_CONF} | cfg.run.env_vars
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    out = tmp_path / "got.pt"
    proc = subprocess.run(
        [sys.executable, "-c", PRODUCER, str(out)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=180
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = torch.load(out, weights_only=True)
    for (name, want), (got_name, device, t) in zip(bucket("cpu"), got, strict=True):
        assert (got_name, device) == (name, "cuda") and torch.equal(t, want), name
