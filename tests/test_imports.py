"""Import hygiene: every project module imports with the GPU-only libraries absent or broken."""

import importlib
import importlib.abc
import pkgutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
import torch

from cod_megatron.infra import capabilities

ROOT = Path(__file__).resolve().parents[1]
GPU_ONLY = ["transformer_engine", "sglang", "sglang_router", "flash_attn", "apex", "megatron.bridge"]


def test_every_module_imports_with_gpu_libraries_hidden():
    code = textwrap.dedent(f"""
        import importlib, importlib.abc, pkgutil, sys
        BLOCK = {GPU_ONLY!r}
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if any(name == b or name.startswith(b + ".") for b in BLOCK):
                    raise ModuleNotFoundError(f"{{name}} hidden by the test", name=name)
        sys.meta_path.insert(0, Block())
        names = []
        for pkg in ("cod_megatron", "cod_recipes", "cod_kernels", "cod_envs"):
            mod = importlib.import_module(pkg)
            names.append(pkg)
            for info in pkgutil.walk_packages(mod.__path__, pkg + "."):
                if info.name.endswith("__main__"):
                    continue
                importlib.import_module(info.name)
                names.append(info.name)
        from cod_megatron.infra import capabilities
        assert not capabilities.has("te") and not capabilities.has("sglang")
        print(len(names))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    assert int(r.stdout.strip().splitlines()[-1]) >= 15


def test_capability_check_survives_a_half_installed_library(monkeypatch):
    class Broken(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "transformer_engine":
                raise RuntimeError("Found empty transformer-engine meta package installed")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(sys, "meta_path", [Broken(), *sys.meta_path])
    capabilities.has.cache_clear()
    try:
        assert capabilities.has("cuda") is True
        assert capabilities.has("te") is False
        with pytest.raises(capabilities.MissingCapability, match="GPU extra"):
            capabilities.require("te")
    finally:
        capabilities.has.cache_clear()


def test_pyproject_lists_every_package_folder():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed, dirs = set(cfg["packages"]), cfg["package-dir"]
    found = set()
    for name, folder in dirs.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([name, *rel.parts]))
    assert found == listed


def test_pure_parts_do_not_import_megatron_or_ray():
    code = textwrap.dedent("""
        import sys
        import cod_megatron.config, cod_megatron.data, cod_recipes
        bad = [m for m in sys.modules if m.split(".")[0] in ("megatron", "ray")]
        assert not bad, bad
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]


def test_walk_finds_the_policy_modules():
    import cod_megatron

    names = {i.name for i in pkgutil.walk_packages(cod_megatron.__path__, "cod_megatron.")}
    assert {"cod_megatron.policy.model", "cod_megatron.policy.cpu_compat", "cod_megatron.config.layout"} <= names
