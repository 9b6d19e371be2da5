"""TP=2 and PP=2 give the TP=1 loss and gradients on packed THD batches; the distributed optimizer and
dist-checkpointing reshard across layouts. All fp32 on gloo, in spawned processes.

Same weights in every layout come from one dist-checkpoint written by the TP=1 reference (megatron's
sharded state dict handles the SwiGLU fc1 interleave and the grouped QKV layout when resharding).

The advantages are per token (issue 34): segment advantages, per-token terms on every other micro-batch and a term
formed in the forward from the current log-probs, ``teacher_coef (teacher_t - sg(logp_t))``; so every split below
(micro-batch, DP, TP, TP+SP, PP, CP; the fused ``pg_head`` under TP+SP and CP) also checks that they travel with
their tokens and are formed from this rank's log-probs.
"""

import os

import pytest
import torch

from tests.dist import init_method, spawn
from tests.policy.parallel_utils import assemble_tp, local_grads, tiny_cfg, token_batches

pytestmark = pytest.mark.dist

LAYOUTS = {
    "ref": ["parallel.engines=1"],
    "tp2": ["parallel.tp=2", "parallel.engines=2"],
    "pp2": ["parallel.pp=2", "parallel.engines=2"],
    "tp2sp": ["parallel.tp=2", "parallel.engines=2", "parallel.sequence_parallel=true"],
    # DP x CP = 2 ranks: the distributed optimizer would leave each rank only its shard of reduced grads
    "cp2": ["parallel.cp=2", "parallel.engines=2", "optimizer.use_distributed_optimizer=false"],
    "dp2": ["parallel.dp=2", "parallel.engines=2"],
}
# A_t = segment + per-token term + TEACHER_COEF (teacher_t - sg(logp_t)) in every layout
TOKEN_ADVANTAGES = ["algorithm.teacher_coef=0.5"]
# the pg_head LM head (loss gradient inside the head, several row chunks) against the logits reference
PG_HEAD = ["model.fused_lm_head=true", "model.fused_lm_head_kernel=pg_head", "model.lm_head_chunk_rows=8"]
LAYOUTS["tp2sp_pg_head"] = LAYOUTS["tp2sp"] + PG_HEAD
LAYOUTS["cp2_pg_head"] = LAYOUTS["cp2"] + PG_HEAD


def _worker(rank: int, world: int, names: str, workdir: str):
    """Every layout of ``names`` ("a+b": the same parallel layout, other model options) in one process group:
    the pg_head variants share their base layout's processes (two spawns fewer in CI)."""
    from cod_megatron.config import finalize
    from cod_megatron.policy.distributed import destroy_distributed, init_distributed

    layouts = names.split("+")
    layout = finalize(tiny_cfg("optimizer.use_distributed_optimizer=true", *TOKEN_ADVANTAGES, *LAYOUTS[layouts[0]]))
    init_distributed(layout, rank=rank, world_size=world, seed=7, init_method=init_method())
    try:
        return {name: _measure(rank, world, name, workdir) for name in layouts}
    finally:
        destroy_distributed()


def _count_pg_head_calls() -> list[int]:
    """Wrap the fused head op the trainer's pg_head path calls (in this spawned worker only); returns its counter."""
    from cod_megatron.policy import pg_head

    calls, op = [0], pg_head.linear_pg_head

    def counted(*args, **kwargs):
        calls[0] += 1
        return op(*args, **kwargs)

    pg_head.linear_pg_head = counted
    return calls


def _measure(rank: int, world: int, name: str, workdir: str) -> dict:
    from cod_megatron.config import finalize
    from cod_megatron.data import concat_packed
    from cod_megatron.data.denominators import step_denominators
    from cod_megatron.policy.trainer import PolicyTrainer

    calls = _count_pg_head_calls()

    cfg = tiny_cfg("optimizer.use_distributed_optimizer=true", *TOKEN_ADVANTAGES, *LAYOUTS[name])
    layout = finalize(cfg)
    trainer = PolicyTrainer(cfg, layout)
    data = token_batches(cfg.model.vocab_size)
    init_ckpt, step_ckpt = os.path.join(workdir, "init"), os.path.join(workdir, "step1")
    out = {}
    if name == "ref":
        trainer.save(init_ckpt, with_optimizer=False)
    else:
        trainer.load(init_ckpt, with_optimizer=False)
    if name != "dp2":
        for m in trainer.model:
            m.zero_grad_buffer()
        out["loss"] = trainer._run(data, forward_only=False)["loss"]
        out["grads"] = local_grads(trainer)
        out["pg_head_calls"] = calls[0]  # the fused head ran (pg_head layouts) or did not (the others)
    if name == "ref":  # the same segments split into 1 and 2 micro-batches instead of 4
        for split in ([concat_packed(data)], [concat_packed(data[:2]), concat_packed(data[2:])]):
            for m in trainer.model:
                m.zero_grad_buffer()
            out.setdefault("splits", []).append((trainer._run(split, forward_only=False)["loss"], local_grads(trainer)))
    if name in ("ref", "dp2"):
        mine = data if name == "ref" else data[rank::world]  # DP: each rank takes half the micro-batches
        denom = step_denominators(data)  # the whole step's, over both DP ranks
        out["step1"] = trainer.train_step(mine, denom)
        if name == "dp2":
            trainer.save(step_ckpt, with_optimizer=True)  # weights and Adam moments after one step
        out["after1"] = trainer.evaluate(mine, denom)["loss"]
        out["step2"] = trainer.train_step(mine, denom)
    if name in ("tp2", "pp2"):
        trainer.load(step_ckpt, with_optimizer=True)
        out["after1"] = trainer.evaluate(data)["loss"]
        out["step2"] = trainer.train_step(data)
    return out


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("mp"))
    out = {}
    for names in ("ref", "dp2", "tp2", "pp2", "tp2sp+tp2sp_pg_head", "cp2+cp2_pg_head"):
        ranks = spawn(_worker, 1 if names == "ref" else 2, names, workdir)
        out |= {name: [r[name] for r in ranks] for name in names.split("+")}
    return out | {"ref": out["ref"][0]}


def _assert_grads_equal(full: dict, ref: dict):
    assert set(full) == set(ref)
    for name, g in ref.items():
        torch.testing.assert_close(full[name], g, rtol=1e-5, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")


def _assert_head_ran(layout: str, ranks: list[dict]):
    """The pg_head layouts trained through the fused head, the others never: an equal loss from a pg_head layout
    that fell back to the logits path would prove nothing about the head."""
    for r in ranks:
        assert (r["pg_head_calls"] > 0) == layout.endswith("_pg_head"), (layout, r["pg_head_calls"])


@pytest.mark.parametrize("layout", ["tp2", "tp2sp", "tp2sp_pg_head"])
def test_tp2_loss_and_grads_equal_tp1(results, layout):
    ref, tp2 = results["ref"], results[layout]
    _assert_head_ran(layout, tp2)
    for r in tp2:
        assert r["loss"] == pytest.approx(ref["loss"], rel=1e-5)
    _assert_grads_equal(assemble_tp([r["grads"] for r in tp2]), ref["grads"])


def test_pp2_loss_and_grads_equal_pp1(results):
    ref, pp2 = results["ref"], results["pp2"]
    for r in pp2:  # the loss is broadcast from the last stage to every stage
        assert r["loss"] == pytest.approx(ref["loss"], rel=1e-5)
    merged = {**pp2[0]["grads"], **pp2[1]["grads"]}
    _assert_grads_equal(merged, ref["grads"])


def test_loss_and_grads_do_not_depend_on_the_micro_batch_split(results):
    ref = results["ref"]
    for loss, grads in ref["splits"]:
        assert loss == pytest.approx(ref["loss"], rel=1e-6)
        for name, g in ref["grads"].items():
            torch.testing.assert_close(grads[name], g, rtol=1e-6, atol=1e-7, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("layout", ["cp2", "cp2_pg_head"])
def test_cp2_loss_and_grads_equal_cp1(results, layout):
    # CP ranks hold the same weights; DDP sums their gradients over the DP x CP group
    ref, cp2 = results["ref"], results[layout]
    _assert_head_ran(layout, cp2)
    for r in cp2:
        assert r["loss"] == pytest.approx(ref["loss"], rel=1e-5)
        _assert_grads_equal(r["grads"], ref["grads"])


def test_grads_are_not_trivially_equal(results):
    # guards the two tests above: gradients are non-zero and differ between parameters
    g = results["ref"]["grads"]
    assert all(t.abs().sum() > 0 for t in g.values())
    assert results["ref"]["loss"] != 0


def test_dp2_distributed_optimizer_step_equals_dp1(results):
    ref, dp2 = results["ref"], results["dp2"]
    for r in dp2:
        assert r["step1"]["loss"] == pytest.approx(ref["step1"]["loss"], rel=1e-6, abs=1e-7)
        assert r["step1"]["grad_norm"] == pytest.approx(ref["step1"]["grad_norm"], rel=1e-6)
        assert r["after1"] == pytest.approx(ref["after1"], rel=1e-6, abs=1e-7)
        assert r["step2"]["loss"] == pytest.approx(ref["step2"]["loss"], rel=1e-6, abs=1e-7)
    assert ref["after1"] != pytest.approx(ref["step1"]["loss"], rel=1e-3)  # the step changed the model


@pytest.mark.parametrize("layout", ["tp2", "pp2"])
def test_checkpoint_saved_at_dp2_loads_into_other_layout_with_optimizer(results, layout):
    ref = results["ref"]
    for r in results[layout]:
        assert r["after1"] == pytest.approx(ref["after1"], rel=1e-5)
        # the next step uses the resharded Adam moments: same loss after it as the unsharded reference
        assert r["step2"]["loss"] == pytest.approx(ref["step2"]["loss"], rel=1e-5)
        assert r["step2"]["grad_norm"] == pytest.approx(ref["step2"]["grad_norm"], rel=1e-5)
