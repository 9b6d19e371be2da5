"""scripts/gpu_check.sh: the model parts round trip, the wheel unpacking, and every stage end to end on CPU.

The GPU numbers themselves need the lent GPU machine; here ``--cpu`` runs each stage at tiny size (Triton
interpreter, the debug model) so the script, its stage runner and its summary are tested wherever the suite runs.
"""

import importlib.util
import json
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"
STAGES = ("versions", "gpu_tests", "train_step", "kernels", "real_model")


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"gpu_check_{name}", ROOT / "scripts" / "gpu_check" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_model_parts_join_back_to_the_same_bytes(tmp_path):
    parts = _script("model_parts")
    source = tmp_path / "model.gguf"
    source.write_bytes(b"GGUF" + bytes(range(256)) * 41)  # odd size: the last part is shorter
    manifest = parts.split(source, tmp_path / "parts", parts=3)
    assert len(manifest["parts"]) == 3 and sum(p["size"] for p in manifest["parts"]) == source.stat().st_size
    joined = parts.join(tmp_path / "parts", tmp_path / "out")
    assert joined.name == "model.gguf" and joined.read_bytes() == source.read_bytes()


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_a_damaged_part_is_named_and_nothing_is_joined(tmp_path, damage):
    parts = _script("model_parts")
    source = tmp_path / "model.gguf"
    source.write_bytes(b"GGUF" + bytes(1000))
    parts.split(source, tmp_path / "parts")
    second = tmp_path / "parts" / "model.gguf.part1"
    if damage == "missing":
        second.unlink()
    else:
        second.write_bytes(second.read_bytes()[:-1])
    with pytest.raises(ValueError, match="model.gguf.part1"):
        parts.join(tmp_path / "parts", tmp_path / "out")
    assert not (tmp_path / "out" / "model.gguf").exists()


def test_wheels_are_unpacked_only_for_missing_modules(tmp_path):
    wheels = _script("wheels")
    (tmp_path / "w").mkdir()
    for dist, module in (("cod_gpucheck_absent", "cod_gpucheck_absent"), ("torch_copy", "torch")):
        with zipfile.ZipFile(tmp_path / "w" / f"{dist}-1.0-py3-none-any.whl", "w") as z:
            z.writestr(f"{module}/__init__.py", "VALUE = 1\n")
            z.writestr(f"{dist}-1.0.dist-info/METADATA", "Name: x\n")
    lines = wheels.unpack(tmp_path / "w", tmp_path / "site")
    assert (tmp_path / "site" / "cod_gpucheck_absent" / "__init__.py").is_file()
    assert not (tmp_path / "site" / "torch").exists()  # the installed torch is never shadowed
    assert any("torch already importable" in line for line in lines)


@pytest.mark.slow
def test_the_cpu_mode_runs_every_stage_and_writes_the_summary(tmp_path):
    out = tmp_path / "out"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PY": sys.executable, "OUT": str(out)}
    env |= {"WORK": str(tmp_path / "work"), "WHEELS": str(tmp_path / "no_wheels")}
    r = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--cpu"], env=env, capture_output=True, text=True, timeout=400
    )
    summary = (out / "summary.txt").read_text()
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    status = {line.split()[0]: line.split()[1] for line in summary.splitlines() if not line.startswith("total")}
    assert status == dict.fromkeys(("setup", *STAGES), "PASS"), summary
    assert all((out / f"{stage}.log").is_file() for stage in ("setup", *STAGES))
    header = (out / "kernels.csv").read_text().splitlines()[0]
    assert header.startswith("date,kernel,provider") and "torch_gemm" in (out / "kernels.csv").read_text()
    assert (out / "train_step.csv").read_text().splitlines()[0].startswith("path,device,dtype")
    assert "steps=2" in summary and "not the real model" in summary


def test_the_gpu_mode_leaves_the_caching_allocator_without_expandable_segments():
    """CUDA IPC of expandable segments needs pidfd_getfd, which containers refuse; the IPC tests run in this script."""
    script = (ROOT / "scripts" / "gpu_check.sh").read_text()
    assert "PYTORCH_CUDA_ALLOC_CONF" not in script


# ---- the clock (issue 31 item 1) -----------------------------------------------------------------------------------
def _plan(mode: str) -> tuple[int, dict[str, int]]:
    """(the default BUDGET, {step: cap seconds}) as written in the script: every ``stage NAME CAP ...`` call that runs
    in ``mode`` (outside the ``if [[ $MODE == cpu ]] ... else ... fi`` branches, or in the mode's own branch)."""
    text = SCRIPT.read_text()
    budget = int(re.search(r"^BUDGET=\$\{BUDGET:-(\d+)\}$", text, re.M).group(1))
    caps, branch = {}, None
    for line in text.splitlines():
        if line.startswith("if [[ $MODE == cpu ]]"):
            branch = "cpu"
        elif line == "else" and branch == "cpu":
            branch = "gpu"
        elif line == "fi":
            branch = None
        elif (m := re.match(r"\s*stage (\w+) (\d+) ", line)) and branch in (None, mode):
            caps[m[1]] = int(m[2])
    return budget, caps


def _script_int(name: str) -> int:
    return int(re.search(rf"^{name}=(\d+)\b", SCRIPT.read_text(), re.M).group(1))


@pytest.mark.parametrize("mode", ["gpu", "cpu"], ids=["gpu_mode", "cpu_mode"])  # id "gpu": the gpu mark's skip
def test_every_step_s_cap_fits_the_default_budget(mode):
    """Every step of a mode ran to its cap still ends inside BUDGET; on the GPU the model is prepared on its own
    clock (the ``model`` step), not on ``real_model``'s."""
    budget, caps = _plan(mode)
    assert sum(caps.values()) <= budget, caps
    assert set(STAGES) <= set(caps) and list(caps)[-1] == "real_model", caps
    if mode == "gpu":
        assert "model" in caps and list(caps).index("model") < list(caps).index("real_model"), caps
    assert sum(caps.values()) + _script_int("RESERVE_S") <= budget, caps


def test_the_real_model_stage_stops_and_reports_inside_its_cap():
    """real_model.py's deadline leaves the child its SIGTERM grace and itself the summary before gpu_check.sh's
    SIGTERM; at the GPU cap the run still gets time to train."""
    real_model = _script("real_model")
    assert real_model.MARGIN_S > real_model.GRACE_S
    assert real_model.MARGIN_S >= real_model.GRACE_S + real_model.SUMMARY_S
    _, caps = _plan("gpu")
    assert caps["real_model"] - _script_int("KILL_S") - real_model.MARGIN_S >= 30


STUB_PY = """#!/usr/bin/env bash
# python's stand-in for scripts/gpu_check.sh: the wheels step answers at once; the model step runs the real
# model_parts.py (STUB_MODEL=real) or passes after half its time (late) or at once (now); a stage passes at once
# (STUB_STAGES=pass) or ignores SIGTERM and sleeps until it is killed at its cap (sleep); STUB_VERSIONS=old: the
# versions stage finds the machine below the code's minimums (exit 3).
[[ $* == *versions.py* && $STUB_VERSIONS == old ]] && { echo "RESULT too old: transformers 4.57.1"; exit 3; }
case "$*" in
  *wheels.py*) echo "RESULT stub wheels"; exit 0 ;;
  *model_parts.py*)
    [[ $STUB_MODEL == real ]] && exec "$REAL_PY" "$@"
    [[ $STUB_MODEL == now ]] || sleep "$(awk -v t="${STAGE_TIMEOUT:-0}" 'BEGIN { print t / 2 }')"
    echo "$PARTS/model.gguf"
    echo "RESULT stub model ready"
    exit 0 ;;
esac
[[ $STUB_STAGES == pass ]] && { echo "RESULT stub stage"; exit 0; }
trap '' TERM
exec sleep 600
"""


def _run_with_stubs(tmp_path, mode: str, **env) -> tuple[subprocess.CompletedProcess, dict[str, str], float]:
    tmp_path.mkdir(exist_ok=True)
    stub = tmp_path / "stub_python"
    stub.write_text(STUB_PY)
    stub.chmod(0o755)
    out = tmp_path / "out"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PY": str(stub), "REAL_PY": sys.executable} | env
    env |= {"OUT": str(out), "WORK": str(tmp_path / "work"), "WHEELS": str(tmp_path / "no_wheels")}
    args = ["bash", str(SCRIPT)] + (["--cpu"] if mode == "cpu" else [])
    start = time.monotonic()
    r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    wall = time.monotonic() - start
    lines = (out / "summary.txt").read_text().splitlines()
    status = {line.split()[0]: line.split()[1] for line in lines if not line.startswith("total")}
    assert lines[-1].startswith("total"), lines
    return r, status, wall


@pytest.mark.parametrize("mode", ["gpu", "cpu"], ids=["gpu_mode", "cpu_mode"])  # id "gpu": the gpu mark's skip
def test_stages_that_run_to_their_caps_all_write_their_line_inside_the_budget(tmp_path, mode):
    """Stub stages that ignore SIGTERM and are killed at their caps (every cap and BUDGET scaled by 0.03): every step
    still writes its summary line (none SKIPped for want of budget) and the run ends inside BUDGET. The shell's own
    time does not scale (process starts: seconds on a loaded 2-core machine), so it is measured here, by the same run
    with stages that pass at once, and allowed on top of the scaled budget."""
    scale = 0.03
    parts = tmp_path / "parts"
    parts.mkdir()
    (parts / "MANIFEST.json").write_text("{}")
    stub_env = {"TIME_SCALE": str(scale), "PARTS": str(parts)}
    _, _, overhead = _run_with_stubs(tmp_path / "pass", mode, STUB_STAGES="pass", STUB_MODEL="now", **stub_env)
    r, status, wall = _run_with_stubs(tmp_path / "sleep", mode, STUB_STAGES="sleep", STUB_MODEL="late", **stub_env)
    expected = {"setup": "PASS"} | ({"model": "PASS"} if mode == "gpu" else {}) | dict.fromkeys(STAGES, "TIMEOUT")
    assert status == expected, r.stdout[-3000:]
    assert r.returncode == 1
    budget, _ = _plan(mode)
    assert wall <= budget * scale + overhead + 1.0, (wall, overhead, r.stdout[-3000:])


def test_the_first_of_two_transfers_records_the_model_pending_not_failed(tmp_path):
    """README: part 0 and the manifest travel with the first command, part 1 with the next. Until part 1 is there
    the model is PENDING, real_model is SKIPped, and nothing failed."""
    parts = _script("model_parts")
    source = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    source.write_bytes(b"GGUF" + bytes(range(256)) * 8)
    parts.split(source, tmp_path / "parts")
    (tmp_path / "parts" / f"{source.name}.part1").unlink()
    parts_dir = str(tmp_path / "parts")
    r, status, _ = _run_with_stubs(tmp_path, "gpu", STUB_STAGES="pass", STUB_MODEL="real", PARTS=parts_dir)
    assert status == {"setup": "PASS", "model": "PENDING"} | dict.fromkeys(STAGES[:-1], "PASS") | {"real_model": "SKIP"}
    summary = (tmp_path / "out" / "summary.txt").read_text()
    assert f"{source.name}.part1" in summary, summary
    assert r.returncode == 0, r.stdout[-3000:]


def test_a_damaged_part_fails_the_model_step_even_while_another_is_pending(tmp_path):
    parts = _script("model_parts")
    source = tmp_path / "model.gguf"
    source.write_bytes(b"GGUF" + bytes(3000))
    manifest = parts.split(source, tmp_path / "parts", parts=3)
    (tmp_path / "parts" / manifest["parts"][2]["name"]).unlink()
    with pytest.raises(parts.PartsMissing, match="model.gguf.part2"):
        parts.join(tmp_path / "parts", tmp_path / "out")
    (tmp_path / "parts" / manifest["parts"][0]["name"]).write_bytes(b"damaged")
    with pytest.raises(ValueError, match="model.gguf.part0 does not match") as e:
        parts.join(tmp_path / "parts", tmp_path / "out")
    assert not isinstance(e.value, parts.PartsMissing)
    assert json.loads((tmp_path / "parts" / "MANIFEST.json").read_text())["file"] == "model.gguf"


# ---- the machine's versions (issue 31 item 3) ---------------------------------------------------------------------
def _pins() -> dict[str, str]:
    lock = (ROOT / "requirements" / "cpu.lock").read_text()
    return {m[1]: m[2] for m in re.finditer(r"^([a-z0-9_.-]+)==(\S+)", lock, re.M)}


def test_the_pins_and_the_packaging_meet_the_one_list_of_minimums():
    """cod_megatron/infra/min_versions.py is the one list: the locked pins meet it, pyproject's requires-python
    starts at its Python, and it (like versions.py) parses on an older Python, which it must report, not crash on."""
    from cod_megatron.infra.min_versions import MINIMUM, below_minimum

    pins = _pins()
    assert below_minimum({"python": "3.12.0"} | {k: pins[k] for k in MINIMUM if k != "python"}) == []
    requires = re.search(r'^requires-python = ">=([0-9.]+)', (ROOT / "pyproject.toml").read_text(), re.M)[1]
    assert tuple(int(x) for x in requires.split(".")) == MINIMUM["python"][0]
    import ast

    for path in (ROOT / "cod_megatron" / "infra" / "min_versions.py", ROOT / "scripts" / "gpu_check" / "versions.py"):
        ast.parse(path.read_text(), feature_version=(3, 8))


@pytest.mark.parametrize(
    "package,old",
    [("python", "3.11.7"), ("torch", "2.5.1"), ("transformers", "4.57.1"), ("megatron-core", "0.17.1")],
)
def test_versions_names_a_package_below_its_minimum_and_why(package, old):
    """transformers 4 would ignore ``rope_parameters`` (rope theta 10000 in the engine against the trainer's)."""
    versions = _script("versions")
    pins = {k: v for k, v in _pins().items() if k in ("torch", "transformers", "megatron-core")}
    assert versions.too_old("3.12.3", pins) == []
    python = old if package == "python" else "3.12.3"
    problems = versions.too_old(python, pins | ({} if package == "python" else {package: old}))
    assert len(problems) == 1 and problems[0].startswith(f"{package} {old} is below"), problems
    if package == "transformers":
        assert "rope_parameters" in problems[0]
    missing = versions.too_old("3.12.3", pins | {"megatron-core": "MISSING (ModuleNotFoundError: megatron)"})
    assert missing and missing[0].startswith("megatron-core is missing")


def test_the_versions_stage_says_what_is_too_old_and_exits_for_gpu_check_to_stop(monkeypatch, capsys):
    versions = _script("versions")
    fake = {"transformers": "4.57.1", "megatron-core": "0.19.2", "torch": "2.11.0"}
    monkeypatch.setattr(versions, "version_of", lambda dist, module: fake.get(dist, "1.0"))
    assert versions.main([]) == versions.TOO_OLD == 3
    out = capsys.readouterr().out
    assert "TOO OLD: transformers 4.57.1 is below 5.0" in out and "RESULT too old: transformers 4.57.1" in out


@pytest.mark.parametrize("mode", ["gpu", "cpu"], ids=["gpu_mode", "cpu_mode"])  # id "gpu": the gpu mark's skip
def test_a_machine_below_the_minimums_stops_the_run_with_every_step_line_written(tmp_path, mode):
    r, status, _ = _run_with_stubs(tmp_path, mode, STUB_STAGES="pass", STUB_MODEL="now", STUB_VERSIONS="old")
    later = [s for s in ("model", *STAGES) if s in status and s not in ("versions",)]
    assert status["setup"] == "PASS" and status["versions"] == "FAIL", status
    assert {s: status[s] for s in later} == dict.fromkeys(later, "SKIP") and "real_model" in later, status
    summary = (tmp_path / "out" / "summary.txt").read_text()
    assert "too old: transformers 4.57.1" in summary and "minimum versions" in summary, summary
    assert r.returncode == 1


def _wheel(directory: Path, dist: str, version: str, module: str) -> Path:
    path = directory / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{module}/__init__.py", f"__version__ = {version!r}\n")
        z.writestr(f"{dist}-{version}.dist-info/METADATA", f"Name: {dist}\nVersion: {version}\n")
    return path


def test_a_carried_wheel_replaces_another_version_of_its_installed_distribution(tmp_path, monkeypatch):
    """The machine's own megatron-core at another version than the pin is shadowed by the pinned wheel (einops
    stands in: installed here); the same version as installed is left alone, and a re-run finds its unpacked copy."""
    import importlib.metadata

    wheels = _script("wheels")
    installed = importlib.metadata.version("einops")
    (tmp_path / "other").mkdir()
    (tmp_path / "same").mkdir()
    _wheel(tmp_path / "other", "einops", "0.0.1", "einops")
    _wheel(tmp_path / "same", "einops", installed, "einops")
    assert "already importable" in wheels.unpack(tmp_path / "same", tmp_path / "site_same")[0]
    lines = wheels.unpack(tmp_path / "other", tmp_path / "site")
    assert f"einops {installed} installed, the pin is 0.0.1" in lines[0], lines
    assert (tmp_path / "site" / "einops" / "__init__.py").read_text() == "__version__ = '0.0.1'\n"
    monkeypatch.syspath_prepend(str(tmp_path / "site"))  # as main() does on a re-run
    importlib.invalidate_caches()
    assert "already importable" in wheels.unpack(tmp_path / "other", tmp_path / "site")[0]


# ---- the gpu_tests stage runs every gpu- and sglang-marked test (issue 31 item 4) ---------------------------------
def _collected(marker_expr: str, paths: list[str]) -> list[str]:
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-m", marker_expr, *paths],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    return sorted(line for line in r.stdout.splitlines() if "::" in line)


@pytest.mark.slow
def test_the_gpu_tests_stage_selects_every_gpu_and_sglang_marked_test():
    """The GPU mode's gpu_tests stage collects only the files its grep finds (other modules may import what the GPU
    machine lacks); with its marker expression they hold every test the whole suite selects by ``gpu or sglang``."""
    text = SCRIPT.read_text()
    pattern = re.search(r"mapfile -t gpu_test_files < <\(grep -rlE '([^']+)' tests --include='test_\*\.py'", text)[1]
    expr = re.search(r'stage gpu_tests \d+ "\$PY" -m pytest .* -m "([^"]+)" "\$\{gpu_test_files', text)
    assert expr and expr[1] == "gpu or sglang", "the stage must select both markers"
    grep = subprocess.run(["grep", "-rlE", pattern, "tests", "--include=test_*.py"], cwd=ROOT, capture_output=True)
    files = sorted(grep.stdout.decode().split())
    selected, everything = _collected(expr[1], files), _collected(expr[1], ["tests"])
    assert selected == everything
    for name in (
        "tests/policy/test_pg_head_gpu.py::test_pg_head_in_bf16_tracks_fp32_repeats_bitwise_and_never_syncs",
        "tests/engines/test_update_group.py::test_real_server_takes_a_weight_update_through_its_nccl_update_group",
        "tests/engines/test_sglang_engine.py::test_real_server",
    ):
        assert name in selected, name
