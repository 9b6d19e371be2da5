"""Colocated engines are matched to trainer ranks by GPU UUID, not by index (issue 26, item 6).

Ray places each engine's bundle on whichever GPUs it likes; engine ``i`` need not sit on GPUs ``i * engine_tp ..``.
A CUDA-IPC payload only opens on the GPU that made it, so engine ``i``'s TP rank ``k`` must get the payload of the
trainer rank on ITS GPU. The index rule (``ParallelLayout.colocated_engine_ranks``) is right only when the placement
happens to follow the index; these assignments are shuffled.
"""

from __future__ import annotations

import pytest

from cod_megatron.config import ParallelLayout
from cod_megatron.config.device_map import ColocationError, engine_ranks_by_device


def _layout(engines: int, engine_tp: int) -> ParallelLayout:
    return ParallelLayout(
        tp=1, pp=1, cp=1, ep=1, dp=engines * engine_tp, vpp=None, sequence_parallel=False,
        engines=engines, engine_tp=engine_tp, colocated=True, gpus_per_node=8,
    )  # fmt: skip


def _uuid(i: int) -> str:
    return f"GPU-{i:08x}-1111-2222-3333-44445555{i:04x}"


def test_a_shuffled_placement_maps_each_engine_tp_rank_to_the_trainer_rank_on_its_gpu():
    # trainer rank r sits on physical GPU perm_r[r]; Ray gave engine e (TP 2) the GPUs in placement[e], in TP order
    perm_r = [3, 0, 6, 1, 7, 2, 5, 4]
    placement = [[6, 1], [0, 4], [7, 3], [2, 5]]
    got = engine_ranks_by_device([[_uuid(g) for g in gpus] for gpus in placement], [_uuid(g) for g in perm_r])
    assert got == [[perm_r.index(g) for g in gpus] for gpus in placement] == [[2, 3], [1, 7], [4, 0], [5, 6]]
    assert got != _layout(4, 2).colocated_engine_ranks()  # the index rule hands every engine foreign payloads


def test_uuids_match_in_either_spelling():
    """nvidia-smi and Ray say ``GPU-<uuid>``; torch's device properties give the bare UUID."""
    trainer = [_uuid(5).removeprefix("GPU-"), _uuid(9).removeprefix("GPU-").upper()]
    assert engine_ranks_by_device([[_uuid(9)], [_uuid(5)]], trainer) == [[1], [0]]


def test_an_engine_gpu_without_a_trainer_rank_is_refused_by_name():
    with pytest.raises(ColocationError, match=r"engine 1 TP rank 0 .*GPU-00000009.* no trainer rank"):
        engine_ranks_by_device([[_uuid(0)], [_uuid(9)]], [_uuid(0), _uuid(1)])


def test_two_trainer_ranks_on_one_gpu_or_two_engines_on_one_gpu_are_refused():
    with pytest.raises(ColocationError, match="trainer ranks 0 and 1 both"):
        engine_ranks_by_device([[_uuid(0)]], [_uuid(0), _uuid(0)])
    with pytest.raises(ColocationError, match="engine 1 TP rank 0 .* also .*engine 0 TP rank 0"):
        engine_ranks_by_device([[_uuid(0)], [_uuid(0)]], [_uuid(0), _uuid(1)])
