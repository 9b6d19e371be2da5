"""The renders the launch tests check: fixed site settings, so nothing from this machine's environment reaches them.

Regenerate the goldens with ``make goldens``
(``COD_UPDATE_GOLDEN=1 .venv/bin/python -m pytest -q tests/launch -m "not slow"``).
"""

import re
from pathlib import Path

from cod_megatron.launch.submit import SlurmSettings

REPO = Path(__file__).resolve().parents[2]
SETTINGS = SlurmSettings(
    account="cod-account",
    partition="batch",
    time="04:00:00",
    mode="pyxis",
    container_image="/shared/images/cod-megatron.sqsh",
    container_mounts=["/shared/data:/data"],
    venv="/shared/venvs/cod",
    code_dir="/shared/cod-megatron/src",
    mpi="",
    job_dir="/shared/cod-megatron/jobs",
    socket_ifname="ib0",
    ssh_host=None,
    signal_lead_s=300,
    requeue=True,
)
# Bare metal (no Pyxis): the virtualenv and checkout on shared storage; what the real-Slurm test submits.
BARE = SlurmSettings(**{**vars(SETTINGS), "mode": "bare", "partition": "debug"})
# name -> (recipe, overrides, nodes, settings)
CASES = {
    "qwen3_8b_cod_8gpu_h100": ("qwen3_8b_cod_8gpu_h100", [], 1, SETTINGS),
    "llama3_70b_cod_64gpu_h100": ("llama3_70b_cod_64gpu_h100", [], 8, SETTINGS),
    "llama3_70b_cod_64nodes": ("llama3_70b_cod_64gpu_h100", ["parallel.dp=8", "parallel.engines=32"], 64, SETTINGS),
    "debug_cpu_bare": ("debug_cpu", ["run.steps=2"], 1, BARE),
}
GPU_CASES = [name for name, case in CASES.items() if case[3].mode == "pyxis"]


def normalise(text: str) -> str:
    """Machine-specific strings would make goldens flaky; the render must not contain any (checked)."""
    for path, tag in ((str(REPO), "<repo>"), (str(Path.home()), "<home>")):
        if len(path) > 1:
            text = text.replace(path, tag)
    return re.sub(r"/cod-dryrun-[^/\s]+", "/<render-tmp>", text)
