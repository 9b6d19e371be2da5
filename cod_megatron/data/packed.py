"""A packed THD micro-batch: many episodes in one token row, each a segment with its own advantage.

Legend: T packed tokens, N segments. Token ``i`` of a segment predicts token ``i + 1`` of the same segment, so the
last token of every segment has no label; only response tokens (``loss_mask``) enter the loss.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from cod_megatron.cod.token_advantages import TokenAdvantages

OPTIONAL_TOKEN_FIELDS = (
    "rollout_logprobs",
    "old_logprobs",
    "ref_logprobs",
    "sample_ids",
    "token_advantage_terms",
    "teacher_logprobs",
)
"""Per-token tensors that not every producer fills; concatenation, padding, the CP split and :meth:`PackedBatch.to`
carry each one with the tokens (zeros where a part of the row has none: padding, no loss)."""


@dataclass
class PackedBatch:
    """One packed micro-batch (all tensors on the same device)."""

    tokens: torch.Tensor
    """[T] int64 input ids."""
    labels: torch.Tensor
    """[T] int64 next-token targets (0 where there is none)."""
    loss_mask: torch.Tensor
    """[T] float32, 1 on response tokens that have a label."""
    segment_ids: torch.Tensor
    """[T] int64 segment index of each token."""
    cu_seqlens: torch.Tensor
    """[N + 1] int32 cumulative segment lengths (megatron/TE ``cu_seqlens``)."""
    advantages: torch.Tensor
    """[N] float32 advantage of each segment (episode)."""
    rollout_logprobs: torch.Tensor | None = None
    """[T] float32 engine log-prob of the target ``labels[t]`` (0 where no loss), for TIS and mismatch metrics."""
    old_logprobs: torch.Tensor | None = None
    """[T] float32 log-probs of the targets under the policy that the update starts from (None: on-policy)."""
    ref_logprobs: torch.Tensor | None = None
    """[T] float32 log-probs under the reference model (needed only with a KL penalty)."""
    sample_ids: torch.Tensor | None = None
    """[T] int64 globally unique id of the model call each target belongs to (sequence-mean loss modes)."""
    token_advantage_terms: torch.Tensor | None = None
    """[T] float32 per-token term added to the segment advantage of ``labels[t]`` (e.g. per-turn credit); None: 0."""
    teacher_logprobs: torch.Tensor | None = None
    """[T] float32 teacher log-probs of the targets, for the advantage term formed from the current log-probs
    (``cod_megatron.cod.token_advantages``; ``algorithm.teacher_coef``)."""
    cu_seqlens_padded: torch.Tensor | None = None
    """[N + 1] global offsets of the segments padded for context parallelism; set only on a CP shard, whose token
    tensors then hold this rank's part of every segment (see ``data/context_parallel.py``)."""
    host_max_seqlen: int | None = None
    """:attr:`max_seqlen` read on the host before the batch moved to a device (set by :meth:`to`)."""
    host_cu_seqlens: tuple[list[int], list[int] | None] | None = None
    """``(cu_seqlens, cu_seqlens_padded)`` read on the host before the batch moved to a device (set by :meth:`to`)."""

    def to(self, device: torch.device) -> PackedBatch:
        """This batch with every tensor on ``device`` (self when they all are): one copy per tensor, from pinned host
        memory and non-blocking to a GPU. The longest segment is read on the host first, so that building megatron's
        ``PackedSeqParams`` later needs no device-to-host sync."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        tensors = {k: v for k, v in fields.items() if isinstance(v, torch.Tensor)}
        if all(t.device == device for t in tensors.values()):
            return self
        pin = device.type == "cuda" and torch.cuda.is_available()
        moved = {
            k: (t.pin_memory() if pin and t.device.type == "cpu" else t).to(device, non_blocking=pin)
            for k, t in tensors.items()
        }
        return dataclasses.replace(
            self, **moved, host_max_seqlen=self.max_seqlen, host_cu_seqlens=self.cu_seqlens_on_host()
        )

    def cu_seqlens_on_host(self) -> tuple[list[int], list[int] | None]:
        """``(cu_seqlens, cu_seqlens_padded)`` as Python ints: the copy :meth:`to` kept, else read from the tensors
        (free on the host; a device sync only for a batch that was made on its device)."""
        if self.host_cu_seqlens is not None:
            return self.host_cu_seqlens
        padded = None if self.cu_seqlens_padded is None else self.cu_seqlens_padded.tolist()
        return self.cu_seqlens.tolist(), padded

    @property
    def num_tokens(self) -> int:
        """T."""
        return int(self.tokens.numel())

    @property
    def num_segments(self) -> int:
        """N."""
        return int(self.cu_seqlens.numel() - 1)

    @property
    def max_seqlen(self) -> int:
        """Longest (padded, on a CP shard) segment: the rotary table and varlen attention size by it."""
        if self.host_max_seqlen is not None:
            return self.host_max_seqlen
        cu = self.cu_seqlens if self.cu_seqlens_padded is None else self.cu_seqlens_padded
        return int(cu.diff().max().item())

    def optional_token_fields(self) -> dict[str, torch.Tensor | None]:
        """The per-token tensors that not every producer fills."""
        return {name: getattr(self, name) for name in OPTIONAL_TOKEN_FIELDS}

    def token_advantages(self) -> torch.Tensor:
        """[T] the advantage known before the forward: the segment's broadcast to its tokens, plus the per-token
        term where the batch has one (without it, exactly the broadcast)."""
        spread = self.advantages[self.segment_ids]
        return spread if self.token_advantage_terms is None else spread + self.token_advantage_terms

    def advantage_terms(self, teacher_coef: float) -> TokenAdvantages:
        """This batch's per-token advantages before the forward supplies the current log-probs."""
        return TokenAdvantages(self.token_advantages(), self.teacher_logprobs, teacher_coef)


def to_targets(values: torch.Tensor) -> torch.Tensor:
    """``out[p] = values[p + 1]`` and 0 at the end: position ``p`` predicts token ``p + 1`` (labels, loss fields)."""
    out = torch.zeros_like(values)
    out[:-1] = values[1:]
    return out


def pack_segments(segments: list[list[int]], prompt_lens: list[int], advantages: list[float]) -> PackedBatch:
    """Pack token lists into one THD row; the first ``prompt_lens[i]`` tokens of segment i are prompt (no loss)."""
    if not (len(segments) == len(prompt_lens) == len(advantages)) or not segments:
        raise ValueError("segments, prompt_lens and advantages must be non-empty and of equal length")
    tokens, mask, seg = [], [], []
    for i, (toks, plen) in enumerate(zip(segments, prompt_lens, strict=True)):
        if len(toks) < 1:
            raise ValueError(f"segment {i} is empty")
        if not 0 <= plen <= len(toks):
            raise ValueError(f"segment {i}: prompt length {plen} outside [0, {len(toks)}]")
        tokens += toks
        # position p predicts token p + 1, which is a response token when p + 1 >= plen
        mask += [1.0 if p + 1 >= plen and p + 1 < len(toks) else 0.0 for p in range(len(toks))]
        seg += [i] * len(toks)
    lengths = torch.tensor([len(s) for s in segments])
    cu = torch.zeros(len(segments) + 1, dtype=torch.int32)
    cu[1:] = lengths.cumsum(0)
    return PackedBatch(
        tokens=torch.tensor(tokens, dtype=torch.long),
        labels=torch.cat([to_targets(torch.tensor(s, dtype=torch.long)) for s in segments]),
        loss_mask=torch.tensor(mask),
        segment_ids=torch.tensor(seg, dtype=torch.long),
        cu_seqlens=cu,
        advantages=torch.tensor(advantages, dtype=torch.float32),
    )


def concat_packed(batches: list[PackedBatch]) -> PackedBatch:
    """Join packed batches into one row (segments keep their order, labels and advantages)."""
    if not batches:
        raise ValueError("nothing to concatenate")
    seg_offsets, tok_offsets = [0], [0]
    for b in batches[:-1]:
        seg_offsets.append(seg_offsets[-1] + b.num_segments)
        tok_offsets.append(tok_offsets[-1] + b.num_tokens)
    cu = [batches[0].cu_seqlens[:1]] + [b.cu_seqlens[1:] + o for b, o in zip(batches, tok_offsets, strict=True)]
    return PackedBatch(
        tokens=torch.cat([b.tokens for b in batches]),
        labels=torch.cat([b.labels for b in batches]),
        loss_mask=torch.cat([b.loss_mask for b in batches]),
        segment_ids=torch.cat([b.segment_ids + o for b, o in zip(batches, seg_offsets, strict=True)]),
        cu_seqlens=torch.cat(cu).to(torch.int32),
        advantages=torch.cat([b.advantages for b in batches]),
        **{name: _cat_optional(batches, name) for name in OPTIONAL_TOKEN_FIELDS},
    )


def _cat_optional(batches: list[PackedBatch], name: str) -> torch.Tensor | None:
    """Concatenate an optional per-token field; batches without it contribute zeros (padding, no loss)."""
    present = [getattr(b, name) for b in batches if getattr(b, name) is not None]
    if not present:
        return None
    dtype = present[0].dtype
    return torch.cat(
        [getattr(b, name) if getattr(b, name) is not None else torch.zeros(b.num_tokens, dtype=dtype) for b in batches]
    )


def pad_to_multiple(batch: PackedBatch, multiple: int) -> PackedBatch:
    """Append one padding segment (no loss, advantage 0) so that T is a multiple of ``multiple``.

    Sequence parallelism splits the packed row over TP ranks, so T must divide evenly; the padding is its own
    segment, so no real token attends to it.
    """
    pad = -batch.num_tokens % multiple
    if pad == 0:
        return batch
    filler = pack_segments([[0] * pad], [pad], [0.0])
    return concat_packed([batch, filler])


def pad_to_length(batch: PackedBatch, length: int) -> PackedBatch:
    """Append one padding segment so that T is exactly ``length`` (``length >= T``).

    The interleaved pipeline schedule sends activations of one fixed shape (``pipeline_micro_batches``).
    """
    if length < batch.num_tokens:
        raise ValueError(f"cannot pad {batch.num_tokens} tokens to {length}")
    return batch if length == batch.num_tokens else pad_to_multiple(batch, length)


def padding_batch(length: int) -> PackedBatch:
    """A micro-batch of one padding segment: no loss tokens, advantage 0 (fills a pipeline group)."""
    return pack_segments([[0] * length], [length], [0.0])


def synthetic_packed_batch(
    *, seed: int, n_segments: int, vocab_size: int, min_len: int = 4, max_len: int = 24, prompt_frac: float = 0.4
) -> PackedBatch:
    """Random segments of different lengths with random advantages (tests and the pre-CoD `make train`)."""
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(min_len, max_len + 1, (n_segments,), generator=g).tolist()
    segs = [torch.randint(0, vocab_size, (n,), generator=g).tolist() for n in lens]
    plens = [max(1, int(n * prompt_frac)) for n in lens]
    adv = (torch.randn(n_segments, generator=g)).tolist()
    return pack_segments(segs, plens, adv)
