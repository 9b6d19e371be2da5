"""Vocab-parallel log-probs and entropy against torch's full-vocabulary log_softmax, values and gradients."""

import pytest
import torch

from cod_kernels.fused_linear_logprob_reference import vocab_parallel_logprobs
from tests.dist import init_method, spawn


def reference(logits, targets):
    logp_all = torch.log_softmax(logits.double(), -1)
    logp = logp_all.gather(-1, targets[:, None]).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logp, entropy


def case(t=13, v=37, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(t, v, generator=g) * scale
    targets = torch.randint(0, v, (t,), generator=g)
    w1, w2 = torch.randn(t, generator=g), torch.randn(t, generator=g)
    return logits, targets, w1, w2


def grads(fn, logits, targets, w1, w2):
    x = logits.clone().requires_grad_(True)
    logp, ent = fn(x, targets)
    ((logp * w1).sum() + (ent * w2).sum()).backward()
    return logp.detach(), ent.detach(), x.grad


@pytest.mark.parametrize("t,v,scale", [(13, 37, 3.0), (1, 5, 1.0), (8, 256, 30.0)])
def test_tp1_matches_torch_values_and_grads(t, v, scale):
    logits, targets, w1, w2 = case(t, v, scale=scale)
    lp, en, g = grads(lambda x, y: vocab_parallel_logprobs(x, y), logits, targets, w1, w2)
    rlp, ren, rg = grads(lambda x, y: tuple(r.float() for r in reference(x, y)), logits, targets, w1, w2)
    torch.testing.assert_close(lp, rlp, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(en, ren, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g, rg, rtol=1e-5, atol=1e-5)


def test_stable_at_extreme_logits():
    logits, targets, _, _ = case(4, 50)
    logits[0, 3] = 1e4
    lp, en = vocab_parallel_logprobs(logits, targets)
    assert torch.isfinite(lp).all() and torch.isfinite(en).all()


def _tp_worker(rank, world):
    import torch.distributed as dist

    dist.init_process_group("gloo", rank=rank, world_size=world, init_method=init_method())
    logits, targets, w1, w2 = case(11, 40, seed=3)
    shard = logits.chunk(world, dim=-1)[rank]
    x = shard.clone().requires_grad_(True)
    logp, ent = vocab_parallel_logprobs(x, targets, vocab_start=rank * shard.shape[-1], group=dist.group.WORLD)
    ((logp * w1).sum() + (ent * w2).sum()).backward()
    dist.destroy_process_group()
    return logp.detach(), ent.detach(), x.grad


@pytest.mark.dist
def test_tp2_matches_full_vocab():
    out = spawn(_tp_worker, 2)
    logits, targets, w1, w2 = case(11, 40, seed=3)
    rlp, ren, rg = grads(lambda x, y: tuple(r.float() for r in reference(x, y)), logits, targets, w1, w2)
    for lp, en, _ in out:
        torch.testing.assert_close(lp, rlp, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(en, ren, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.cat([o[2] for o in out], dim=-1), rg, rtol=1e-5, atol=1e-5)
