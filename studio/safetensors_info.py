"""What a weights file holds, read without loading it: dtypes, parameter count, ComfyUI "fp8_scaled" markers.

A ``.safetensors`` file starts with an 8-byte little-endian header length and a JSON header that lists every
tensor's dtype, shape and byte range (https://github.com/huggingface/safetensors, "Format"). Reading that header
is enough to tell bf16 from fp16 from fp8, to count parameters and to notice a file cut short by an interrupted
download, all in milliseconds even for a 30 GB file.

Pickle checkpoints (``.pt``/``.pth``/``.bin``/``.ckpt``) are never unpickled: unpickling runs code. For torch's
zip format we only *parse* ``data.pkl`` with :mod:`pickletools` (it decodes opcodes, it executes nothing) to see
which storage classes it names, e.g. ``torch BFloat16Storage``: the same "pickle imports" the Hub's scanner shows.
"""

from __future__ import annotations

import json
import math
import pickletools
import struct
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

MAX_HEADER_BYTES = 100 * 1024 * 1024  # the format allows up to 100 MB; anything larger is not a safetensors file
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
MAX_PICKLE_SCAN_BYTES = 64 * 1024 * 1024

# safetensors dtype tag -> (our name, bytes per element; 0 = sub-byte, not size-checked)
DTYPES: dict[str, tuple[str, float]] = {
    "BOOL": ("bool", 1), "U8": ("uint8", 1), "I8": ("int8", 1), "I16": ("int16", 2), "U16": ("uint16", 2),
    "F16": ("fp16", 2), "BF16": ("bf16", 2), "I32": ("int32", 4), "U32": ("uint32", 4), "F32": ("fp32", 4),
    "F64": ("fp64", 8), "I64": ("int64", 8), "U64": ("uint64", 8), "C64": ("complex64", 8),
    "F8_E4M3": ("fp8_e4m3fn", 1), "F8_E5M2": ("fp8_e5m2", 1), "F8_E8M0": ("fp8_e8m0", 1),
    "F4": ("fp4", 0), "F6_E2M3": ("fp6_e2m3", 0), "F6_E3M2": ("fp6_e3m2", 0),
}
# torch storage class (pickle global) -> our dtype name
TORCH_STORAGES = {
    "BFloat16Storage": "bf16", "HalfStorage": "fp16", "FloatStorage": "fp32", "DoubleStorage": "fp64",
    "Float8_e4m3fnStorage": "fp8_e4m3fn", "Float8_e5m2Storage": "fp8_e5m2", "ByteStorage": "uint8",
    "CharStorage": "int8", "ShortStorage": "int16", "IntStorage": "int32", "LongStorage": "int64",
    "BoolStorage": "bool",
}
FP8_DTYPES = ("fp8_e4m3fn", "fp8_e5m2")
# ComfyUI's "fp8_scaled" files store per-layer scales next to fp8 weights. diffusion-pipe refuses any key ending so
# (utils/common.py load_state_dict / iterate_safetensors: "fp8_scaled weights are not supported").
SCALED_FP8_SUFFIXES = ("scale_weight", "scale_input")


class WeightsFileError(ValueError):
    """The file is not a readable weights file; the message says why and what to do."""


@dataclass(frozen=True)
class TensorInfo:
    dtype: str  # our name, e.g. "bf16"
    shape: tuple[int, ...]
    nbytes: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class WeightsInfo:
    path: str
    kind: str  # "safetensors" | "safetensors_dir" | "pickle" | "gguf" | "missing" | "unknown"
    size_bytes: int = 0
    tensors: dict[str, TensorInfo] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    pickle_dtypes: tuple[str, ...] = ()  # storage dtypes named in a torch zip's data.pkl
    problem: str = ""  # why the file cannot be used as is ("" = fine)

    @property
    def parameters(self) -> int:
        return sum(t.numel for t in self.tensors.values())

    @property
    def dtype_parameters(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for tensor in self.tensors.values():
            counts[tensor.dtype] = counts.get(tensor.dtype, 0) + tensor.numel
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))

    @property
    def main_dtype(self) -> str:
        """The dtype that holds most parameters ("" when unknown)."""
        counts = self.dtype_parameters
        if counts:
            return next(iter(counts))
        return self.pickle_dtypes[0] if len(self.pickle_dtypes) == 1 else ""

    @property
    def fp8_scaled(self) -> bool:
        return any(name.endswith(SCALED_FP8_SUFFIXES) for name in self.tensors)

    @property
    def precision(self) -> str:
        """One word for the UI: bf16, fp16, fp32, fp8_e4m3fn, fp8_scaled, ... or "" when unknown."""
        return "fp8_scaled" if self.fp8_scaled else self.main_dtype

    def dtype_of(self, *names: str) -> str:
        """The dtype of the first of ``names`` present (with or without ComfyUI's model.diffusion_model. prefix)."""
        for name in names:
            for candidate in (name, f"model.diffusion_model.{name}"):
                if candidate in self.tensors:
                    return self.tensors[candidate].dtype
        return ""

    def shape_of(self, name: str) -> tuple[int, ...]:
        for candidate in (name, f"model.diffusion_model.{name}"):
            if candidate in self.tensors:
                return self.tensors[candidate].shape
        return ()

    def has_key(self, name: str) -> bool:
        return name in self.tensors or f"model.diffusion_model.{name}" in self.tensors

    def summary(self) -> str:
        if self.kind == "missing":
            return "missing"
        if self.problem:
            return f"unusable: {self.problem}"
        if self.kind == "pickle":
            hint = "/".join(self.pickle_dtypes) or "dtype unknown"
            return f"pickle checkpoint ({hint}), {_gib(self.size_bytes)}"
        if self.kind in ("safetensors", "safetensors_dir"):
            params = self.parameters
            return f"{self.precision or '?'}, {params / 1e9:.2f} B parameters, {_gib(self.size_bytes)}"
        return f"{self.kind}, {_gib(self.size_bytes)}"


def _gib(size: int) -> str:
    return f"{size / 1024**3:.2f} GiB" if size >= 1024**3 else f"{size / 1024**2:.1f} MiB"


def read_safetensors_header(path: str | Path) -> tuple[dict[str, TensorInfo], dict[str, str], int]:
    """Parse the header of one .safetensors file: (tensors, metadata, expected file size).

    Raises WeightsFileError when the header is malformed or the file is shorter than the header says, which is
    what an interrupted download leaves behind.
    """
    target = Path(path)
    size = target.stat().st_size
    with open(target, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise WeightsFileError(f"{target.name}: {size} bytes, too short for a safetensors header")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > MAX_HEADER_BYTES or header_len + 8 > size:
            raise WeightsFileError(
                f"{target.name}: header length {header_len} does not fit a {size}-byte file; not a safetensors file "
                "or cut short"
            )
        raw = handle.read(header_len)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsFileError(f"{target.name}: header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise WeightsFileError(f"{target.name}: header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    tensors: dict[str, TensorInfo] = {}
    data_end = 0
    for name, entry in header.items():
        tensors[name] = _tensor_info(target.name, name, entry)
        data_end = max(data_end, int(entry["data_offsets"][1]))
    expected = 8 + header_len + data_end
    if size < expected:
        raise WeightsFileError(
            f"{target.name}: the file is {size:,} bytes but its header needs {expected:,}; it was cut short "
            "(interrupted download?). Download it again"
        )
    return tensors, {str(k): str(v) for k, v in metadata.items()}, expected


def _tensor_info(file_name: str, name: str, entry: object) -> TensorInfo:
    if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= set(entry):
        raise WeightsFileError(f"{file_name}: tensor {name!r} has no dtype/shape/data_offsets")
    tag = entry["dtype"]
    dtype, itemsize = DTYPES.get(tag, (str(tag).lower(), 0))
    shape = tuple(int(d) for d in entry["shape"])
    begin, end = (int(v) for v in entry["data_offsets"])
    if begin < 0 or end < begin:
        raise WeightsFileError(f"{file_name}: tensor {name!r} has invalid data_offsets {entry['data_offsets']}")
    nbytes = end - begin
    if itemsize and nbytes != math.prod(shape) * itemsize:
        raise WeightsFileError(f"{file_name}: tensor {name!r} {tag}{list(shape)} should take "
                               f"{math.prod(shape) * int(itemsize)} bytes, the header says {nbytes}")
    return TensorInfo(dtype, shape, nbytes)


def inspect_weights(path: str | Path) -> WeightsInfo:
    """Describe a weights file or a folder of safetensors shards. Never raises for a bad file: ``problem`` says."""
    target = Path(path)
    if not target.exists():
        return WeightsInfo(str(target), "missing")
    if target.is_dir():
        return _inspect_folder(target)
    size = target.stat().st_size
    suffix = target.suffix.lower()
    if suffix == ".safetensors":
        try:
            tensors, metadata, _ = read_safetensors_header(target)
        except (WeightsFileError, OSError, KeyError, ValueError, TypeError) as exc:
            return WeightsInfo(str(target), "safetensors", size, problem=str(exc))
        return WeightsInfo(str(target), "safetensors", size, tensors, metadata)
    if suffix in PICKLE_SUFFIXES:
        dtypes, problem = torch_zip_storage_dtypes(target)
        return WeightsInfo(str(target), "pickle", size, pickle_dtypes=dtypes, problem=problem)
    if suffix == ".gguf":
        return WeightsInfo(str(target), "gguf", size)
    return WeightsInfo(str(target), "unknown", size)


def _inspect_folder(folder: Path) -> WeightsInfo:
    shards = sorted(folder.glob("*.safetensors"))
    if not shards:
        return WeightsInfo(str(folder), "unknown", problem="folder has no .safetensors files")
    tensors: dict[str, TensorInfo] = {}
    size = 0
    for shard in shards:
        info = inspect_weights(shard)
        if info.problem:
            return WeightsInfo(str(folder), "safetensors_dir", size, problem=info.problem)
        tensors.update(info.tensors)
        size += info.size_bytes
    return WeightsInfo(str(folder), "safetensors_dir", size, tensors)


def torch_zip_storage_dtypes(path: str | Path) -> tuple[tuple[str, ...], str]:
    """Storage dtypes named in a torch zip checkpoint's data.pkl, found by parsing (not running) the pickle.

    Returns (dtypes, problem). Legacy (non-zip) torch files give no dtypes and no problem: they are still loadable.
    """
    try:
        if not zipfile.is_zipfile(path):
            with open(path, "rb") as handle:
                if handle.read(4) == b"PK\x03\x04":  # a zip without its central directory: the end is missing
                    return (), "the checkpoint archive is cut short (interrupted download?); download it again"
            return (), ""
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if not names:
                return (), "zip file without data.pkl: not a torch checkpoint"
            info = archive.getinfo(names[0])
            if info.file_size > MAX_PICKLE_SCAN_BYTES:
                return (), ""
            data = archive.read(names[0])
    except (OSError, zipfile.BadZipFile) as exc:
        return (), f"cannot read the checkpoint archive ({exc}); the file may be cut short"
    try:
        found = sorted({TORCH_STORAGES[g] for g in _pickle_globals(data) if g in TORCH_STORAGES})
    except (ValueError, EOFError) as exc:
        return (), f"data.pkl is damaged ({exc})"
    return tuple(found), ""


def _pickle_globals(data: bytes) -> Iterable[str]:
    """Class names of ``torch.*`` globals referenced by a pickle, from GLOBAL and STACK_GLOBAL opcodes."""
    recent_strings: list[str] = []
    for opcode, arg, _pos in pickletools.genops(data):
        if opcode.name == "GLOBAL" and isinstance(arg, str):
            module, _, name = arg.partition(" ")
            if module == "torch":
                yield name
        elif opcode.name == "STACK_GLOBAL" and len(recent_strings) >= 2:
            module, name = recent_strings[-2], recent_strings[-1]
            if module == "torch":
                yield name
        if isinstance(arg, str) and "UNICODE" in opcode.name:
            recent_strings = [*recent_strings[-1:], arg]
