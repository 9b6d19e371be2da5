"""Rendered sbatch scripts: golden diffs plus the invariants a regenerated golden must not hide.

Regenerate the goldens with ``make goldens``
(``COD_UPDATE_GOLDEN=1 .venv/bin/python -m pytest -q tests/launch -m "not slow"``).
"""

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

import cod_recipes
from cod_megatron.config import finalize
from cod_megatron.launch.submit import job_env, main, ray_runtime_env, render_sbatch
from tests.launch.cases import CASES, GPU_CASES, REPO, SETTINGS, normalise

GOLDEN_DIR = Path(__file__).parent / "golden"


@pytest.mark.parametrize("name", CASES)
def test_rendered_script_matches_golden(rendered, name):
    text = normalise(rendered[name])
    golden = GOLDEN_DIR / f"{name}.sub"
    if os.environ.get("COD_UPDATE_GOLDEN") == "1":
        golden.write_text(text)
    assert golden.exists(), f"missing {golden}; run with COD_UPDATE_GOLDEN=1"
    assert text == golden.read_text(), f"{name}: render differs from {golden} (COD_UPDATE_GOLDEN=1 regenerates)"


@pytest.mark.parametrize("name", CASES)
def test_render_is_deterministic_and_free_of_machine_paths(rendered, name):
    recipe, overrides, _, settings = CASES[name]
    text = rendered[name]
    assert render_sbatch(recipe, overrides, settings) == text
    for machine_specific in (str(REPO), str(Path.home()), "cod-dryrun-"):
        assert machine_specific not in text
    assert not re.search(r"\d{16,}", text), "a nanosecond timestamp (NeMo-Run's default experiment id) leaked"


@pytest.mark.parametrize("name", CASES)
def test_rendered_script_parses_with_bash_n(rendered, name, tmp_path):
    script = tmp_path / "job.sub"
    script.write_text(rendered[name])
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("name", CASES)
def test_every_srun_kills_its_step_on_a_bad_exit(rendered, name):
    code = [ln for ln in rendered[name].splitlines() if not ln.lstrip().startswith("#")]
    sruns = [ln for ln in code if re.search(r"\bsrun\b", ln)]
    assert sruns == ['step() { srun --kill-on-bad-exit=1 "$@"; }'], "every srun must go through step()"
    launches = [ln for ln in code if re.search(r"(^|[\s(])(step|node_step|head_step) ", ln)]
    assert len(launches) >= 6  # head, workers' loop, driver, the probes, ray job stop


@pytest.mark.parametrize("name", CASES)
def test_fails_fast_when_any_step_dies(rendered, name):
    text = rendered[name]
    assert "set -euo pipefail" in text
    assert text.count("check_steps") >= 3  # defined, used while waiting for Ray, used while the driver runs
    assert re.search(r"STEP_PIDS\+=\(\$!\)", text)
    assert 'exit "${rc}"' in text


@pytest.mark.parametrize("name", CASES)
def test_container_names_are_job_scoped(rendered, name):
    text = rendered[name]
    assert 'export JOB_TAG="cod-${SLURM_JOB_ID}"' in text
    names = re.findall(r"--container-name=(\S+)", text)
    assert names and all(n.startswith('"${JOB_TAG}-node') for n in names), names
    assert 'RAY_TMPDIR="/tmp/ray-${SLURM_JOB_ID}"' in text


@pytest.mark.parametrize("name", CASES)
def test_socket_interfaces_are_explicit(rendered, name):
    text = rendered[name]
    assert "export NCCL_SOCKET_IFNAME=ib0" in text
    assert "export GLOO_SOCKET_IFNAME=ib0" in text
    keys = shlex.split(re.search(r"^export COD_RAY_ENV_KEYS=(.*)$", text, re.M).group(1))[0].split()
    assert {"NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME"} <= set(keys)


@pytest.mark.parametrize("name", CASES)
def test_exactly_one_ray_head(rendered, name):
    text = rendered[name]
    assert len(re.findall(r"\bray start\b[^\n]*--head\b", text)) == 1
    assert text.count("COD_RAY_ROLE=head") == 1
    assert len(re.findall(r"\bray start --address=", text)) == 1  # workers, in the per-node loop


@pytest.mark.parametrize("name", GPU_CASES)
def test_header_is_sized_from_the_layout(rendered, name):
    _, _, nodes, _ = CASES[name]
    text = rendered[name]
    assert f"#SBATCH --nodes={nodes}\n" in text
    assert "#SBATCH --gpus-per-node=8\n" in text
    assert "#SBATCH --ntasks-per-node=1\n" in text
    assert "export COD_GPUS_PER_NODE=8\n" in text


@pytest.mark.parametrize("name", CASES)
def test_driver_is_the_train_module_with_the_overrides(rendered, name):
    recipe, overrides, _, _ = CASES[name]
    resume = ["checkpoint.load=auto"]  # a requeued job resumes from its newest checkpoint
    expected = shlex.join(["python", "-m", "cod_megatron.train", "--recipe", recipe, *overrides, *resume])
    assert f'"${{COD_DRIVER_PID_FILE}}" \\\n    {expected} 2>&1' in rendered[name]  # exec'd by the pid-recording shell


@pytest.mark.parametrize("name", CASES)
def test_preemption_signal_is_forwarded_to_the_driver_and_the_job_requeues(rendered, name):
    text = rendered[name]
    assert "#SBATCH --signal=B:TERM@300\n" in text and "#SBATCH --requeue\n" in text
    assert "export RAY_JOB_STOP_WAIT_TIME_S=270\n" in text  # Ray's default (3 s) would SIGKILL the driver
    assert "trap on_preempt TERM" in text
    assert 'head_step kill -TERM "$(cat "${COD_DRIVER_PID_FILE}")"' in text  # the driver alone, not its children
    assert """-- sh -c 'echo $$ >"$0" && exec "$@"' "${COD_DRIVER_PID_FILE}" """ in text
    assert re.search(r"ray job stop [^\n]*--no-wait \"\$\{JOB_TAG\}\"", text)  # before the driver has started
    assert 'scontrol requeue "${SLURM_JOB_ID}"' in text
    tail = text[text.index("if ((PREEMPTED)); then") :]
    assert tail.index("exit 0") < tail.index('exit "${rc}"')  # a preempted job exits 0 (afterok chains go on)


@pytest.mark.parametrize("name", GPU_CASES)
def test_recipe_env_reaches_the_sbatch_script_and_the_ray_runtime_env(rendered, name):
    recipe, overrides, _, _ = CASES[name]
    cfg = cod_recipes.get(recipe)
    layout = finalize(cfg)
    assert cfg.run.env_vars, "GPU recipes carry their NCCL/CUDA settings"
    text = rendered[name]
    for key, value in cfg.run.env_vars.items():
        assert f"export {key}={shlex.quote(value)}\n" in text
    runtime = ray_runtime_env(job_env(cfg, SETTINGS, layout))["env_vars"]
    assert runtime == {**cfg.run.env_vars, "NCCL_SOCKET_IFNAME": "ib0", "GLOO_SOCKET_IFNAME": "ib0"}


def test_values_that_need_quoting_survive_bash(tmp_path):
    cfg = cod_recipes.get("llama3_70b_cod_64gpu_h100")
    cfg.run.env_vars["COD_ODD"] = "a b;$(echo x)"
    env = job_env(cfg, SETTINGS, finalize(cfg))
    script = tmp_path / "env.sh"
    script.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()) + 'printf %s "$COD_ODD"')
    out = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=True).stdout
    assert out == "a b;$(echo x)"


def test_local_dry_run_prints_the_train_command(capsys):
    assert main(["--recipe", "debug_cpu", "--executor", "local", "--dry-run", "run.steps=2"]) == 0
    assert capsys.readouterr().out.strip() == "python -m cod_megatron.train --recipe debug_cpu run.steps=2"


def test_bad_override_is_a_config_error_before_any_render(capsys):
    assert main(["--recipe", "llama3_70b_cod_64gpu_h100", "--executor", "slurm", "--dry-run", "parallel.tp=3"]) == 2
    assert "parallel.tp" in capsys.readouterr().err
