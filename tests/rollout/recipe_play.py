"""A recipe's domain played at token level without a model: the domain's oracle behind the engine interface."""

from cod_envs import registry
from cod_megatron.cod.episode import Lifecycle, Pack, Task
from cod_megatron.config import RunConfig
from cod_megatron.engines.interface import SamplingParams, TextPolicyEngine
from cod_megatron.rollout.renderers import run_renderer
from cod_megatron.rollout.token_play import Renderer, run_token_lifecycle


def play_oracle_pack(
    cfg: RunConfig, domain_name: str, *, pack_seed: int, oracle_seed: int
) -> tuple[Lifecycle, Renderer]:
    """One pack of ``domain_name`` at the recipe's pack size, answered by the domain's oracle and recorded through
    the recipe's renderer with its response cap, as the loop records a model's answers; the lifecycle and renderer."""
    domain, renderer = registry.load(domain_name), run_renderer(cfg)
    rows = domain.make_rows(cfg.rollout.pack_size, 0, "train", cfg.env.setting)
    tasks = tuple(Task(taskset_id=domain_name, row=i, data=r) for i, r in enumerate(rows))
    engine = TextPolicyEngine(domain.policies["oracle"](oracle_seed), renderer.encode, renderer.end_of_turn_id)
    params = SamplingParams(max_new_tokens=cfg.rollout.max_response_tokens, seed=0)
    pack = Pack(pack_id=0, seed=pack_seed, tasks=tasks)
    lc, _ = run_token_lifecycle(domain.env, pack, 0, engine=engine, renderer=renderer, params=params)
    return lc, renderer
