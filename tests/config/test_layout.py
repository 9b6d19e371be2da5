"""ParallelLayout as arithmetic: sizes at 8, 64 and 256 GPUs, and the layouts it must reject."""

import pytest

from cod_megatron.config import LayoutError, ModelConfig, ParallelConfig, ParallelLayout
from cod_recipes.models import llama3_70b, qwen3_8b

LLAMA70, QWEN8 = llama3_70b(), qwen3_8b()


def layout(model=QWEN8, **kw) -> ParallelLayout:
    return ParallelLayout.from_config(ParallelConfig(**kw), model)


def test_8_gpus_colocated_shares_devices():
    lay = layout(tp=2, dp=4, sequence_parallel=True, engines=8, engine_tp=1, colocated=True)
    assert (lay.trainer_world_size, lay.engine_gpus, lay.world_size, lay.nodes) == (8, 8, 8, 1)
    assert lay.megatron_kwargs() == {
        "tensor_model_parallel_size": 2,
        "pipeline_model_parallel_size": 1,
        "virtual_pipeline_model_parallel_size": None,
        "context_parallel_size": 1,
        "expert_model_parallel_size": 1,
    }


def test_colocated_engines_load_from_the_trainer_ranks_on_their_gpus():
    one_each = layout(tp=2, dp=4, engines=8, engine_tp=1, colocated=True)  # qwen3_8b
    assert one_each.colocated_engine_ranks() == [[r] for r in range(8)]
    pairs = layout(tp=2, dp=4, engines=4, engine_tp=2, colocated=True)
    assert pairs.colocated_engine_ranks() == [[0, 1], [2, 3], [4, 5], [6, 7]]
    with pytest.raises(ValueError, match="colocated"):
        layout(LLAMA70, tp=8, pp=4, dp=1, engines=4, engine_tp=8, colocated=False).colocated_engine_ranks()


def test_64_gpus_disaggregated_adds_engine_gpus():
    lay = layout(LLAMA70, tp=8, pp=4, vpp=5, dp=1, engines=4, engine_tp=8, colocated=False, sequence_parallel=True)
    assert (lay.trainer_world_size, lay.engine_gpus, lay.world_size, lay.nodes) == (32, 32, 64, 8)
    assert lay.model_parallel_size == 32
    assert len(lay.engine_bundles()) == 4 and all(len(b) == 8 for b in lay.engine_bundles())


@pytest.mark.parametrize("tp,pp,cp,dp", [(8, 4, 2, 2), (8, 2, 1, 8), (4, 4, 4, 2), (8, 8, 1, 2)])
def test_256_gpus_trainer_products(tp, pp, cp, dp):
    lay = layout(LLAMA70, tp=tp, pp=pp, cp=cp, dp=dp, engines=16, engine_tp=8, colocated=False)
    assert lay.trainer_world_size == tp * pp * cp * dp == 128
    assert lay.world_size == 256 and lay.nodes == 32


@pytest.mark.parametrize(
    "kw,field",
    [
        (dict(tp=3, dp=1, engines=3, engine_tp=1), "parallel.tp"),  # 32 heads % 3
        (dict(tp=16, gpus_per_node=16, engines=16), "parallel.tp"),  # 8 kv heads % 16
        (dict(pp=5, engines=5), "parallel.pp"),  # 36 layers % 5
        (dict(pp=2, vpp=4, engines=2), "parallel.pp"),  # 36 % (2 * 4)
        (dict(vpp=2), "parallel.vpp"),  # vpp without pp
        (dict(sequence_parallel=True), "parallel.sequence_parallel"),  # tp == 1
        (dict(ep=3, dp=4, engines=4), "parallel.ep"),
        (dict(tp=2, dp=2, engines=3, colocated=True), "parallel.engines"),  # 3 != 4 colocated
        (dict(tp=2, dp=3, engines=2, engine_tp=2, colocated=False), "parallel.gpus_per_node"),  # 10 of 8
        (dict(tp=16, engines=16), "parallel.tp"),  # TP across nodes
        (dict(engine_tp=16, engines=1, tp=2, dp=8, colocated=True), "parallel.engine_tp"),
        (dict(dp=0), "parallel.dp"),
    ],
)
def test_rejects_impossible_layouts_by_field(kw, field):
    with pytest.raises(LayoutError) as e:
        layout(**kw)
    assert e.value.field == field


def test_vocab_must_split_over_tp():
    odd = ModelConfig(num_attention_heads=4, num_query_groups=4, vocab_size=255)
    with pytest.raises(LayoutError, match="vocab_size"):
        layout(odd, tp=2, engines=2)
