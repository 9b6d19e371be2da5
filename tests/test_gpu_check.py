"""scripts/gpu_check.sh: the model parts round trip, the wheel unpacking, and every stage end to end on CPU.

The GPU numbers themselves need the lent GPU machine; here ``--cpu`` runs each stage at tiny size (Triton
interpreter, the debug model) so the script, its stage runner and its summary are tested wherever the suite runs.
"""

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
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
    assert status == dict.fromkeys(STAGES, "PASS"), summary
    assert all((out / f"{stage}.log").is_file() for stage in STAGES)
    header = (out / "kernels.csv").read_text().splitlines()[0]
    assert header.startswith("date,kernel,provider") and "torch_gemm" in (out / "kernels.csv").read_text()
    assert (out / "train_step.csv").read_text().splitlines()[0].startswith("path,device,dtype")
    assert "steps=2" in summary and "not the real model" in summary


def test_the_gpu_mode_leaves_the_caching_allocator_without_expandable_segments():
    """CUDA IPC of expandable segments needs pidfd_getfd, which containers refuse; the IPC tests run in this script."""
    script = (ROOT / "scripts" / "gpu_check.sh").read_text()
    assert "PYTORCH_CUDA_ALLOC_CONF" not in script
