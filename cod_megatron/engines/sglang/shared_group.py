"""Several SGLang engines in ONE weight-update group: one broadcast per bucket feeds them all.

Per-engine :meth:`~cod_megatron.engines.sglang.client.SGLangEngine.update_weights` broadcasts once per engine, which
a shared group cannot take: here every engine's ``/update_weights_from_distributed`` POST goes out, the single
broadcast runs meanwhile, and the first failure of either raises at once (:mod:`.collective_post`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING

from cod_megatron.engines.sglang.client import Broadcast, SGLangEngine
from cod_megatron.engines.sglang.collective_post import post_with_collective

if TYPE_CHECKING:
    import torch


def update_weights_shared_group(
    engines: Sequence[SGLangEngine],
    named_tensors: list[tuple[str, torch.Tensor]],
    *,
    version: int,
    last: bool,
    broadcast: Broadcast,
    abort: Callable[[], None] | None = None,
) -> None:
    """One bucket to engines that share ONE update group: every POST goes out, then a single broadcast, then answers;
    the first POST to fail (or the broadcast) raises at once after ``abort`` (:mod:`.collective_post`).

    (Per-engine :meth:`SGLangEngine.update_weights` would broadcast once per engine, which a shared group cannot take.)
    """
    for e in engines:
        if e.transport != "distributed":
            raise ValueError(f"SGLangEngine({e.url}): a shared update group needs transport='distributed'")
        e._begin_session()
    bodies = [e.bucket_body(named_tensors, version=version, last=last) for e in engines]
    pool = ThreadPoolExecutor(max(1, len(engines)), thread_name_prefix="sglang-post")

    def post_all() -> None:
        path = "/update_weights_from_distributed"
        futs = [pool.submit(e._post_weights, path, b) for e, b in zip(engines, bodies, strict=True)]
        for f in wait(futs, return_when=FIRST_EXCEPTION).done:
            f.result()  # the first failure raises; otherwise all are done
        for f in futs:
            f.result()

    try:
        timeout_s = max((e.timeout_s for e in engines), default=300.0) + 5
        post_with_collective(post_all, lambda: broadcast(list(named_tensors)), abort=abort, timeout_s=timeout_s)
    except BaseException:
        for e in engines:  # every engine's session must still be closed
            e._abandon_session()
        raise
    finally:
        pool.shutdown(wait=False)
    if last:
        for e in engines:
            e._end_session()
            e.weight_version = version


__all__ = ["update_weights_shared_group"]
