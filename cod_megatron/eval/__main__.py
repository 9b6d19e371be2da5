"""``python -m cod_megatron.eval --env NAME --policy oracle|hint-blind|random --packs N --pack-size 8 ...``

Runs evaluation packs with the lifecycle runner and prints one JSON object as the last stdout line
(``env, setting, policy, packing, packs, pack_size, seed, reward_by_position, ci95_by_position``); with ``--out``
it also writes that JSON, the per-pack rewards behind it (``<env>_<setting>_<packing>_packs.jsonl``: policy, pack,
pack seed, test rows, rewards by position) and a PNG of reward versus position. ``openai:<base url>`` evaluates a
served model through any OpenAI-compatible endpoint; a checkpoint directory written by ``cod_megatron.train``
(``.../checkpoints/step_N``) is served by the embedded engine; ``--hint-blind`` evaluates it with every hint hidden.
"""

from __future__ import annotations

import cod_megatron.infra.quiet  # noqa: F401  # isort: skip  (first: filters megatron's known import noise)
import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from cod_envs import registry
from cod_envs.base import TextPolicy
from cod_megatron.cod.episode import Task
from cod_megatron.cod.pack_forming import FormedPack, form_packs
from cod_megatron.eval.plot import plot_positions
from cod_megatron.eval.stats import gap_stats, lifecycle_gaps, no_width_reason, position_stats
from cod_megatron.rollout.text_play import run_text_lifecycle

PolicyFactory = Callable[[int], TextPolicy]
"""``seed -> text policy``: one fresh policy per evaluation pack."""


def evaluate(
    env: str,
    policy: str,
    *,
    packs: int,
    pack_size: int,
    setting: str = "easy",
    packing: str = "cod",
    seed: int = 0,
    model: str = "default",
    temperature: float = 1.0,
    hint_visible: bool = True,
    max_new_tokens: int | None = None,
) -> dict:
    """Per-position rewards of ``packs`` evaluation packs (one rollout each) as the CLI's JSON object.

    ``max_new_tokens``: a checkpoint's response cap per model call; None keeps its run's.
    """
    domain = registry.load(env)
    checkpoint = Path(policy).is_dir()
    make_policy = None if checkpoint else policy_factory(env, domain, policy, model=model, temperature=temperature)
    n_rows = packs if packing == "ralph_full" else packs * pack_size
    rows = domain.make_rows(n_rows, seed, "test", setting)
    tasks = [Task(taskset_id=env, row=i, data=r) for i, r in enumerate(rows)]
    formed = form_packs(tasks, pack_size=pack_size, strategy=packing, batch_id=f"eval/{env}/{seed}")[:packs]
    if checkpoint:
        from cod_megatron.eval.checkpoint_policy import checkpoint_rollouts

        by_pack = checkpoint_rollouts(
            policy,
            domain,
            formed,
            seed=seed,
            temperature=temperature,
            hint_visible=hint_visible,
            max_new_tokens=max_new_tokens,
        )
    else:
        by_pack = text_rollouts(domain, formed, make_policy, seed=seed, hint_visible=hint_visible)
    name = policy if hint_visible else f"{policy} (hints hidden)"
    head = {"env": env, "setting": setting, "policy": name, "packing": packing}
    return head | position_result(formed, by_pack, name, pack_size=pack_size, seed=seed)


def policy_factory(env: str, domain: registry.Domain, policy: str, *, model: str, temperature: float) -> PolicyFactory:
    """The factory of a scripted policy of the domain, or of one served ``openai:<url>`` model.

    Raises KeyError naming the scripted policies when ``policy`` is neither."""
    if policy.startswith("openai:"):
        from cod_megatron.engines.openai_policy import OpenAIChatPolicy

        url = policy.removeprefix("openai:")
        return lambda s: OpenAIChatPolicy(url, model=model, temperature=temperature, seed=s)
    if policy not in domain.policies:
        raise KeyError(
            f"policy {policy!r} is not available for {env}; scripted policies: "
            f"{', '.join(sorted(domain.policies))} (served models and checkpoints come with the engines)"
        )
    return domain.policies[policy]


def text_rollouts(
    domain: registry.Domain, formed: list[FormedPack], make_policy: PolicyFactory, *, seed: int, hint_visible: bool
) -> list[list[float] | None]:
    """One text-level lifecycle per formed pack; a pack's entry is None when the judge's verdict was unusable (the
    lifecycle is dropped, 3.4), else its solve rewards by position."""
    by_pack: list[list[float] | None] = []
    for k, fp in enumerate(formed):
        lc = run_text_lifecycle(
            domain.env,
            [t.data for t in fp.pack.tasks],
            pack_seed=fp.pack.seed,
            policy=make_policy(seed * 100_003 + k),
            env_task_idx=list(fp.env_task_idx),
            hint_visible=hint_visible,
        )
        by_pack.append(None if lc.has_judge_error else lc.solve_rewards)
    return by_pack


def position_result(
    formed: list[FormedPack], by_pack: list[list[float] | None], name: str, *, pack_size: int, seed: int
) -> dict:
    """The result's statistics over the packs that were not dropped, and the per-pack rows behind them."""
    rewards = [r for r in by_pack if r is not None]
    stats = position_stats(rewards)
    gap, gap_ci = gap_stats(rewards)
    per_pack = [
        {"policy": name, "pack": k, "pack_seed": fp.pack.seed, "rows": [t.row for t in fp.pack.tasks], "rewards": r}
        for k, (fp, r) in enumerate(zip(formed, by_pack, strict=True))
        if r is not None
    ]
    return {
        "packs": len(rewards),
        "pack_size": pack_size,
        "seed": seed,
        "reward_by_position": stats.mean,
        "ci95_by_position": [list(ci) for ci in stats.ci95],
        "ci95_notes": stats.notes,
        "dropped": len(by_pack) - len(rewards),
        "gap": gap,
        "gap_ci95": list(gap_ci),
        "gap_ci95_note": no_width_reason(lifecycle_gaps(rewards)),
        "per_pack": per_pack,
    }


def main(argv: list[str] | None = None) -> int:
    """CLI entry; returns the exit code."""
    p = argparse.ArgumentParser(prog="cod_megatron.eval", description=__doc__.splitlines()[0])
    p.add_argument("--env", choices=sorted(registry.DOMAINS), help="the domain (required unless --suite)")
    p.add_argument("--setting", default="easy", choices=["easy", "hard"])
    p.add_argument(
        "--policy",
        action="append",
        required=True,
        help="oracle | hint-blind | random | openai:<url> | <checkpoint dir> (repeatable: one curve each)",
    )
    p.add_argument("--hint-blind", action="store_true", help="also evaluate each policy with every hint hidden")
    p.add_argument("--packs", type=int, default=100)
    p.add_argument("--pack-size", type=int, default=8)
    p.add_argument("--packing", default="cod", choices=["cod", "ralph_sample", "ralph_full"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="directory for the JSON and the PNG")
    p.add_argument("--model", default="default", help="model name sent to an openai:<url> endpoint")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (served models, checkpoints)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="a checkpoint's response cap (default: its run's)")
    p.add_argument(
        "--suite",
        action="append",
        help="an eval.suites entry (repeatable): a checkpoint evaluated by the training loop's own evaluator",
    )
    args = p.parse_args(argv)
    if args.suite:
        return _suites(args)
    if args.env is None:
        p.error("--env is required (or --suite with a checkpoint)")
    results = []
    for policy in args.policy:
        for visible in (True, False) if args.hint_blind else (True,):
            try:
                results.append(
                    evaluate(
                        args.env,
                        policy,
                        packs=args.packs,
                        pack_size=args.pack_size,
                        setting=args.setting,
                        packing=args.packing,
                        seed=args.seed,
                        model=args.model,
                        temperature=args.temperature,
                        hint_visible=visible,
                        max_new_tokens=args.max_new_tokens,
                    )
                )
            except (KeyError, FileNotFoundError) as e:
                print(f"error: {e.args[0] if isinstance(e, KeyError) else e}", file=sys.stderr)
                return 2
    per_pack = [row for r in results for row in r.pop("per_pack")]
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        stem = f"{args.env}_{args.setting}_{args.packing}"
        (out / f"{stem}.json").write_text(json.dumps(results, indent=2))
        (out / f"{stem}_packs.jsonl").write_text("".join(json.dumps(row) + "\n" for row in per_pack))
        curves = {r["policy"]: position_stats_from(r) for r in results}
        plot_positions(curves, out / f"{stem}.png", f"{args.env} ({args.setting}, {args.packing})")
    for r in results:  # one JSON object per line; the last line is a complete result object
        print(json.dumps(r))
    return 0


def _suites(args: argparse.Namespace) -> int:
    """``--policy CHECKPOINT --suite SPEC ...``: the in-loop evaluator on the checkpoint; prints its metrics."""
    from cod_megatron.config import ConfigError
    from cod_megatron.eval.checkpoint_policy import evaluate_checkpoint_suites

    if len(args.policy) != 1 or not Path(args.policy[0]).is_dir():
        print("error: --suite evaluates one checkpoint directory (--policy DIR)", file=sys.stderr)
        return 2
    try:
        metrics = evaluate_checkpoint_suites(args.policy[0], args.suite, args.out or "eval_suites")
    except (ConfigError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(metrics))
    return 0


def position_stats_from(result: dict):
    """Rebuild the plotted statistics from a result object."""
    from cod_megatron.eval.stats import PositionStats

    return PositionStats(
        mean=result["reward_by_position"], ci95=[tuple(c) for c in result["ci95_by_position"]], n=result["packs"]
    )


if __name__ == "__main__":
    sys.exit(main())
