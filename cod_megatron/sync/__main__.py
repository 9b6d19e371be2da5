"""``python -m cod_megatron.sync --recipe NAME [--node-gbps 50] [--nvlink-gbps 300] [overrides]``

Prints the weight-sync plan of a recipe (:mod:`cod_megatron.sync.plan`): bytes per link and estimated time of the
broadcast, TP-aligned and CUDA-IPC methods.
"""

from __future__ import annotations

import cod_megatron.infra.quiet  # noqa: F401  # isort: skip  (first: filters megatron's known import noise)
import sys

from cod_megatron.infra.cli import parser, resolve
from cod_megatron.sync.plan import plan_sync, render


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    p = parser("python -m cod_megatron.sync", "Weight-sync bytes per link and estimated time.")
    p.add_argument("--node-gbps", type=float, default=50.0, help="inter-node bandwidth per node, GB/s")
    p.add_argument("--nvlink-gbps", type=float, default=300.0, help="NVLink bandwidth per GPU, GB/s")
    args = p.parse_args(argv)
    cfg, layout = resolve(args)
    print(
        render(cfg, layout, plan_sync(cfg, layout, args.node_gbps, args.nvlink_gbps), args.node_gbps, args.nvlink_gbps)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
