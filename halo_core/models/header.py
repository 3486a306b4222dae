"""Reads a GGUF file's header: its version, tensor count and metadata key/values; and what
marks a synthetic model (`halo models synth`) and where those live.

Only the key/value section is parsed; tensor data is never read. Large arrays (the tokenizer's
vocabulary and merges) are skipped over and kept as `SkippedArray(item_type, count)`, so reading
the header of a 40 GB model costs a few milliseconds.
"""

from __future__ import annotations

import mmap
import re
import struct
from pathlib import Path
from typing import Any

import attrs

from ..errors import ModelError
from ..store import halo_home

MAGIC = b"GGUF"
MAX_ARRAY_ITEMS = 4096
"""Arrays longer than this are skipped (per-layer arrays are far shorter; vocabularies longer)."""
MAX_KEYS = 1 << 16  # real models carry a few dozen keys
MAX_KEY_BYTES = 1 << 16
MAX_DEPTH = 4  # arrays of arrays: GGUF writers nest one level, if at all
SYNTHETIC_KEY = "halo.synthetic"
"""True in a model `halo models synth` wrote: real shapes, random weights."""
SYNTH_FROM_KEY = "halo.synth.from"
"""What a synthetic model's shape was copied from."""
SYNTH_SEED_KEY = "halo.synth.seed"
"""The random seed of a synthetic model's weights."""

# GGUF value types -> struct format (None: string, array)
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


@attrs.frozen
class SkippedArray:
    """An array the reader stepped over: its GGUF item type and length."""

    item_type: int
    count: int


@attrs.frozen
class GgufHeader:
    """What a GGUF file says about itself before its tensors."""

    path: Path
    version: int
    tensor_count: int
    metadata: dict[str, Any]

    @property
    def arch(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    def arch_key(self, key: str, default: Any = None) -> Any:
        """The value of `{arch}.{key}`, e.g. arch_key("block_count")."""
        return self.metadata.get(f"{self.arch}.{key}", default)


_STRUCTS = {endian: {fmt: struct.Struct(endian + fmt) for fmt in (*_SCALARS.values(), "I", "Q")}
            for endian in "<>"}


class _Cursor:
    def __init__(self, buf, path: Path, endian: str):
        self.buf, self.pos, self.path, self.endian = buf, 0, path, endian
        self.structs = _STRUCTS[endian]

    def take(self, fmt: str):
        unpacker = self.structs[fmt]
        if self.pos + unpacker.size > len(self.buf):
            raise ModelError(f"{self.path}: GGUF header is truncated at byte {self.pos}")
        value = unpacker.unpack_from(self.buf, self.pos)[0]
        self.pos += unpacker.size
        return value

    def string(self, max_len: int | None = None, what: str = "a string") -> str:
        length = self.take("Q")
        if max_len is not None and length > max_len:
            raise ModelError(f"{self.path}: {what} claims {length} bytes (at most {max_len})")
        end = self.pos + length
        if end > len(self.buf):
            raise ModelError(f"{self.path}: GGUF header is truncated at byte {self.pos}")
        text = bytes(self.buf[self.pos:end]).decode("utf-8", errors="replace")
        self.pos = end
        return text

    def skip_strings(self, count: int) -> None:
        # (a vocabulary and its merges are ~400,000 strings in a Llama 3 model: one tight loop,
        # no method call per string, keeps reading the header a matter of milliseconds)
        unpack, buf, pos, end = self.structs["Q"].unpack_from, self.buf, self.pos, len(self.buf) - 8
        for _ in range(count):
            if pos > end:
                break
            pos += 8 + unpack(buf, pos)[0]
        else:
            if pos <= len(self.buf):
                self.pos = pos
                return
        raise ModelError(f"{self.path}: GGUF header is truncated at byte {min(pos, len(self.buf))}")

    def value(self, vtype: int, depth: int = 0):
        if vtype in _SCALARS:
            return self.take(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            if depth >= MAX_DEPTH:
                raise ModelError(f"arrays nested deeper than {MAX_DEPTH} levels at byte {self.pos}")
            item_type, count = self.take("I"), self.take("Q")
            if count > MAX_ARRAY_ITEMS:
                if item_type == _STRING:
                    self.skip_strings(count)
                elif item_type in _SCALARS:
                    self.pos += count * struct.calcsize(_SCALARS[item_type])
                else:
                    raise ModelError(f"nested GGUF arrays of {count} items are not supported")
                return SkippedArray(item_type, count)
            return [self.value(item_type, depth + 1) for _ in range(count)]
        raise ModelError(f"unknown GGUF value type {vtype} at byte {self.pos}")


def read_header(path: Path) -> GgufHeader:
    """Parse the header of the GGUF file at `path` (raises ModelError when it is not one)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            if fh.read(4) != MAGIC:
                raise ModelError(f"{path} is not a GGUF file (no GGUF magic bytes)")
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _parse(buf, path)
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror or exc}") from None


def _parse(buf, path: Path) -> GgufHeader:
    version = struct.unpack_from("<I", buf, 4)[0] if len(buf) >= 8 else 0
    endian = "<"
    if version > 0xFFFF:  # a big-endian file reads as a huge little-endian number
        endian, version = ">", struct.unpack_from(">I", buf, 4)[0]
    if version < 2:
        raise ModelError(f"{path}: GGUF version {version} is not supported (2 and later are)")
    cur = _Cursor(buf, path, endian)
    cur.pos = 8
    tensor_count, kv_count = cur.take("Q"), cur.take("Q")
    if kv_count > MAX_KEYS:
        raise ModelError(f"{path}: the GGUF header claims {kv_count} metadata keys (at most "
                         f"{MAX_KEYS} are read): not a model halo can use")
    metadata: dict[str, Any] = {}
    for index in range(kv_count):
        key = cur.string(MAX_KEY_BYTES, f"metadata key {index + 1}'s name")
        try:
            metadata[key] = cur.value(cur.take("I"))
        except ModelError as exc:
            message = str(exc).removeprefix(f"{path}: ")
            raise ModelError(f"{path}: metadata key '{key[:80]}': {message}") from None
    return GgufHeader(path, version, tensor_count, metadata)


def synth_dir() -> Path:
    """Where `halo models synth` writes: $HALO_HOME/models/synth/NAME.gguf."""
    return halo_home() / "models" / "synth"


def synth_name(name: str) -> str:
    """A synthetic model's name as a file name stem, or ModelError."""
    name = name.removesuffix(".gguf")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}", name):
        raise ModelError(f"bad synthetic model name '{name}': use letters, digits, '.', '_', "
                         "'+', '-' (no '/')")
    return name


def is_synthetic(path: Path) -> bool:
    """Whether the GGUF at `path` says it is synthetic (False when it cannot be read)."""
    try:
        return read_header(path).metadata.get(SYNTHETIC_KEY) is True
    except ModelError:
        return False
