"""The embedded rollout engine: transformers generation with a KV cache, fed by the Megatron policy's weights.

The CPU default (``rollout.engine=embedded``) and the in-process single-GPU smoke path. It has no weights of its own:
the trainer pushes HF-named tensors through :meth:`EmbeddedEngine.update_weights` (the same Megatron -> HF
conversion and bucketing the SGLang path uses), so a step-0 rollout already samples from the trainer's policy.

A batch is left-padded and decoded together; every request samples with its own ``torch.Generator`` seeded from
``SamplingParams.seed``, so a request's tokens do not depend on which other requests share its batch (up to the
last bits of batched matmuls). Log-probs are those of the sampling distribution, ``log_softmax(logits / T)``.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import torch

from cod_megatron.engines.interface import EngineRequest, Generation, ScoreRequest

log = logging.getLogger(__name__)

DONE_CHECK_EVERY = 8
"""Decode steps between the reads of "has every request finished?": the decode loop's only host read (a device sync
on a GPU), so up to 7 steps may run after the last request finished; their tokens are padding and are dropped."""


class EmbeddedEngine:
    """A transformers causal LM behind :class:`~cod_megatron.engines.interface.InferenceEngine`."""

    def __init__(self, hf_config: Any, *, stop_token_ids: list[int], pad_token_id: int = 0, device: str = "cpu"):
        from transformers import AutoModelForCausalLM

        torch.manual_seed(0)  # the random init is overwritten by the first weight update; keep it reproducible
        self.model = AutoModelForCausalLM.from_config(hf_config, attn_implementation="eager").to(device).eval()
        self.device = torch.device(device)
        self.stop = set(stop_token_ids)
        self.pad = pad_token_id
        self.weight_version = -1
        """-1 until the first complete weight update: generating from random weights is a bug, not a default."""
        self._staged: dict[str, torch.Tensor] = {}
        self._lock = threading.Lock()
        """Generation and the switch to new weights never interleave (the off-policy producer runs in a thread)."""
        self._released = False
        self._names = {n for n, _ in self.model.named_parameters()}

    # ---- generation ----------------------------------------------------------------------------------------------
    def generate_batch(self, requests: list[EngineRequest]) -> list[Generation]:
        """Sample every request in one left-padded batch with a KV cache."""
        with self._lock:
            return self._generate(requests)

    @torch.no_grad()
    def _generate(self, requests: list[EngineRequest]) -> list[Generation]:
        if self.weight_version < 0:
            raise RuntimeError("EmbeddedEngine: no weights yet (call update_weights from the trainer first)")
        if self._released:
            raise RuntimeError("EmbeddedEngine: memory is released; resume_memory() before generating")
        if not requests:
            return []
        n, longest = len(requests), max(len(r.prompt_ids) for r in requests)
        ids = torch.full((n, longest), self.pad, dtype=torch.long)
        mask = torch.zeros((n, longest), dtype=torch.long)
        for i, r in enumerate(requests):
            if not r.prompt_ids:
                raise ValueError(f"request {i}: empty prompt")
            ids[i, longest - len(r.prompt_ids) :] = torch.tensor(r.prompt_ids)
            mask[i, longest - len(r.prompt_ids) :] = 1
        gens = [_generator(r.params.seed, self.device) for r in requests]
        temps = torch.tensor([r.params.temperature for r in requests], dtype=torch.float32)[:, None]
        budget = torch.tensor([r.params.max_new_tokens for r in requests])
        steps = max(0, *(r.params.max_new_tokens for r in requests))
        d = self.device
        temps, budget, stop = temps.to(d), budget.to(d), torch.tensor(sorted(self.stop), dtype=torch.long).to(d)
        tokens = torch.full((n, steps), self.pad, dtype=torch.long, device=d)
        logps = torch.zeros((n, steps), dtype=torch.float32, device=d)
        lengths = torch.zeros(n, dtype=torch.long, device=d)
        stopped = torch.zeros(n, dtype=torch.bool, device=d)
        done = budget <= 0
        ids, mask = ids.to(d), mask.to(d)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        step_ids, past = ids, None
        for step in range(steps):
            if step % DONE_CHECK_EVERY == 0 and bool(done.all()):  # the loop's one host read
                break
            res = self.model(  # logits of the last position only: the prefill skips a [n, longest, V] LM head
                input_ids=step_ids,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=past,
                use_cache=True,
                logits_to_keep=1,
            )
            past = res.past_key_values
            logprobs = torch.log_softmax(res.logits[:, -1].float() / temps, dim=-1)
            nxt = torch.cat([torch.multinomial(logprobs[i].exp(), 1, generator=gens[i]) for i in range(n)])
            live = ~done
            nxt = torch.where(live, nxt, self.pad)  # a finished request feeds padding
            tokens[:, step] = nxt
            logps[:, step] = logprobs.gather(1, nxt[:, None])[:, 0]
            lengths += live
            stopped |= live & torch.isin(nxt, stop)
            done = done | stopped | (lengths >= budget)
            step_ids = nxt[:, None]
            mask = torch.cat([mask, torch.ones((n, 1), dtype=mask.dtype, device=d)], dim=1)
            positions = positions[:, -1:] + 1
        tokens_h, logps_h, lengths_h, stopped_h = (x.cpu().tolist() for x in (tokens, logps, lengths, stopped))
        return [
            Generation(token_ids=t[:k], logprobs=lp[:k], finish_reason="stop" if s else "length")
            for t, lp, k, s in zip(tokens_h, logps_h, lengths_h, stopped_h, strict=True)
        ]

    # ---- scoring (a teacher) -------------------------------------------------------------------------------------
    def score_batch(self, requests: list[ScoreRequest]) -> list[list[float]]:
        """Teacher forcing: one right-padded forward of every prompt + tokens, ``log_softmax(logits)`` (T = 1)."""
        with self._lock:
            return self._score(requests)

    @torch.no_grad()
    def _score(self, requests: list[ScoreRequest]) -> list[list[float]]:
        if self.weight_version < 0:
            raise RuntimeError("EmbeddedEngine: no weights yet (load the teacher's weights first)")
        if self._released:
            raise RuntimeError("EmbeddedEngine: memory is released; resume_memory() before scoring")
        for i, r in enumerate(requests):
            if not r.prompt_ids:
                raise ValueError(f"score request {i}: empty prompt")
        if not requests:
            return []
        seqs = [r.prompt_ids + r.token_ids for r in requests]
        longest = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), longest), self.pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), longest), dtype=torch.long)
        for i, s in enumerate(seqs):  # right padding: a real token never attends to a pad, positions start at 0
            ids[i, : len(s)], mask[i, : len(s)] = torch.tensor(s), 1
        logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        out = []
        for i, r in enumerate(requests):
            start, n = len(r.prompt_ids) - 1, len(r.token_ids)  # position p predicts token p + 1
            targets = torch.tensor(r.token_ids, dtype=torch.long, device=self.device)
            out.append(logprobs[i, start : start + n].gather(1, targets[:, None])[:, 0].cpu().tolist())
        return out

    # ---- weights and memory --------------------------------------------------------------------------------------
    @torch.no_grad()
    def update_weights(self, named_tensors: list[tuple[str, torch.Tensor]], *, version: int, last: bool) -> None:
        """Stage one bucket of HF-named tensors; the ``last`` bucket swaps them all in at once as ``version``.

        Staging (one extra copy of the weights, fine for the CPU engine) means a generation never sees half of an
        update, like SGLang's update session.
        """
        params = dict(self.model.named_parameters())
        for name, tensor in named_tensors:
            if name not in params:
                self._staged = {}
                raise KeyError(f"EmbeddedEngine.update_weights: unknown parameter {name!r}")
            if tuple(tensor.shape) != tuple(params[name].shape):
                self._staged = {}
                raise ValueError(f"{name}: shape {tuple(tensor.shape)}, engine expects {tuple(params[name].shape)}")
            self._staged[name] = tensor.detach().to("cpu", copy=True)
        if not last:
            return
        staged, self._staged = self._staged, {}
        missing = sorted(self._names - set(staged))
        if missing:
            raise ValueError(f"weight update {version} ended without {missing[:4]} ({len(missing)} missing)")
        with self._lock:
            for name, tensor in staged.items():
                params[name].copy_(tensor.to(params[name].dtype))
            self.weight_version = version

    def release_memory(self) -> None:
        """Nothing to free on CPU; recorded so that a generate while released is caught like on GPU."""
        self._released = True

    def resume_memory(self) -> None:
        """Serve again after :meth:`release_memory`."""
        self._released = False

    def health(self) -> dict[str, object]:
        """Always answers while the process lives."""
        return {"ok": True, "weight_version": self.weight_version, "released": self._released}

    def restart(self) -> None:
        """Never asked (an in-process engine is never unhealthy); a request to is a bug."""
        raise RuntimeError("an in-process EmbeddedEngine cannot be restarted (its health is always ok)")


def _generator(seed: int | None, device: torch.device) -> torch.Generator:
    g = torch.Generator(device)
    if seed is None:
        g.seed()
    else:
        g.manual_seed(int(seed) & 0xFFFF_FFFF_FFFF)
    return g
