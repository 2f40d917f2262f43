"""Scalars from TensorBoard event files, read incrementally without TensorFlow, tensorboard or protobuf.

An event file is a TFRecord stream: ``uint64 length, uint32 masked_crc32c(length), data[length],
uint32 masked_crc32c(data)``; each ``data`` is an ``Event`` protobuf (tensorflow/core/util/event.proto):
``wall_time = 1 (double)``, ``step = 2 (int64)``, ``summary = 5 (Summary)``; ``Summary.value = 1 (Value)``;
``Value.tag = 1``, ``simple_value = 2 (float)``, ``tensor = 8 (TensorProto)``. torch's SummaryWriter (musubi via
accelerate's tracker, diffusion-pipe's train.py) writes ``simple_value`` by default and a one-element float tensor with
``new_style=True``; both are read here. The trainer appends while we read, so a record that is not complete yet is left
for the next call.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

_HEADER = 12  # uint64 length + uint32 crc of the length
_FOOTER = 4  # uint32 crc of the data
# A record longer than this is not a scalar event we want (graphs, images); it is skipped, not parsed.
_MAX_PARSED_RECORD = 1 << 20


@dataclass(frozen=True)
class Scalar:
    tag: str
    step: int
    value: float
    wall_time: float


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class EventFileError(ValueError):
    """The bytes are not a TFRecord stream (a corrupt header, or not an event file at all)."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise EventFileError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise EventFileError("varint too long")


def _fields(buf: bytes):
    """Yield (field number, wire type, value) of one protobuf message; value is int, bytes or raw fixed bytes."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise EventFileError(f"unsupported protobuf wire type {wire}")
        if pos > end:
            raise EventFileError("truncated protobuf field")
        yield number, wire, value


_DT_FLOAT, _DT_DOUBLE, _DT_INT32, _DT_INT64 = 1, 2, 3, 9


def _tensor_value(buf: bytes) -> float | None:
    """The first element of a scalar TensorProto (float, double or integer)."""
    dtype = 0
    content = b""
    for number, wire, value in _fields(buf):
        if number == 1 and wire == 0:
            dtype = value
        elif number == 4 and wire == 2:
            content = value
        elif number == 5:  # float_val: packed (wire 2) or one element (wire 5)
            return struct.unpack_from("<f", value)[0] if len(value) >= 4 else None
        elif number == 6:  # double_val
            return struct.unpack_from("<d", value)[0] if len(value) >= 8 else None
        elif number in (7, 10):  # int_val / int64_val
            return float(_varint(value, 0)[0] if wire == 2 else value)
    if content:
        formats = {_DT_FLOAT: "<f", _DT_DOUBLE: "<d", _DT_INT32: "<i", _DT_INT64: "<q"}
        fmt = formats.get(dtype)
        if fmt and len(content) >= struct.calcsize(fmt):
            return float(struct.unpack_from(fmt, content)[0])
    return None


def parse_event(data: bytes) -> list[Scalar]:
    """Scalars in one serialized Event (an event without a summary, e.g. the file_version header, gives [])."""
    wall_time, step, summary = 0.0, 0, b""
    for number, wire, value in _fields(data):
        if number == 1 and wire == 1:
            wall_time = struct.unpack("<d", value)[0]
        elif number == 2 and wire == 0:
            step = value - (1 << 64) if value >= 1 << 63 else value
        elif number == 5 and wire == 2:
            summary = value
    scalars = []
    for number, wire, value in _fields(summary):
        if number != 1 or wire != 2:
            continue
        tag, scalar = "", None
        for v_number, v_wire, v_value in _fields(value):
            if v_number == 1 and v_wire == 2:
                tag = v_value.decode("utf-8", "replace")
            elif v_number == 2 and v_wire == 5:
                scalar = struct.unpack("<f", v_value)[0]
            elif v_number == 8 and v_wire == 2:
                scalar = _tensor_value(v_value)
        if tag and scalar is not None:
            scalars.append(Scalar(tag, step, float(scalar), wall_time))
    return scalars


class EventFileReader:
    """Reads one event file from ``offset`` on; call ``read_new()`` again to get what was appended since."""

    def __init__(self, path: str | os.PathLike[str], offset: int = 0) -> None:
        self.path = Path(path)
        self.offset = offset

    def read_new(self) -> list[Scalar]:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []
        if size < self.offset:  # replaced by a new, shorter file: start again
            self.offset = 0
        scalars: list[Scalar] = []
        if size == self.offset:
            return scalars
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            while True:
                header = handle.read(_HEADER)
                if len(header) < _HEADER:
                    break
                (length,) = struct.unpack_from("<Q", header)
                (length_crc,) = struct.unpack_from("<I", header, 8)
                if masked_crc32c(header[:8]) != length_crc:
                    raise EventFileError(f"{self.path}: bad record header at byte {self.offset}")
                record_end = self.offset + _HEADER + length + _FOOTER
                if record_end > size:
                    break  # incomplete: the writer is still appending it
                if length <= _MAX_PARSED_RECORD:
                    scalars.extend(parse_event(handle.read(length)))
                    handle.seek(_FOOTER, os.SEEK_CUR)
                else:  # a graph or an image: not a scalar, skipped unread
                    handle.seek(record_end)
                self.offset = record_end
        return scalars


def find_event_files(folders: list[str], *, newer_than: float = 0.0) -> list[Path]:
    """Event files under ``folders`` (recursively) modified at or after ``newer_than``, oldest first."""
    found: list[Path] = []
    for folder in folders:
        root = Path(folder)
        if root.is_file() and root.name.startswith("events.out.tfevents."):
            candidates = [root]
        elif root.is_dir():
            candidates = list(root.rglob("events.out.tfevents.*"))
        else:
            continue
        for path in candidates:
            try:
                if path.stat().st_mtime >= newer_than:
                    found.append(path)
            except FileNotFoundError:
                continue
    return sorted(set(found), key=lambda p: (p.stat().st_mtime, str(p)))
