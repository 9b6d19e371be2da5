"""gpu_check stage ``versions``: the machine and the stack, and whether the driver is new enough for torch's CUDA.

Prints one line per component (MISSING when it does not import). Python, torch, transformers and megatron-core are
checked against the code's minimums (``cod_megatron/infra/min_versions.py``): below one, or missing, the stage says
which and why, and exits with ``TOO_OLD`` (gpu_check.sh then skips every later stage). On a GPU the NVIDIA driver is
compared with the minimum of the CUDA toolkit torch was built with (the toolkit's release notes, table 3): an older
driver is reported, not failed (minor-version compatibility runs most code; PTX JIT and new APIs may not). Otherwise
the stage fails only when CUDA is visible but ``torch.cuda`` cannot initialise, or ``--expect-gpu`` is given and there
is no GPU. Runs on any Python 3 (no newer syntax, torch imported after the Python check) to report an old one.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import platform
import subprocess

from cod_megatron.infra.min_versions import below_minimum

TOO_OLD = 3
"""Exit status: the machine's Python or a package is below the code's minimum (gpu_check.sh stops on it)."""

# CUDA toolkit (major.minor) -> minimum Linux driver for the toolkit's full feature set.
MIN_DRIVER = {
    (12, 1): (530, 30),
    (12, 2): (535, 54),
    (12, 3): (545, 23),
    (12, 4): (550, 54),
    (12, 5): (555, 42),
    (12, 6): (560, 28),
    (12, 8): (570, 26),
    (12, 9): (575, 51),
    (13, 0): (580, 65),
    (13, 1): (590, 44),
}
PACKAGES = [
    ("torch", "torch"),
    ("triton", "triton"),
    ("transformers", "transformers"),
    ("megatron-core", "megatron.core"),
    ("gguf", "gguf"),
    ("numpy", "numpy"),
    ("pytest", "pytest"),
    ("transformer-engine", "transformer_engine"),
    ("flash-attn", "flash_attn"),
]


def version_of(dist: str, module: str) -> str:
    """The distribution's version if ``module`` imports, else MISSING with the reason."""
    try:
        mod = importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 - a broken GPU library raises anything; report it
        return f"MISSING ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})"
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return str(getattr(mod, "__version__", "unknown (unpacked wheel)"))


def parse_version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.strip().split(".") if x.isdigit())


def driver_check(driver: str, cuda: str | None) -> str:
    """'ok' / 'OLD' / 'unknown' for the driver against the toolkit torch was built with."""
    if not cuda:
        return "unknown (torch built without CUDA)"
    toolkit = parse_version(cuda)[:2]
    need = MIN_DRIVER.get(toolkit)
    if need is None:
        return f"unknown (no table entry for CUDA {cuda})"
    have = parse_version(driver)[:2]
    if not have:
        return f"unknown (driver version {driver!r} not readable)"
    verdict = "ok" if have >= need else "OLD: below the toolkit minimum, expect failures in new APIs / PTX JIT"
    return f"{verdict} (driver {driver}, CUDA {cuda} wants >= {need[0]}.{need[1]:02d})"


def nvidia_smi() -> str:
    try:
        query = "--query-gpu=name,driver_version,memory.total,clocks.max.sm"
        out = subprocess.run(["nvidia-smi", query, "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
        return out.stdout.strip() or out.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unavailable ({type(e).__name__})"


def too_old(python: str, versions: dict[str, str]) -> list[str]:
    """:func:`below_minimum` of this Python and the packages (MISSING counts as absent)."""
    installed: dict[str, str | None] = {"python": python}
    installed.update({k: None if v.startswith("MISSING") else v for k, v in versions.items()})
    return below_minimum(installed)


def report_too_old(problems: list[str]) -> int:
    for line in problems:
        print(f"TOO OLD: {line}")
    print(f"RESULT too old: {'; '.join(line.split(':')[0] for line in problems)} (see versions.log)")
    return TOO_OLD


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--expect-gpu", action="store_true", help="fail when no CUDA device is usable")
    args = p.parse_args(argv)
    print(f"python {platform.python_version()} on {platform.platform()}")
    python = platform.python_version()
    problems = [line for line in too_old(python, {}) if line.startswith("python")]
    if problems:  # before importing anything that may need a newer Python
        return report_too_old(problems)
    import torch

    versions = {name: version_of(name, module) for name, module in PACKAGES}
    for name, v in versions.items():
        print(f"{name:<20} {v}")
    print(f"torch built with CUDA {torch.version.cuda}")
    problems = too_old(python, versions)
    if problems:
        return report_too_old(problems)
    result = {k: versions[k].split(" ")[0] for k in ("torch", "triton", "transformers", "megatron-core", "gguf")}
    result |= {"te": versions["transformer-engine"].split(" ")[0], "flash_attn": versions["flash-attn"].split(" ")[0]}
    status = 0
    if torch.cuda.is_available():
        try:
            props = torch.cuda.get_device_properties(0)
            torch.ones(1, device="cuda").add_(1).item()  # a real kernel launch, not only the device query
        except Exception as e:  # noqa: BLE001 - CUDA visible but unusable: the one hard failure
            print(f"torch.cuda cannot initialise: {type(e).__name__}: {e}")
            return 1
        smi = nvidia_smi()
        print(f"nvidia-smi: {smi}")
        driver_text = smi.split(",")[1].strip() if smi.count(",") >= 3 else "unknown"
        print(f"gpu {props.name} sm{props.major}{props.minor} SMs {props.multi_processor_count} ", end="")
        print(f"{props.total_memory / 2**30:.0f} GiB")
        check = driver_check(driver_text, torch.version.cuda)
        print(f"driver check: {check}")
        result |= {"gpu": props.name.replace(" ", "_"), "sm": f"{props.major}{props.minor}", "driver": driver_text}
        result |= {"cuda": torch.version.cuda, "driver_ok": check.split(" ")[0]}
    else:
        print("no CUDA device visible")
        result["gpu"] = "none"
        status = 1 if args.expect_gpu else 0
    print("RESULT " + " ".join(f"{k}={v}" for k, v in result.items()))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
