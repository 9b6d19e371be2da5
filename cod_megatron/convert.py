"""HF <-> megatron checkpoint conversion: ``python -m cod_megatron.convert {hf-to-mcore,mcore-to-hf} ...``.

``hf-to-mcore --hf DIR --out CKPT [--tp N --pp N]`` writes a megatron dist-checkpoint (torch_dist format, key
``"model"``): what ``PolicyTrainer.load(path, with_optimizer=False)`` reads, under any TP/PP layout.
``mcore-to-hf --ckpt CKPT --hf-config DIR --out DIR [--tp N --pp N]`` writes config.json + safetensors that
``AutoModelForCausalLM.from_pretrained`` loads. Both run in one process, or under ``torchrun`` with
``tp * pp * dp == WORLD_SIZE``. The mapping itself lives in :mod:`cod_megatron.models.hf_names`; the file side in
:mod:`cod_megatron.policy.hf_weights`.
"""

from __future__ import annotations

import cod_megatron.infra.quiet  # noqa: F401  # isort: skip  (first: filters megatron's known import noise)
import argparse
import os
import socket
import sys

from cod_megatron.config import ModelConfig, ParallelConfig, ParallelLayout
from cod_megatron.infra.process_env import process_rank

_DTYPES = {"float32", "bfloat16"}


def _layout(tp: int, pp: int, model: ModelConfig) -> tuple[ParallelLayout, int]:
    """A trainer-only layout over the whole launched world (DP fills what TP x PP leaves)."""
    me = process_rank()
    world = me.world_size
    if world == 1 and "MASTER_PORT" not in os.environ:  # a lone process: do not collide on the default port
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = str(s.getsockname()[1])
    if world % (tp * pp):
        raise SystemExit(f"error: WORLD_SIZE={world} is not a multiple of tp * pp = {tp * pp}")
    cfg = ParallelConfig(
        tp=tp, pp=pp, dp=world // (tp * pp), engines=world, engine_tp=1, gpus_per_node=me.local_world_size
    )
    return ParallelLayout.from_config(cfg, model), world


def _build(args: argparse.Namespace, hf_config_dir: str):
    """Read the HF config, start the process groups and build this rank's (randomly initialised) model."""
    from transformers import AutoConfig

    from cod_megatron.models.hf_config import model_config_from_hf
    from cod_megatron.policy.distributed import init_distributed
    from cod_megatron.policy.model import build_model

    hf_config = AutoConfig.from_pretrained(hf_config_dir)
    model_cfg = model_config_from_hf(hf_config, params_dtype=args.params_dtype)
    layout, world = _layout(args.tp, args.pp, model_cfg)
    init_distributed(layout, rank=process_rank().rank, world_size=world)
    return hf_config, model_cfg, build_model(model_cfg, layout)


def hf_to_mcore(args: argparse.Namespace) -> str:
    """HF safetensors -> megatron dist-checkpoint."""
    import torch.distributed as dist
    from megatron.core import dist_checkpointing

    from cod_megatron.policy.hf_weights import load_hf_weights

    if os.path.isdir(args.out) and os.listdir(args.out):  # every rank sees the same filesystem: all stop together
        raise SystemExit(f"error: {args.out} is not empty")
    _, model_cfg, model = _build(args, args.hf)
    load_hf_weights(model, args.hf, model_cfg)
    if dist.get_rank() == 0:
        os.makedirs(args.out, exist_ok=True)
    dist.barrier()
    dist_checkpointing.save({"model": model.sharded_state_dict()}, args.out)
    return args.out


def mcore_to_hf(args: argparse.Namespace) -> str:
    """Megatron dist-checkpoint (key ``"model"``) -> HF directory."""
    import torch
    from megatron.core import dist_checkpointing

    from cod_megatron.models.hf_names import carried_prefix
    from cod_megatron.policy.hf_weights import save_hf

    hf_config, model_cfg, model = _build(args, args.hf_config)
    loaded = dist_checkpointing.load({"model": model.sharded_state_dict()}, args.ckpt)
    model.load_state_dict(loaded["model"])
    dtype = None if args.dtype == "auto" else getattr(torch, args.dtype)
    if args.dtype == "auto" and isinstance(getattr(hf_config, "dtype", None), torch.dtype):
        dtype = hf_config.dtype  # keep the dtype the HF checkpoint was published in
    # a vision-language checkpoint's tower is not in the policy: copied unchanged from the --hf-config checkpoint
    carry = args.hf_config if carried_prefix(model_cfg) else None
    return save_hf(model, model_cfg, hf_config, args.out, dtype=dtype, carry_from=carry)


def main(argv: list[str] | None = None) -> int:
    """CLI entry; prints the written path and returns the exit code."""
    p = argparse.ArgumentParser(prog="cod_megatron.convert", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("hf-to-mcore", help="HF safetensors directory -> megatron dist-checkpoint")
    a.add_argument("--hf", required=True, help="directory written by save_pretrained (config.json + safetensors)")
    a.add_argument("--out", required=True, help="empty or new checkpoint directory")
    b = sub.add_parser("mcore-to-hf", help="megatron dist-checkpoint -> HF directory")
    b.add_argument("--ckpt", required=True, help="dist-checkpoint with key 'model' (hf-to-mcore or the trainer)")
    b.add_argument("--hf-config", required=True, help="directory holding the model's HF config.json")
    b.add_argument("--out", required=True, help="output directory")
    b.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", *sorted(_DTYPES)],
        help="dtype of the written tensors; auto = the HF config's dtype, else the parameters'",
    )
    for s in (a, b):
        s.add_argument("--tp", type=int, default=1, help="tensor-parallel size (world = tp * pp * dp)")
        s.add_argument("--pp", type=int, default=1, help="pipeline-parallel size")
        s.add_argument("--params-dtype", default="float32", choices=sorted(_DTYPES), help="megatron parameter dtype")
    args = p.parse_args(argv)
    from cod_megatron.infra.log import setup_logging
    from cod_megatron.policy.distributed import destroy_distributed

    setup_logging()

    try:
        out = hf_to_mcore(args) if args.cmd == "hf-to-mcore" else mcore_to_hf(args)
    finally:
        destroy_distributed()
    if process_rank().is_first:
        print(out)
    return 0


if __name__ == "__main__":  # guard required: dist_checkpointing's async writer starts processes with "spawn"
    sys.exit(main())
