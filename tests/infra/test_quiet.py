"""The entry points open without megatron's known start-up noise, which ``logging.level=DEBUG`` shows again; any
other warning still shows."""

import importlib.util
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

from cod_megatron.infra import quiet

ROOT = Path(__file__).resolve().parents[2]
KNOWN = [
    "Transformer Engine and Apex are not installed",
    "Apex is not installed. Falling back to Torch Norm",
    "MimoModelConfig is experimental",
    "invalid escape sequence '\\-'",
    "No CUDA runtime is found",
]


def _dry_run(*overrides: str, pycache: Path) -> str:
    """stderr of ``python -m cod_megatron.train --recipe debug_cpu --dry-run``; a fresh bytecode cache, so that
    megatron's SyntaxWarning (raised when its source is compiled) would show too."""
    env = {**os.environ, "PYTHONPYCACHEPREFIX": str(pycache)}
    cmd = [sys.executable, "-m", "cod_megatron.train", "--recipe", "debug_cpu", "--dry-run", *overrides]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stderr


def test_dry_run_hides_the_known_lines_and_debug_shows_them(tmp_path):
    quiet_err = _dry_run(pycache=tmp_path / "pycache")
    assert [k for k in KNOWN if k in quiet_err] == [], quiet_err
    debug_err = _dry_run("logging.level=DEBUG", pycache=tmp_path / "pycache")
    shown = [k for k in KNOWN if k in debug_err]
    if importlib.util.find_spec("transformer_engine") is None and importlib.util.find_spec("apex") is None:
        assert KNOWN[0] in shown, debug_err
    assert shown, debug_err


def test_only_known_messages_of_their_origin_are_hidden():
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        assert quiet.hide_known_noise([])
        known = "Transformer Engine and Apex are not installed. Falling back to Torch optimizers."
        warnings.warn_explicit(known, UserWarning, "x.py", 1, module="megatron.core.optimizer")
        warnings.warn_explicit(known, UserWarning, "x.py", 2, module="cod_megatron.policy.trainer")  # not megatron's
        warnings.warn_explicit(known + " And more.", UserWarning, "x.py", 3, module="megatron.core.optimizer")
        warnings.warn_explicit("something new", UserWarning, "x.py", 4, module="megatron.core.optimizer")
    assert [w.lineno for w in seen] == [2, 3, 4]
    cpp = logging.getLogger("torch.utils.cpp_extension")
    record = lambda msg: cpp.makeRecord(cpp.name, logging.WARNING, "f", 1, msg, (), None)  # noqa: E731
    assert not cpp.filter(record("No CUDA runtime is found, using CUDA_HOME='/usr/local'"))
    assert cpp.filter(record("No CUDA runtime is found, using CUDA_HOME='/usr/local' (and more)"))
    gpt = logging.getLogger("megatron.core.models.gpt.gpt_model")
    notice = (
        "GPTModel IS DEPRECATED. GPTModel is only accepting critical bug fixes, no new features. Please reference "
        "the migration guide `docs/user-guide/hybrid-model-migration.md` for details on how to use `HybridModel`"
    )
    assert not gpt.filter(gpt.makeRecord(gpt.name, logging.WARNING, "f", 1, notice, (), None))
    assert gpt.filter(gpt.makeRecord(gpt.name, logging.WARNING, "f", 1, "GPTModel: something else", (), None))


def test_debug_is_the_last_logging_level_override():
    assert quiet.debug_requested(["--dry-run", "logging.level=DEBUG"])
    assert not quiet.debug_requested(["logging.level=DEBUG", "logging.level=INFO"])
    assert not quiet.debug_requested(["--recipe", "debug_cpu", "logging.level=debug"])  # the config would refuse it
