"""Real weights files for tests, made in the test: safetensors per the format spec, torch-style zip checkpoints.

numpy has no bf16/fp8 dtypes, so besides the reference writer (``safetensors.numpy``, used where it can express the
dtype) we write the format ourselves: 8-byte little-endian header length, JSON header, then the data. Large shapes
(a real 5120-wide Wan layer) are written as sparse files, so a "14B-shaped" header costs no disk.
"""

from __future__ import annotations

import json
import math
import struct
import zipfile
from pathlib import Path

ITEMSIZE = {"BF16": 2, "F16": 2, "F32": 4, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "U8": 1}


def write_safetensors(path: Path, tensors: dict[str, tuple[str, tuple[int, ...]]], *,
                      metadata: dict[str, str] | None = None, truncate_by: int = 0) -> Path:
    """Write a valid safetensors file whose data is zeros (sparse). ``truncate_by`` cuts the file short."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    for name, (dtype, shape) in tensors.items():
        size = math.prod(shape) * ITEMSIZE[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)  # the reference writer pads the header to 8 bytes
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(raw)) + raw)
        handle.truncate(8 + len(raw) + offset - truncate_by)
    return path


def wan_dit_tensors(*, dim: int = 1536, in_channels: int = 16, dtype: str = "BF16", image_attention: bool = False,
                    prefix: str = "", scaled: bool = False) -> dict[str, tuple[str, tuple[int, ...]]]:
    """The keys and real shapes musubi and diffusion-pipe read to identify a Wan transformer."""
    tensors = {
        f"{prefix}patch_embedding.weight": (dtype, (dim, in_channels, 1, 2, 2)),
        f"{prefix}blocks.0.self_attn.q.weight": (dtype, (dim, dim)),
        f"{prefix}blocks.0.cross_attn.k.weight": (dtype, (dim, dim)),
    }
    if image_attention:
        tensors[f"{prefix}blocks.0.cross_attn.k_img.weight"] = (dtype, (dim, dim))
    if scaled:
        tensors[f"{prefix}blocks.0.cross_attn.k.scale_weight"] = ("F32", (1,))
    return tensors


def _torch_pickle(storages: list[str]) -> bytes:
    """A protocol-2 pickle that references ``torch.<storage>`` with GLOBAL opcodes, like torch.save's data.pkl."""
    stream = b"\x80\x02"
    for name in storages:
        stream += b"ctorch\n" + name.encode() + b"\n0"  # GLOBAL torch <name>, then POP
    return stream + b"}."  # EMPTY_DICT, STOP


def write_torch_zip(path: Path, storages: list[str], *, extra_pickle: bytes = b"") -> Path:
    """A torch.save-style zip (``archive/data.pkl`` + ``archive/data/0``) naming ``storages``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", extra_pickle or _torch_pickle(storages))
        archive.writestr("archive/data/0", b"\0" * 64)
        archive.writestr("archive/version", "3\n")
    return path
