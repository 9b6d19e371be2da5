"""Unpack carried wheels onto a site directory, without pip: those whose modules are missing or whose distribution
is installed at another version than the wheel's (the pin).

``python scripts/gpu_check/wheels.py WHEELS_DIR SITE_DIR``. A GPU machine without network has torch, triton and
transformers but not megatron-core or gguf; ``make gpu-check-wheels`` downloads those wheels here. A wheel is a zip
whose top-level entries are the importable names (plus ``*.dist-info``), so unzipping it onto ``PYTHONPATH`` (ahead
of site-packages) is an install without entry points, which is all these need. A machine's own copy of a carried
distribution at another version (an older megatron-core) is shadowed by the pinned one; a module the machine has
from another distribution (torch) is never shadowed.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
import sys
import zipfile
from pathlib import Path


def top_level_modules(wheel: zipfile.ZipFile) -> set[str]:
    """Importable top-level names in the wheel (packages and single-file modules; not .dist-info / .data)."""
    names = set()
    for entry in wheel.namelist():
        first = entry.split("/", 1)[0]
        if first.endswith((".dist-info", ".data")):
            continue
        names.add(first.removesuffix(".py") if "/" not in entry else first)
    return {n for n in names if n.isidentifier()}


def installed_version(dist: str) -> str | None:
    """The version of distribution ``dist`` first on ``sys.path`` (None when it is not installed)."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def clear_old_copy(site: Path, dist: str, modules: list[str]) -> None:
    """Remove an earlier unpacked version of ``dist`` from ``site`` (its modules and dist-info), before a new one."""
    for m in modules:
        for target in (site / m, site / f"{m}.py"):
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    for info in site.glob(f"{dist}-*.dist-info"):
        shutil.rmtree(info)


def unpack(wheels: Path, site: Path) -> list[str]:
    """Unzip every wheel of ``wheels`` that provides a missing module or another version of an installed
    distribution; returns what was done, one line each."""
    site.mkdir(parents=True, exist_ok=True)
    done = []
    for path in sorted(wheels.glob("*.whl")):
        dist, version = path.name.split("-")[:2]  # the wheel name's escaped distribution and its version
        with zipfile.ZipFile(path) as wheel:
            modules = sorted(top_level_modules(wheel))
            present = [m for m in modules if (site / m).exists() or importlib.util.find_spec(m) is not None]
            have = installed_version(dist)
            if present and len(present) == len(modules) and have in (None, version):
                done.append(f"{path.name}: {', '.join(modules)} already importable, not unpacked")
                continue
            why = f"{dist} {have} installed, the pin is {version}" if present and have else "missing"
            clear_old_copy(site, dist, modules)
            wheel.extractall(site)
            done.append(f"{path.name}: unpacked {', '.join(modules)} ({why})")
    return done


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__.splitlines()[2], file=sys.stderr)
        return 2
    wheels, site = Path(sys.argv[1]), Path(sys.argv[2])
    if not wheels.is_dir():
        print(f"RESULT no wheel directory {wheels}: using only what is installed")
        return 0
    sys.path.insert(0, str(site))  # an earlier run's unpacked copy counts as present
    lines = unpack(wheels, site)
    for line in lines:
        print(line)
    unpacked = sum(": unpacked " in line for line in lines)
    print(f"RESULT {len(lines)} wheels: {unpacked} unpacked, {len(lines) - unpacked} already importable")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
