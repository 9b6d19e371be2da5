"""What a Slurm job of the launcher is made of, apart from NeMo-Run: the site settings and the job's environment.

The sbatch template (``slurm/ray_cod.sub.j2``) owns every srun flag; it builds them from the variables exported here
(``COD_LAUNCH_MODE``, ``COD_CONTAINER_IMAGE``/``COD_CONTAINER_MOUNTS`` or ``COD_VENV``/``COD_CODE_DIR``,
``COD_GPUS_PER_NODE``, ``COD_SRUN_MPI``), so a rendered script can be read, edited and resubmitted without NeMo-Run,
and NeMo-Run 0.11.1's own step flags (``-A=<account> -p=<partition>``, which real Slurm rejects) are never used.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from cod_megatron.config import ConfigError, ParallelLayout, RunConfig

REPO = Path(__file__).resolve().parents[2]
MODES = ("pyxis", "bare")
"""``pyxis``: every node step in a job-scoped Pyxis/enroot container of ``container_image``; ``bare``: no container,
the steps run ``venv`` and ``code_dir`` from a filesystem every node mounts (clusters without Pyxis)."""


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def split_mounts(text: str) -> list[str]:
    """``a:b,c:d`` -> ``["a:b", "c:d"]`` (empty parts dropped)."""
    return [m for m in text.split(",") if m]


@dataclass(kw_only=True)
class SlurmSettings:
    """Site settings of the Slurm executor; each default can come from a ``COD_SLURM_*`` environment variable."""

    account: str = field(default_factory=lambda: _env("COD_SLURM_ACCOUNT", "ACCOUNT"))
    partition: str = field(default_factory=lambda: _env("COD_SLURM_PARTITION", "batch"))
    time: str = field(default_factory=lambda: _env("COD_SLURM_TIME", "04:00:00"))
    mode: str = field(default_factory=lambda: _env("COD_SLURM_MODE", "pyxis"))
    """One of :data:`MODES`."""
    container_image: str = field(default_factory=lambda: _env("COD_SLURM_IMAGE", "cod-megatron.sqsh"))
    """Enroot image (``.sqsh`` or ``docker://...``) built from ``slurm/Dockerfile`` (pyxis mode)."""
    container_mounts: list[str] = field(default_factory=lambda: split_mounts(_env("COD_SLURM_MOUNTS", "")))
    """``src:dst`` mounts besides the job directories the template mounts itself (pyxis mode)."""
    venv: str = field(default_factory=lambda: _env("COD_SLURM_VENV", sys.prefix))
    """The virtualenv every node runs (bare mode); on shared storage. Default: the launcher's own."""
    code_dir: str = field(default_factory=lambda: _env("COD_SLURM_CODE_DIR", str(REPO)))
    """The checkout the steps run from (bare mode), on shared storage. Default: the launcher's own."""
    mpi: str = field(default_factory=lambda: _env("COD_SLURM_MPI", ""))
    """``srun --mpi=`` for the node steps; empty: none (Ray needs no MPI; ``pmix`` only where Slurm has PMIx)."""
    job_dir: str = field(default_factory=lambda: _env("COD_SLURM_JOB_DIR", "/shared/cod-megatron/jobs"))
    """Directory on shared storage that holds each experiment's code snapshot, scripts and logs."""
    socket_ifname: str = field(default_factory=lambda: _env("COD_SOCKET_IFNAME", "eth0"))
    """Interface for NCCL bootstrap and Gloo (``ip -br addr`` on a compute node); the same name on every node."""
    ssh_host: str | None = field(default_factory=lambda: os.environ.get("COD_SLURM_SSH_HOST"))
    """``user@login-node`` to submit over SSH; None submits from this machine (a login node)."""
    signal_lead_s: int = field(default_factory=lambda: int(_env("COD_SLURM_SIGNAL_LEAD_S", "300")))
    """Slurm sends SIGTERM to the batch script this long before the time limit (``--signal=B:TERM@N``): the driver
    finishes its step and checkpoints; longer than a step plus a checkpoint save."""
    requeue: bool = field(default_factory=lambda: _env("COD_SLURM_REQUEUE", "1") == "1")
    """After a SIGTERM stop the job requeues itself and resumes from its newest checkpoint (``checkpoint.load=auto``);
    off (0): it exits 0, for an ``afterok`` chain of jobs that resume the same way."""

    def check(self) -> None:
        """Refuse settings the job could not run with, before anything is submitted (``launch.<name>`` fields)."""
        if self.mode not in MODES:
            raise ConfigError("launch.mode", f"{self.mode!r} is not one of {', '.join(MODES)}")
        if self.mode == "bare" and not self.ssh_host:  # over SSH the paths are the cluster's: not checkable here
            if not (Path(self.venv) / "bin" / "python").exists():
                raise ConfigError("launch.venv", f"{self.venv} has no bin/python")
            if not (Path(self.code_dir) / "cod_megatron").is_dir():
                raise ConfigError("launch.code_dir", f"{self.code_dir} holds no cod_megatron package")
        if self.mpi and not self.mpi.isidentifier():
            raise ConfigError("launch.mpi", f"{self.mpi!r} is not an srun --mpi plugin name")


def gpus_per_node(cfg: RunConfig, layout: ParallelLayout) -> int:
    """GPUs the job asks of each node: the layout's on CUDA, none for a CPU recipe."""
    return layout.gpus_per_node if cfg.run.device == "cuda" else 0


def job_env(cfg: RunConfig, settings: SlurmSettings, layout: ParallelLayout) -> dict[str, str]:
    """Environment of every process of the job; ``COD_RAY_ENV_KEYS`` lists what goes into the Ray runtime env."""
    env = dict(cfg.run.env_vars)
    env["NCCL_SOCKET_IFNAME"] = settings.socket_ifname  # NCCL bootstrap and socket transport
    env["GLOO_SOCKET_IFNAME"] = settings.socket_ifname  # Gloo carries the IPC-handle gathers of weight sync
    ray_keys = " ".join(env)
    env["COD_GPUS_PER_NODE"] = str(gpus_per_node(cfg, layout))
    env["COD_LAUNCH_MODE"] = settings.mode
    if settings.mode == "pyxis":
        env["COD_CONTAINER_IMAGE"] = settings.container_image
        env["COD_CONTAINER_MOUNTS"] = ",".join(settings.container_mounts)
    else:
        env["COD_VENV"] = settings.venv
        env["COD_CODE_DIR"] = settings.code_dir
    if settings.mpi:
        env["COD_SRUN_MPI"] = settings.mpi
    # `ray job stop` (how the script forwards Slurm's SIGTERM) SIGKILLs the driver after this wait: 3 s by default
    env["RAY_JOB_STOP_WAIT_TIME_S"] = str(max(30, settings.signal_lead_s - 30))
    env["COD_REQUEUE"] = "1" if settings.requeue else "0"
    env["COD_RAY_ENV_KEYS"] = ray_keys
    return env


def ray_runtime_env(env: dict[str, str]) -> dict[str, dict[str, str]]:
    """The Ray ``runtime_env`` the driver builds from the job environment (what ``driver.sh`` computes in bash)."""
    return {"env_vars": {k: env[k] for k in env["COD_RAY_ENV_KEYS"].split()}}
