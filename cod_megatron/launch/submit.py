"""Launch a recipe through NeMo-Run: ``python -m cod_megatron.launch --recipe NAME [--executor local|slurm]
[--dry-run] [overrides]``.

The launched command is always ``python -m cod_megatron.train --recipe NAME overrides...``.

* ``local``: a NeMo-Run ``LocalExecutor`` on this machine (the driver starts its own Ray instance).
* ``slurm``: a NeMo-Run ``SlurmExecutor`` whose task is marked for Ray on Slurm, so NeMo-Run renders
  ``slurm/ray_cod.sub.j2`` (Ray head + workers, then the driver as a Ray job), with ``--mode pyxis`` in job-scoped
  Pyxis containers or with ``--mode bare`` from a virtualenv and checkout on shared storage (no container).
  The template builds every srun flag itself from exported variables (``cod_megatron/launch/slurm_job.py``).
  NeMo-Run 0.11.1's own ``SlurmRayCluster``/``SlurmRayJob`` hard-code its ``ray.sub.j2`` (container names shared
  between jobs, a NeMo-RL path patch, 8 GPUs per node) and query ``squeue`` even in a dry run, so this goes through
  the Experiment path, which takes the template from ``SlurmExecutor.ray_template``.

The recipe's ``run.env_vars`` plus ``NCCL_SOCKET_IFNAME``/``GLOO_SOCKET_IFNAME`` become the executor's
``env_vars`` (exported at the top of the sbatch script) and their names go into ``COD_RAY_ENV_KEYS``, from which
the driver builds the Ray job's ``runtime_env``. ``--dry-run`` renders through NeMo-Run with a ``LocalTunnel``
and a fixed experiment id (no cluster, no clock in the output) and prints the sbatch script to stdout.
"""

from __future__ import annotations

import cod_megatron.infra.quiet  # noqa: F401  # isort: skip  (first: filters megatron's known import noise)
import argparse
import os
import shlex
import sys
import tempfile
from pathlib import Path

from cod_megatron.config import ConfigError, ParallelLayout, RunConfig, check_loop_can_run
from cod_megatron.config.memory import check_fits
from cod_megatron.infra.cli import report
from cod_megatron.infra.cli import resolve_recipe as resolve
from cod_megatron.launch.slurm_job import MODES, SlurmSettings, gpus_per_node, job_env, ray_runtime_env, split_mounts

__all__ = ["SlurmSettings", "job_env", "main", "ray_runtime_env", "render_sbatch"]

TEMPLATE = Path(__file__).resolve().parents[2] / "slurm" / "ray_cod.sub.j2"
USE_WITH_RAY_CLUSTER = "use_with_ray_cluster"  # nemo_run.config.USE_WITH_RAY_CLUSTER_KEY


def train_args(recipe: str, overrides: list[str]) -> list[str]:
    """Arguments of ``python -m cod_megatron.train`` for this recipe and overrides."""
    return ["--recipe", recipe, *overrides]


def slurm_train_args(recipe: str, overrides: list[str]) -> list[str]:
    """The driver's arguments on Slurm: ``checkpoint.load=auto`` unless given, so that a requeued (or chained) job
    resumes from the newest checkpoint of its run instead of starting over."""
    explicit = any(o.startswith("checkpoint.load=") for o in overrides)
    return train_args(recipe, overrides if explicit else [*overrides, "checkpoint.load=auto"])


def tunnel_job_dir(settings: SlurmSettings) -> str:
    """The tunnel's ``job_dir``: ``<job_dir>/experiments``. NeMo-Run writes the sbatch script into the experiment's
    directory, ``<base_dir>/experiments/<title>/<id>``, and sbatch reads it from the tunnel's,
    ``<tunnel job_dir>/<title>/<id>``: with ``base_dir=<job_dir>`` (a LocalTunnel submit) the two are one directory,
    and an SSHTunnel rsyncs the experiment directory to the same place on the login node."""
    return os.path.join(settings.job_dir, "experiments")


def slurm_executor(cfg: RunConfig, layout: ParallelLayout, settings: SlurmSettings):
    """A NeMo-Run ``SlurmExecutor`` sized from the layout: one task per node, its GPUs (none on CPU), the cod
    template. Container image and mounts travel as exported variables: the template builds every srun flag."""
    import nemo_run as run

    env = job_env(cfg, settings, layout)
    if settings.ssh_host:
        user, _, host = settings.ssh_host.rpartition("@")
        tunnel = run.SSHTunnel(host=host, user=user or os.environ.get("USER", ""), job_dir=tunnel_job_dir(settings))
    else:
        tunnel = run.LocalTunnel(job_dir=tunnel_job_dir(settings))
    return run.SlurmExecutor(
        account=settings.account,
        partition=settings.partition,
        job_name_prefix="cod-",
        time=settings.time,
        signal=f"B:TERM@{settings.signal_lead_s}",  # to the batch script, which forwards it to the driver
        additional_parameters={"requeue": True} if settings.requeue else None,
        nodes=layout.nodes,
        ntasks_per_node=1,
        gpus_per_node=gpus_per_node(cfg, layout) or None,
        exclusive=True,
        mem="0",
        # NeMo-Run writes `export KEY=value` unquoted; quote here so any value survives bash.
        env_vars={k: shlex.quote(v) for k, v in env.items()},
        tunnel=tunnel,
        # pyxis: a `git archive` snapshot of HEAD in the job dir; bare: the steps run settings.code_dir itself
        packager=run.GitArchivePackager() if settings.mode == "pyxis" else run.Packager(),
        ray_template=str(TEMPLATE),  # absolute: NeMo-Run joins it onto its template dir, so this file is used
        poll_estimated_start_time=False,
    )


def log_in_task_dir(executor) -> None:
    """Put the job's logs in its task directory, ``<tunnel job dir>/<task>``. sbatch opens ``--output`` before the
    script runs, so its folder must exist at submission: NeMo-Run's default for Ray (``<task>/ray/logs``) is created by
    nothing on the Experiment path, while the task directory always is (its ``configs/`` and ``code/``)."""
    executor.job_details.folder = os.path.join(executor.tunnel.job_dir, Path(executor.job_dir).name)


def slurm_task(recipe: str, overrides: list[str]):
    """The driver as a NeMo-Run ``Script`` flagged for Ray on Slurm (args shell-quoted: they land in bash)."""
    import nemo_run as run

    return run.Script(
        path="cod_megatron.train",
        m=True,
        entrypoint="python",
        args=[shlex.quote(a) for a in slurm_train_args(recipe, overrides)],
        metadata={USE_WITH_RAY_CLUSTER: True},
    )


def render_sbatch(recipe: str, overrides: list[str], settings: SlurmSettings) -> str:
    """The sbatch script NeMo-Run would submit, rendered with a LocalTunnel and a fixed experiment id."""
    import nemo_run as run

    cfg, layout = resolve(recipe, overrides)
    executor = slurm_executor(cfg, layout, settings)
    executor.tunnel = run.LocalTunnel(job_dir=tunnel_job_dir(settings))
    executor.packager = run.Packager()  # nothing to package for a render
    # NeMo-Run's packaging step shells out through invoke, which forwards our stdin; a render reads none.
    with tempfile.TemporaryDirectory(prefix="cod-dryrun-") as tmp, open(os.devnull) as devnull:
        stdin, sys.stdin = sys.stdin, devnull
        title = cfg.run.name
        with run.Experiment(
            title, executor=executor, id=f"{title}_dryrun", base_dir=tmp, log_level="ERROR", clean_mode=True
        ) as exp:
            exp.add(slurm_task(recipe, overrides), name=title)
            log_in_task_dir(exp.jobs[0].executor)
            try:
                exp.dryrun(log=False, delete_exp_dir=False)
            finally:
                sys.stdin = stdin
        scripts = sorted(Path(tmp).rglob("*_sbatch.sh"))
        if len(scripts) != 1:
            raise RuntimeError(f"expected one rendered sbatch script under {tmp}, found {scripts}")
        text = scripts[0].read_text()
    return text if text.endswith("\n") else text + "\n"


def submit_slurm(recipe: str, overrides: list[str], settings: SlurmSettings) -> str:
    """Package the committed code (git archive; pyxis mode), render and ``sbatch`` it; the Slurm job id, once
    submitted."""
    import nemo_run as run

    cfg, layout = resolve(recipe, overrides)
    executor = slurm_executor(cfg, layout, settings)
    base_dir = None if settings.ssh_host else settings.job_dir  # see tunnel_job_dir
    with run.Experiment(cfg.run.name, executor=executor, base_dir=base_dir, log_level="INFO") as exp:
        exp.add(slurm_task(recipe, overrides), name=cfg.run.name)
        log_in_task_dir(exp.jobs[0].executor)
        exp.run(detach=True)
        handle = exp.jobs[0].handle  # torchx's `slurm_tunnel://nemo_run/<job id>`
    return handle.rstrip("/").rpartition("/")[2]


def run_local(recipe: str, overrides: list[str], dry_run: bool) -> None:
    """One machine: NeMo-Run's LocalExecutor runs the driver with the recipe's environment."""
    cfg, _ = resolve(recipe, overrides)
    if dry_run:
        print(shlex.join(["python", "-m", "cod_megatron.train", *train_args(recipe, overrides)]))
        return
    import nemo_run as run

    task = run.Script(
        path="cod_megatron.train",
        m=True,
        entrypoint="python",
        args=train_args(recipe, overrides),
        env=dict(cfg.run.env_vars),
    )
    run.run(task, executor=run.LocalExecutor(env_vars=dict(cfg.run.env_vars)), name=cfg.run.name)


def parser() -> argparse.ArgumentParser:
    """Command line of the launcher."""
    p = argparse.ArgumentParser(prog="python -m cod_megatron.launch", description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", required=True, help="recipe name (python -m cod_megatron.train --list-recipes)")
    p.add_argument("--executor", choices=["local", "slurm"], default="local")
    p.add_argument("--dry-run", action="store_true", help="render without a cluster and print the sbatch script")
    p.add_argument("--skip-memory-check", action="store_true", help="submit even if the memory planner says no")
    d = SlurmSettings()
    p.add_argument("--account", default=d.account)
    p.add_argument("--partition", default=d.partition)
    p.add_argument("--time", default=d.time)
    p.add_argument("--mode", choices=MODES, default=d.mode,
                   help="pyxis: steps in Pyxis/enroot containers; bare: no container, --venv and --code-dir "
                   "on shared storage")  # fmt: skip
    p.add_argument("--image", default=d.container_image, help="pyxis: enroot image built from slurm/Dockerfile")
    p.add_argument("--mounts", default=",".join(d.container_mounts), help="pyxis: comma-separated src:dst mounts")
    p.add_argument("--venv", default=d.venv, help="bare: the virtualenv the nodes run (default: this one)")
    p.add_argument("--code-dir", default=d.code_dir, help="bare: the checkout the nodes run (default: this one)")
    p.add_argument("--mpi", default=d.mpi, help="srun --mpi=TYPE for the node steps (default: none)")
    p.add_argument("--job-dir", default=d.job_dir, help="shared directory for code snapshots, scripts and logs")
    p.add_argument("--socket-ifname", default=d.socket_ifname, help="NCCL_SOCKET_IFNAME and GLOO_SOCKET_IFNAME")
    p.add_argument("--ssh-host", default=d.ssh_host, help="user@login-node; default: submit from this machine")
    p.add_argument("--signal-lead-s", type=int, default=d.signal_lead_s, help="SIGTERM this long before the limit")
    p.add_argument("--no-requeue", dest="requeue", action="store_false", default=d.requeue,
                   help="after a SIGTERM stop exit 0 (for afterok chains) instead of requeueing")  # fmt: skip
    p.add_argument("overrides", nargs="*", help="section.field=value overrides for the recipe")
    return p


def settings_from(args: argparse.Namespace) -> SlurmSettings:
    """The Slurm settings of a parsed command line."""
    return SlurmSettings(
        account=args.account,
        partition=args.partition,
        time=args.time,
        mode=args.mode,
        container_image=args.image,
        container_mounts=split_mounts(args.mounts),
        venv=args.venv,
        code_dir=args.code_dir,
        mpi=args.mpi,
        job_dir=args.job_dir,
        socket_ifname=args.socket_ifname,
        ssh_host=args.ssh_host,
        signal_lead_s=args.signal_lead_s,
        requeue=args.requeue,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point; exit code 2 on a config or memory-budget error."""
    args = parser().parse_args(argv)
    try:
        cfg, layout = resolve(args.recipe, args.overrides)
    except (ConfigError, KeyError) as e:
        return report(e)
    if cfg.run.device == "cuda":
        try:
            check_fits(cfg, layout)
        except ConfigError as e:  # a dry run still renders, so the script can be inspected
            print(f"memory: {e.field}: {e.reason}", file=sys.stderr)
            if not (args.dry_run or args.skip_memory_check):
                return 2
    from cod_megatron.rollout.renderers import run_vocabulary  # here: the launcher's import stays light

    try:
        check_loop_can_run(cfg, layout)
        run_vocabulary(cfg)  # domains whose word vocabularies cannot be merged
    except ConfigError as e:  # a dry run still renders, and says what the loop would refuse
        if not args.dry_run:
            return report(e)
        print(f"loop: {e.field}: {e.reason}", file=sys.stderr)
    if args.executor == "local":
        run_local(args.recipe, args.overrides, args.dry_run)
        return 0
    settings = settings_from(args)
    try:
        settings.check()
    except ConfigError as e:
        return report(e)
    if args.dry_run:
        sys.stdout.write(render_sbatch(args.recipe, args.overrides, settings))
        return 0
    print(f"submitted Slurm job {submit_slurm(args.recipe, args.overrides, settings)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
