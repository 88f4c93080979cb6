"""A fast header scan of a GGUF file: what the quantizer needs, in milliseconds.

`gguf.GGUFReader` builds a NumPy array for every string of the vocabulary (49k-262k of them),
which costs seconds; llama-quantize reads the same header in a few milliseconds. The quantizer
needs less: each key-value pair's exact bytes (copied unchanged into the output), the values of
a few scalar keys, and the tensor infos. Arrays are skipped over, not decoded (numeric arrays
are decoded on demand).
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

from ..errors import LlamacliError
from ..gguf_io import GGUF_MAGIC, TensorView

V = GGUFValueType
_SCALAR = {
    V.UINT8: "<B", V.INT8: "<b", V.UINT16: "<H", V.INT16: "<h", V.UINT32: "<I", V.INT32: "<i",
    V.FLOAT32: "<f", V.BOOL: "<?", V.UINT64: "<Q", V.INT64: "<q", V.FLOAT64: "<d",
}
_NP = {
    V.UINT8: np.uint8, V.INT8: np.int8, V.UINT16: np.uint16, V.INT16: np.int16, V.UINT32: np.uint32,
    V.INT32: np.int32, V.FLOAT32: np.float32, V.BOOL: np.bool_, V.UINT64: np.uint64, V.INT64: np.int64,
    V.FLOAT64: np.float64,
}


class _Truncated(Exception):
    pass


@dataclass
class KV:
    key: str
    type: GGUFValueType
    raw: bytes  # the whole serialized pair: key, type, value
    value: Any  # scalars and strings decoded; arrays: numeric ones as NumPy, string ones None


class ScannedGGUF:
    """The header of a GGUF file and its tensors as views into the mapped file."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.exists():
            raise LlamacliError(f"{self.path}: no such file")
        if self.path.is_dir():
            raise LlamacliError(f"{self.path}: is a directory, not a GGUF file")
        try:
            self.data = np.memmap(self.path, dtype=np.uint8, mode="r")
        except (OSError, ValueError) as e:
            raise LlamacliError(f"{self.path}: cannot be read ({e})") from None
        buf = memoryview(self.data)
        if bytes(buf[:4]) != GGUF_MAGIC:
            raise LlamacliError(f"{self.path}: not a GGUF file (magic {bytes(buf[:4])!r}, expected {GGUF_MAGIC!r})")
        try:
            self._parse(buf)
        except (_Truncated, struct.error, UnicodeDecodeError, ValueError, KeyError) as e:
            raise LlamacliError(f"{self.path}: corrupt or truncated GGUF ({type(e).__name__}: {e})") from None

    def _parse(self, buf: memoryview) -> None:
        pos = 4
        size = len(buf)

        def need(n):
            if pos + n > size:
                raise _Truncated(f"needs {n} bytes at offset {pos}")

        def unpack(fmt):
            nonlocal pos
            n = struct.calcsize(fmt)
            need(n)
            v = struct.unpack_from(fmt, buf, pos)[0]
            pos += n
            return v

        def string():
            nonlocal pos
            n = unpack("<Q")
            need(n)
            s = bytes(buf[pos:pos + n]).decode("utf-8")
            pos += n
            return s

        self.version = unpack("<I")
        if self.version not in (2, 3):
            raise ValueError(f"unsupported GGUF version {self.version}")
        n_tensors = unpack("<Q")
        n_kv = unpack("<Q")
        self.kv: dict[str, KV] = {}
        for _ in range(n_kv):
            start = pos
            key = string()
            vtype = V(unpack("<I"))
            if vtype == V.STRING:
                value = string()
            elif vtype == V.ARRAY:
                etype = V(unpack("<I"))
                count = unpack("<Q")
                if etype == V.STRING:  # walk the lengths without decoding (the vocabulary)
                    u64 = struct.Struct("<Q").unpack_from
                    p = pos
                    for _ in range(count):
                        if p + 8 > size:
                            raise _Truncated(f"string array '{key}' runs past the end")
                        p += 8 + u64(buf, p)[0]
                    if p > size:
                        raise _Truncated(f"string array '{key}' runs past the end")
                    pos = p
                    value = None
                elif etype == V.ARRAY:
                    raise ValueError(f"nested arrays in key '{key}'")
                else:
                    dt = np.dtype(_NP[etype]).newbyteorder("<")
                    need(count * dt.itemsize)
                    value = np.frombuffer(buf, dtype=dt, count=count, offset=pos)
                    pos += count * dt.itemsize
            else:
                value = unpack(_SCALAR[vtype])
            self.kv[key] = KV(key, vtype, bytes(buf[start:pos]), value)

        align = self.kv.get("general.alignment")
        self.alignment = int(align.value) if align is not None and align.type == V.UINT32 else 32
        infos = []
        for _ in range(n_tensors):
            name = string()
            nd = unpack("<I")
            ne = tuple(unpack("<Q") for _ in range(nd))
            qtype = GGMLQuantizationType(unpack("<I"))
            off = unpack("<Q")
            infos.append((name, ne, qtype, off))
        self.data_offset = (pos + self.alignment - 1) // self.alignment * self.alignment
        self.tensors: dict[str, TensorView] = {}
        for name, ne, qtype, off in infos:
            block, type_size = GGML_QUANT_SIZES[qtype]
            n = int(np.prod(ne, dtype=np.int64))
            if ne and ne[0] % block:
                raise ValueError(f"tensor '{name}': row of {ne[0]} is not a multiple of {block} for {qtype.name}")
            start = self.data_offset + off
            nbytes = n // block * type_size
            if start + nbytes > size:
                raise LlamacliError(f"{self.path}: tensor '{name}' runs past the end of the file")
            if name in self.tensors:
                raise ValueError(f"duplicate tensor '{name}'")
            self.tensors[name] = TensorView(name, ne, qtype, self.data[start:start + nbytes], start)

    def release(self, offset: int, nbytes: int) -> None:
        """Drop the mapped pages of data already processed (llama.cpp unmaps each weight as it
        goes), so the resident size does not grow to the whole input file."""
        mm = getattr(self.data, "_mmap", None)
        if mm is None or not hasattr(mm, "madvise"):
            return
        page = mmap.PAGESIZE
        start = -(-offset // page) * page  # whole pages inside the range only: neighbours stay
        end = (offset + nbytes) // page * page
        if end > start:
            try:
                mm.madvise(mmap.MADV_DONTNEED, start, end - start)
            except (OSError, ValueError):
                pass

    def get(self, key: str, default: Any = None) -> Any:
        kv = self.kv.get(key)
        if kv is None or kv.value is None:
            return default
        v = kv.value
        return v.tolist() if isinstance(v, np.ndarray) else v

    @property
    def architecture(self) -> str:
        arch = self.get("general.architecture")
        if arch is None:
            raise LlamacliError(f"{self.path}: metadata key 'general.architecture' is missing")
        return str(arch)
