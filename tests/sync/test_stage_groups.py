"""A pipeline stage's update groups when the engine's POST fails (issue 26, item 5).

Rank 0 POSTs to the engine while the stage's source (another process) joins the group or broadcasts in it. A server
that answers an error at once never takes part, so the source would wait in the rendezvous or the broadcast for the
group's 10-minute timeout. Two spawned gloo ranks (rank 0 holds a stand-in server, rank 1 is stage 1's source): a
failed join and then a failed bucket each make BOTH ranks raise the server's message within seconds.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import threading
import time

import pytest

INIT_ERROR = "Failed to initialize custom process group: no route to the source"
UPDATE_ERROR = "Failed to receive weights: CUDA out of memory"


class _Target:
    """What rank 0's weight sync holds per engine: something with an SGLang ``client``."""

    def __init__(self, url: str):
        from cod_megatron.engines.sglang.client import SGLangEngine

        self.client = SGLangEngine(url, transport="distributed")


def _scenarios(rank: int, groups, log: list) -> None:
    """A failed join, then (once the join works) a failed bucket; each outcome appended to ``log``."""
    import torch

    from tests.engines.sglang_standin import GlooTransport, SGLangStandIn

    def attempt(step: str, fn) -> object:
        t0 = time.monotonic()
        try:
            out = fn()
            log.append({"step": step, "error": None, "seconds": time.monotonic() - t0})
            return out
        except Exception as exc:
            log.append({"step": step, "error": f"{type(exc).__name__}: {exc}", "seconds": time.monotonic() - t0})
            return None

    if rank == 0:
        with SGLangStandIn(_Echo(), transport=GlooTransport(), server_args={"tp_size": 1}) as server:
            target = _Target(server.url)
            server.failures["/init_weights_update_group"] = (400, INIT_ERROR)
            attempt("join", lambda: groups.connect(1, [target]))
            server.failures.clear()
            names = attempt("join again", lambda: groups.connect(1, [target]))
            server.failures["/update_weights_from_distributed"] = (500, UPDATE_ERROR)
            attempt("bucket", lambda: groups.receive(1, [target], names, 0, closes=True))
    else:
        attempt("join", groups.join)
        names = attempt("join again", groups.join)
        attempt("bucket", lambda: groups.send(iter([("w", torch.ones(4, 4))]), names, 1 << 20))


class _Echo:
    """The stand-in's engine: takes whatever it is sent."""

    def update_weights(self, named_tensors, *, version, last):
        pass

    def health(self):
        return {"ok": True, "weight_version": -1}


def _worker(rank: int, store: str, out: str) -> None:
    """One rank: the scenarios in a daemon thread, at most 60 s; the log (and whether it hung) to ``out``, then exit
    at once (a rank blocked in gloo cannot be joined)."""
    import torch.distributed as dist

    from cod_megatron.sync.stage_groups import StageGroups
    from cod_megatron.sync.stages import StagePlan

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    stage_group = dist.new_group(ranks=[0, 1])
    plan = StagePlan(stage=rank, is_source=True, sources=(0, 1), groups=(None, stage_group))
    log: list = []
    thread = threading.Thread(target=_scenarios, args=(rank, StageGroups(plan, backend="gloo"), log), daemon=True)
    thread.start()
    thread.join(60)
    with open(out, "w") as f:
        json.dump({"log": log, "hung": thread.is_alive()}, f)
    os._exit(0)


@pytest.mark.dist
def test_a_failed_post_makes_rank_0_and_the_stage_source_raise_the_servers_message(tmp_path):
    ctx = mp.get_context("spawn")
    outs = [str(tmp_path / f"rank{r}.json") for r in range(2)]
    procs = [ctx.Process(target=_worker, args=(r, str(tmp_path / "store"), outs[r])) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    results = []
    for r, out in enumerate(outs):
        assert os.path.exists(out), f"rank {r} wrote nothing (exit code {procs[r].exitcode})"
        with open(out) as f:
            results.append(json.load(f))
    for r, res in enumerate(results):
        steps = {e["step"]: e for e in res["log"]}
        assert not res["hung"], f"rank {r} is still blocked after 60 s: {res['log']}"
        assert INIT_ERROR in (steps["join"]["error"] or ""), (r, steps)
        assert steps["join again"]["error"] is None, (r, steps)
        assert UPDATE_ERROR in (steps["bucket"]["error"] or ""), (r, steps)
        assert steps["join"]["seconds"] < 15 and steps["bucket"]["seconds"] < 15, (r, steps)
