"""What engines that share the trainer's GPUs ask of a run: one owner for the rules the loop, the memory planner
and validation must agree on.

Colocated SGLang engines receive weights as CUDA-IPC handles made in the trainer processes and free their memory
(``--enable-memory-saver``) while the trainer steps. Two things break that on a real GPU box:

* ``PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True``: an IPC handle of an expandable segment is opened with
  ``pidfd_getfd``, which containers refuse (``RuntimeError: pidfd_getfd: Operation not permitted``,
  pytorch#165685), and torch_memory_saver refuses to start under it, so the servers die at launch;
* off-policy rollouts: the producer thread generates while the trainer steps, so the engines cannot be released
  then, and a colocated GPU would have to hold trainer and engine at once (the planner counts them released).
"""

from __future__ import annotations

from cod_megatron.config.base import require
from cod_megatron.config.layout import ParallelLayout
from cod_megatron.config.sections import RolloutConfig, RunSection

ALLOC_CONF = "PYTORCH_CUDA_ALLOC_CONF"


def shares_gpus_with_engines(rollout: RolloutConfig, layout: ParallelLayout) -> bool:
    """Colocated SGLang engines: CUDA-IPC weight updates and the memory saver (embedded engines use neither)."""
    return rollout.engine == "sglang" and layout.colocated


def engines_released_for_train(rollout: RolloutConfig, layout: ParallelLayout) -> bool:
    """Whether the engines give their GPU memory back while the trainer steps (the loop and the planner read this)."""
    return layout.colocated and not rollout.off_policy


def expandable_segments(env: dict[str, str]) -> bool:
    """Whether ``env`` turns on the CUDA caching allocator's expandable segments."""
    return "expandable_segments:true" in env.get(ALLOC_CONF, "").replace(" ", "").lower()


def check_colocation(run: RunSection, rollout: RolloutConfig, layout: ParallelLayout) -> None:
    """Refuse, by dotted field, the colocated layouts that would fail on the GPUs (see the module docstring)."""
    if not shares_gpus_with_engines(rollout, layout):
        return
    require(
        not rollout.off_policy,
        "rollout.off_policy",
        "colocated SGLang engines are released while the trainer steps, but an off-policy producer is generating "
        "then; use rollout.off_policy=false, or parallel.colocated=false (engines on their own GPUs)",
    )
    require(
        not expandable_segments(run.env_vars),
        "run.env_vars",
        f"{ALLOC_CONF}=expandable_segments:True breaks CUDA-IPC weight updates in containers (pidfd_getfd) and "
        "the SGLang memory saver of colocated engines; drop it, or set parallel.colocated=false",
    )
