"""The embedded engine on the real model (SmolLM2-135M): one training step's engine rounds, replayed A/B.

``python scripts/bench_embedded_engine.py [--baseline REV] [--repeats 2] [--threads 1] [overrides ...]``

Records the engine rounds of one CoD step of ``smollm2_135m_cod_cpu`` (step 1, the prepared pre-trained weights,
the recipe's packs, G and sampling; ``overrides`` as for the recipe), then replays the same rounds through the
engine of this checkout and the engine of git revision ``--baseline`` (default ``HEAD``), interleaved A, B, A, B in
one process, so the ratio holds on a shared machine where absolute seconds do not. Prints seconds per replay, the
ratio, and whether every sampled token and log-prob is equal (bitwise) between the two.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import torch

from cod_envs import registry
from cod_megatron.engines.embedded import EmbeddedEngine
from cod_megatron.engines.interface import EngineRequest, Generation
from cod_megatron.infra.cli import resolve_recipe
from cod_megatron.loop import run_parts as parts
from cod_megatron.models.source import model_source
from cod_megatron.rollout.pack_source import PackSource
from cod_megatron.rollout.renderers import run_renderer

RECIPE = "smollm2_135m_cod_cpu"


class Recorder:
    """An engine wrapper that keeps every round it serves."""

    def __init__(self, engine: EmbeddedEngine):
        self.engine, self.rounds = engine, []

    def generate_batch(self, requests: list[EngineRequest]) -> list[Generation]:  # noqa: D102
        self.rounds.append(list(requests))
        return self.engine.generate_batch(requests)

    def health(self) -> dict[str, object]:  # noqa: D102
        return self.engine.health()

    def restart(self) -> None:  # noqa: D102
        self.engine.restart()


def engine_module(rev: str) -> ModuleType:
    """``cod_megatron/engines/embedded.py`` as it is at git revision ``rev``, imported under its own name."""
    root = Path(__file__).resolve().parents[1]
    text = subprocess.run(
        ["git", "show", f"{rev}:cod_megatron/engines/embedded.py"], cwd=root, check=True, capture_output=True, text=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "embedded_baseline.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("embedded_baseline", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def loaded(engine_cls: type, kwargs: dict, weights: dict[str, torch.Tensor]) -> EmbeddedEngine:
    """An engine of ``engine_cls`` serving the prepared weights as version 0."""
    engine = engine_cls(**kwargs)
    names = {n for n, _ in engine.model.named_parameters()}
    engine.update_weights([(n, t) for n, t in weights.items() if n in names], version=0, last=True)
    return engine


def replay(engine: EmbeddedEngine, rounds: list[list[EngineRequest]]) -> tuple[float, list[list[Generation]]]:
    """Seconds to serve every round, and the generations."""
    t0 = time.perf_counter()
    out = [engine.generate_batch(r) for r in rounds]
    return time.perf_counter() - t0, out


def main(argv: list[str] | None = None) -> int:
    """Record, replay interleaved, print the ratio; exit 1 when the two engines' samples differ."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", default="HEAD", help="git revision of the engine to compare against")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: as in the recipe's Ray actor)")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg, _ = resolve_recipe(RECIPE, ["rollout.backend=inprocess", *args.overrides])
    from safetensors.torch import load_file

    weights = load_file(str(Path(model_source(cfg.model.hf_path).weights_dir()) / "model.safetensors"))
    renderer = run_renderer(cfg)
    kwargs = parts.engine_kwargs(cfg, renderer)
    domain = registry.load(cfg.env.train_domains[0])
    new = loaded(EmbeddedEngine, kwargs, weights)
    old = loaded(engine_module(args.baseline).EmbeddedEngine, kwargs, weights)
    recorder = Recorder(new)
    t0 = time.perf_counter()
    parts.build_manager(cfg, domain, [recorder], renderer).run(
        PackSource(domain, cfg).train_packs(1), cfg.rollout.group_size, step=1
    )
    rounds = recorder.rounds
    n_req = sum(len(r) for r in rounds)
    prompt = sum(len(q.prompt_ids) for r in rounds for q in r)
    print(f"recorded {len(rounds)} rounds, {n_req} requests, {prompt} prompt tokens ({time.perf_counter() - t0:.1f} s)")
    times: dict[str, list[float]] = {"baseline": [], "this": []}
    outs: dict[str, list] = {}
    for _ in range(args.repeats):
        for name, engine in (("baseline", old), ("this", new)):
            s, outs[name] = replay(engine, rounds)
            times[name].append(s)
            print(f"{name:9s} {s:7.2f} s", flush=True)
    same = outs["baseline"] == outs["this"]
    ratio = sum(times["baseline"]) / sum(times["this"])
    print(f"speed-up (baseline / this, {args.repeats} interleaved repeats): {ratio:.2f}x; same samples: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
