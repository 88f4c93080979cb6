"""Open and validate a GGUF file, memory-mapped, checking everything before trusting it.

The header is parsed here directly (a few milliseconds) rather than by `gguf.GGUFReader`, which
builds a NumPy array for every string of the vocabulary and needs 5 s for SmolLM2 and 20 s for
Gemma-3. Formats, types and sizes still come from the `gguf` package's tables, and the full
`GGUFReader` stays available (`GGUFFile.reader`, built on first use) for `inspect`, whose
output must match gguf-dump's.

Every count, length and offset is checked against the file size before it is used, so a
corrupt or hostile file ends in one `LlamacliError` naming the problem: no traceback, no hang,
no huge allocation. Every tensor comes back as a read-only NumPy view into the mapped file:
quantized data is never copied.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFReader, GGUFValueType

from .errors import LlamacliError

GGUF_MAGIC = b"GGUF"
GGUF_DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_KEY = 1 << 16  # longer keys or tensor names are refused (llama.cpp's are < 256)

V = GGUFValueType
SCALAR_FORMATS = {
    V.UINT8: "<B", V.INT8: "<b", V.UINT16: "<H", V.INT16: "<h", V.UINT32: "<I", V.INT32: "<i",
    V.FLOAT32: "<f", V.BOOL: "<?", V.UINT64: "<Q", V.INT64: "<q", V.FLOAT64: "<d",
}
SCALAR_DTYPES = {
    V.UINT8: np.uint8, V.INT8: np.int8, V.UINT16: np.uint16, V.INT16: np.int16, V.UINT32: np.uint32,
    V.INT32: np.int32, V.FLOAT32: np.float32, V.BOOL: np.bool_, V.UINT64: np.uint64, V.INT64: np.int64,
    V.FLOAT64: np.float64,
}
# how GGUFReader types tensor data: these as elements, every other type as raw bytes
ELEMENT_DTYPES = {
    GGMLQuantizationType.F32: np.float32, GGMLQuantizationType.F16: np.float16,
    GGMLQuantizationType.F64: np.float64, GGMLQuantizationType.I8: np.int8,
    GGMLQuantizationType.I16: np.int16, GGMLQuantizationType.I32: np.int32,
    GGMLQuantizationType.I64: np.int64,
}


@dataclass(frozen=True)
class TensorView:
    name: str
    ne: tuple[int, ...]  # ggml order: ne[0] is the row length (fastest axis)
    qtype: GGMLQuantizationType
    data: np.ndarray  # read-only view into the file; rows of raw bytes for quantized types
    offset: int  # absolute byte offset of the data in the file

    @property
    def n_elements(self) -> int:
        return int(np.prod(self.ne, dtype=np.int64))

    @property
    def n_bytes(self) -> int:
        block, type_size = GGML_QUANT_SIZES[self.qtype]
        return self.n_elements // block * type_size

    @property
    def rows(self) -> np.ndarray:
        """The tensor as a 2-D array (n_rows, bytes or elements per row), still a view."""
        n_rows = self.n_elements // self.ne[0]
        return self.data.reshape(n_rows, -1)


@dataclass(frozen=True)
class KV:
    """One key-value pair: its type, its value (scalars and strings decoded; numeric arrays as
    views; string arrays as the offsets and lengths of their elements) and its byte span."""

    key: str
    type: GGUFValueType
    item_type: GGUFValueType | None  # arrays only
    count: int  # elements of an array, 1 otherwise
    value: Any
    start: int  # offset of the serialized pair (its key) in the file
    end: int


class _Cursor:
    """Bounds-checked little-endian reads from the mapped file."""

    def __init__(self, buf: np.ndarray, path: Path):
        self.buf, self.mv, self.size, self.pos, self.path = buf, memoryview(buf), buf.shape[0], 0, path

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise LlamacliError(f"{self.path}: truncated or corrupt GGUF ({what} at byte {self.pos} "
                                f"needs {n} bytes, file has {self.size})")

    def scalar(self, fmt: str, what: str):
        n = struct.calcsize(fmt)
        self.need(n, what)
        v = struct.unpack_from(fmt, self.mv, self.pos)[0]
        self.pos += n
        return v

    def string(self, what: str, limit: int | None = None) -> str:
        n = self.scalar("<Q", what)
        if limit is not None and n > limit:
            raise LlamacliError(f"{self.path}: {what} of {n} bytes is implausibly long")
        self.need(n, what)
        b = bytes(self.mv[self.pos:self.pos + n])
        self.pos += n
        return b.decode("utf-8", errors="replace")


def _walk_strings(cur: _Cursor, n: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and lengths of n consecutive GGUF strings (u64 length + bytes each)."""
    if n * 8 > cur.size - cur.pos:
        raise LlamacliError(f"{cur.path}: {what} claims {n} strings, more than the file can hold")
    offs = np.empty(n, np.int64)
    lens = np.empty(n, np.int64)
    mv, pos, size = cur.mv, cur.pos, cur.size
    unpack = struct.Struct("<Q").unpack_from
    for i in range(n):
        if pos + 8 > size:
            cur.pos = pos
            cur.need(8, what)
        ln = unpack(mv, pos)[0]
        pos += 8
        if ln > size - pos:
            cur.pos = pos
            cur.need(ln, what)
        offs[i] = pos
        lens[i] = ln
        pos += ln
    cur.pos = pos
    return offs, lens


class GGUFFile:
    """A validated, memory-mapped GGUF file: metadata as Python values, tensors as views."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.buf = _map(self.path)
        cur = _Cursor(self.buf, self.path)
        cur.need(4, "magic")
        magic = bytes(self.buf[:4])
        if magic != GGUF_MAGIC:
            raise LlamacliError(f"{self.path}: not a GGUF file (magic {magic!r}, expected {GGUF_MAGIC!r})")
        cur.pos = 4
        self.version = cur.scalar("<I", "version")
        if self.version not in (2, 3):
            raise LlamacliError(f"{self.path}: GGUF version {self.version} is not supported (2 or 3)")
        n_tensors = cur.scalar("<Q", "tensor count")
        n_kv = cur.scalar("<Q", "key-value count")
        # each pair needs at least a key length, a type and a value; each tensor info 8+4+4+8
        if n_kv > cur.size // 13 or n_tensors > cur.size // 24:
            raise LlamacliError(f"{self.path}: truncated or corrupt GGUF (header claims {n_kv} key-values "
                                f"and {n_tensors} tensors, more than the file can hold)")
        self.kv: dict[str, KV] = {}
        for _ in range(n_kv):
            start = cur.pos
            key = cur.string("key", MAX_KEY)
            if key in self.kv:
                raise LlamacliError(f"{self.path}: duplicate metadata key '{key}'")
            vtype = self._vtype(cur.scalar("<I", f"type of '{key}'"), key)
            item_type, count, value = None, 1, None
            if vtype == V.ARRAY:
                item_type = self._vtype(cur.scalar("<I", f"item type of '{key}'"), key)
                count = cur.scalar("<Q", f"length of '{key}'")
                if item_type == V.STRING:
                    value = _walk_strings(cur, count, f"'{key}'")
                elif item_type == V.ARRAY:
                    raise LlamacliError(f"{self.path}: nested arrays in '{key}' are not supported")
                else:
                    dt = np.dtype(SCALAR_DTYPES[item_type]).newbyteorder("<")
                    if count > (cur.size - cur.pos) // dt.itemsize:
                        raise LlamacliError(f"{self.path}: array '{key}' of {count} items runs past the end of the file")
                    value = np.frombuffer(self.buf, dtype=dt, count=count, offset=cur.pos)
                    cur.pos += count * dt.itemsize
            elif vtype == V.STRING:
                value = cur.string(f"value of '{key}'")
            else:
                value = cur.scalar(SCALAR_FORMATS[vtype], f"value of '{key}'")
            self.kv[key] = KV(key, vtype, item_type, count, value, start, cur.pos)

        align = self.kv.get("general.alignment")
        self.alignment = int(align.value) if align is not None and align.type == V.UINT32 else GGUF_DEFAULT_ALIGNMENT
        if self.alignment <= 0 or self.alignment & (self.alignment - 1):
            raise LlamacliError(f"{self.path}: alignment {self.alignment} is not a power of two")

        infos = []
        names = set()
        for i in range(n_tensors):
            name = cur.string(f"name of tensor {i}", MAX_KEY)
            if name in names:
                raise LlamacliError(f"{self.path}: duplicate tensor name '{name}'")
            names.add(name)
            n_dims = cur.scalar("<I", f"dimensions of '{name}'")
            if not 1 <= n_dims <= MAX_DIMS:
                raise LlamacliError(f"{self.path}: tensor '{name}' has {n_dims} dimensions (1..{MAX_DIMS} allowed)")
            ne = tuple(cur.scalar("<Q", f"shape of '{name}'") for _ in range(n_dims))
            raw_type = cur.scalar("<I", f"type of '{name}'")
            try:
                qtype = GGMLQuantizationType(raw_type)
                block, type_size = GGML_QUANT_SIZES[qtype]
            except (ValueError, KeyError):
                raise LlamacliError(f"{self.path}: tensor '{name}' has unknown type {raw_type}") from None
            offset = cur.scalar("<Q", f"offset of '{name}'")
            n = 1
            for d in ne:
                if d <= 0:
                    raise LlamacliError(f"{self.path}: tensor '{name}' has a zero or negative dimension {list(ne)}")
                n *= d
                if n > cur.size * 256:  # no type stores more than 256 weights per byte... far more than enough
                    raise LlamacliError(f"{self.path}: tensor '{name}' of shape {list(ne)} cannot fit in the file")
            if ne[0] % block:
                raise LlamacliError(f"{self.path}: tensor '{name}' rows of {ne[0]} are not a multiple of the "
                                    f"{qtype.name} block size {block}")
            infos.append((name, ne, qtype, offset, n // block * type_size))

        self.data_offset = (cur.pos + self.alignment - 1) // self.alignment * self.alignment
        self.tensors: dict[str, TensorView] = {}
        for name, ne, qtype, offset, nbytes in infos:
            if offset % self.alignment:
                raise LlamacliError(f"{self.path}: tensor '{name}' offset {offset} is not aligned to {self.alignment}")
            start = self.data_offset + offset
            if start + nbytes > cur.size:
                raise LlamacliError(f"{self.path}: truncated GGUF: tensor '{name}' runs past the end of the file "
                                    f"(needs bytes {start}..{start + nbytes}, file has {cur.size})")
            shape = tuple(reversed(ne))  # NumPy order: rows last-but-one, elements last
            dt = ELEMENT_DTYPES.get(qtype)
            if dt is not None:
                data = np.frombuffer(self.buf, dtype=dt, count=nbytes // np.dtype(dt).itemsize, offset=start).reshape(shape)
            else:
                block, type_size = GGML_QUANT_SIZES[qtype]
                data = np.frombuffer(self.buf, dtype=np.uint8, count=nbytes, offset=start).reshape(
                    (*shape[:-1], ne[0] // block * type_size))
            self.tensors[name] = TensorView(name, ne, qtype, data, start)

    def _vtype(self, raw: int, key: str) -> GGUFValueType:
        try:
            return GGUFValueType(raw)
        except ValueError:
            raise LlamacliError(f"{self.path}: metadata key '{key}' has unknown value type {raw}") from None

    # -- metadata ---------------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        """A value as Python data: scalars, strings, and arrays as lists."""
        kv = self.kv.get(key)
        if kv is None:
            return default
        if kv.type != V.ARRAY:
            return kv.value
        if kv.item_type == V.STRING:
            return self.strings(key)
        return kv.value.tolist()

    def require(self, key: str) -> Any:
        v = self.get(key)
        if v is None:
            raise LlamacliError(f"{self.path}: metadata key '{key}' is missing")
        return v

    def field_type(self, key: str) -> GGUFValueType | None:
        kv = self.kv.get(key)
        return kv.type if kv is not None else None

    def array_len(self, key: str) -> int | None:
        kv = self.kv.get(key)
        return kv.count if kv is not None and kv.type == V.ARRAY else None

    def array(self, key: str, dtype=None) -> np.ndarray | None:
        """A numeric metadata array as a NumPy view into the file (a copy if dtype converts)."""
        kv = self.kv.get(key)
        if kv is None:
            return None
        if kv.type != V.ARRAY:
            raise LlamacliError(f"{self.path}: metadata key '{key}' is not an array")
        if kv.item_type == V.STRING:
            raise LlamacliError(f"{self.path}: metadata key '{key}' holds strings, not numbers")
        return kv.value.astype(dtype, copy=False) if dtype is not None else kv.value

    def strings(self, key: str) -> list[str] | None:
        """A string-array metadata value (token texts, merges) decoded as UTF-8 (bad bytes ->
        U+FFFD), in one pass over the mapped bytes."""
        kv = self.kv.get(key)
        if kv is None:
            return None
        if kv.type != V.ARRAY or kv.item_type != V.STRING:
            raise LlamacliError(f"{self.path}: metadata key '{key}' is not a string array")
        offs, lens = kv.value
        if offs.shape[0] == 0:
            return []
        # the strings are contiguous, each after its 8-byte length: overwrite each length's
        # last byte with 0xFF (never valid UTF-8), drop the other 7, decode once and split
        start = int(offs[0]) - 8
        end = int(offs[-1] + lens[-1])
        raw = np.array(self.buf[start:end], dtype=np.uint8)
        hdr = offs - 8 - start
        keep = np.ones(raw.shape[0], dtype=bool)
        keep[(hdr[:, None] + np.arange(8)).ravel()] = False
        keep[hdr[1:] + 7] = True
        raw[hdr[1:] + 7] = 0xFF
        text = raw[keep].tobytes().decode("utf-8", "surrogateescape")
        out = text.split("\udcff")
        # the separators are the only escapes allowed (a stray 0xFF byte also changes the count)
        if len(out) == offs.shape[0] and not any("\udc80" <= c < "\udcff" for c in set(text)):
            return out
        # some element holds bytes that are not UTF-8: decode one by one
        mv = memoryview(self.buf)
        return [bytes(mv[o:o + n]).decode("utf-8", errors="replace") for o, n in zip(offs.tolist(), lens.tolist())]

    def raw_bytes(self, key: str) -> bytes:
        """The serialized key-value pair exactly as stored (for copying metadata)."""
        kv = self.kv[key]
        return bytes(self.buf[kv.start:kv.end])

    def tensor(self, name: str) -> TensorView:
        t = self.tensors.get(name)
        if t is None:
            raise LlamacliError(f"{self.path}: tensor '{name}' is missing")
        return t

    @property
    def architecture(self) -> str:
        arch = self.require("general.architecture")
        if not isinstance(arch, str):
            raise LlamacliError(f"{self.path}: general.architecture is not a string")
        return arch

    # -- gguf-py's view, for gguf-dump parity ----------------------------------------------

    @cached_property
    def reader(self) -> GGUFReader:
        """gguf-py's GGUFReader over the same file (slow on large vocabularies; built on use)."""
        try:
            return GGUFReader(self.path, "r")
        except (ValueError, IndexError, KeyError, OverflowError, MemoryError, TypeError, AssertionError) as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise LlamacliError(f"{self.path}: corrupt GGUF ({msg})") from None

    @property
    def fields(self):
        return self.reader.fields


def _map(path: Path) -> np.ndarray:
    if not path.exists():
        raise LlamacliError(f"{path}: no such file")
    if path.is_dir():
        raise LlamacliError(f"{path}: is a directory, not a GGUF file")
    try:
        if path.stat().st_size == 0:
            raise LlamacliError(f"{path}: empty file, not a GGUF file")
        return np.memmap(path, dtype=np.uint8, mode="r")
    except OSError as e:
        raise LlamacliError(f"{path}: cannot be read ({e.strerror})") from None


def open_gguf(path: "str | os.PathLike | GGUFFile") -> GGUFFile:
    """Open a GGUF; an already open GGUFFile is returned as it is (no second parse)."""
    return path if isinstance(path, GGUFFile) else GGUFFile(path)


# -- writing (llamacli quantize) -----------------------------------------------------------------
#
# A streaming GGUF writer laid out as ggml's gguf_write_out: header, key-value pairs, tensor
# infos, padding to the alignment, then each tensor's data padded to the alignment. Metadata
# copied from an input file keeps its exact bytes. The file is written beside the target under a
# temporary name and renamed only once every tensor is in, so an error, Ctrl-C or a full disk
# never leaves a partial output behind.

GGUF_WRITE_VERSION = 3


def _gguf_str(s: str) -> bytes:
    b = s.encode("utf-8")
    return len(b).to_bytes(8, "little") + b


def kv_uint32(key: str, value: int) -> tuple[str, bytes]:
    """A serialized UINT32 key-value pair (gguf_set_val_u32)."""
    return key, _gguf_str(key) + int(GGUFValueType.UINT32).to_bytes(4, "little") + int(value).to_bytes(4, "little")


@dataclass(frozen=True)
class TensorInfo:
    name: str
    ne: tuple[int, ...]  # ggml order; trailing 1s are dropped when written (ggml_n_dims)
    qtype: GGMLQuantizationType

    @property
    def n_bytes(self) -> int:
        block, type_size = GGML_QUANT_SIZES[self.qtype]
        n = int(np.prod(self.ne, dtype=np.int64))
        return n // block * type_size


def _pad(n: int, align: int) -> int:
    return (n + align - 1) // align * align


class AtomicGGUFWriter:
    """``with AtomicGGUFWriter(path, kv, tensors) as w: w.write(i, chunk) ...``

    Tensors are written in the order given, each as one or more chunks (bytes-like), and must
    be complete before the next one starts. On leaving the block without an exception the
    temporary file is flushed and renamed over `path`; otherwise it is removed.
    """

    def __init__(self, path: str | os.PathLike, kv: list[tuple[str, bytes]], tensors: list[TensorInfo],
                 alignment: int = GGUF_DEFAULT_ALIGNMENT, fsync: bool = False):
        self.path = Path(path)
        self.fsync = fsync  # llama.cpp does not sync either; the rename alone keeps it atomic
        self.kv = kv
        self.tensors = tensors
        self.alignment = alignment
        self._f = None
        self._tmp: Path | None = None
        self._cur = 0  # index of the tensor being written
        self._written = 0  # bytes of it written so far

    def _meta(self) -> bytes:
        parts = [GGUF_MAGIC, GGUF_WRITE_VERSION.to_bytes(4, "little"),
                 len(self.tensors).to_bytes(8, "little"), len(self.kv).to_bytes(8, "little")]
        parts += [blob for _, blob in self.kv]
        offset = 0
        for t in self.tensors:
            ne = list(t.ne)
            while len(ne) > 1 and ne[-1] == 1:
                ne.pop()
            parts.append(_gguf_str(t.name))
            parts.append(len(ne).to_bytes(4, "little"))
            parts += [int(x).to_bytes(8, "little") for x in ne]
            parts.append(int(t.qtype).to_bytes(4, "little"))
            parts.append(offset.to_bytes(8, "little"))
            offset += _pad(t.n_bytes, self.alignment)
        meta = b"".join(parts)
        return meta + bytes(_pad(len(meta), self.alignment) - len(meta))

    def __enter__(self) -> "AtomicGGUFWriter":
        import tempfile

        d = self.path.parent if str(self.path.parent) else Path(".")
        try:
            fd, tmp = tempfile.mkstemp(dir=d, prefix=f"{self.path.name}.part-")
        except OSError as e:
            raise LlamacliError(f"{self.path}: cannot create the output file ({e.strerror})") from None
        self._tmp = Path(tmp)
        self._f = os.fdopen(fd, "wb", buffering=1 << 20)
        try:
            self._f.write(self._meta())
        except BaseException:
            self._abort()
            raise
        return self

    def write(self, index: int, chunk) -> None:
        if index != self._cur:
            if index != self._cur + 1 or self._written != self.tensors[self._cur].n_bytes:
                raise LlamacliError(f"{self.path}: tensor '{self.tensors[self._cur].name}' is incomplete")
            self._end_tensor()
        mv = memoryview(chunk).cast("B")
        self._written += mv.nbytes
        if self._written > self.tensors[index].n_bytes:
            raise LlamacliError(f"{self.path}: too much data for tensor '{self.tensors[index].name}'")
        self._write_raw(mv)

    def _write_raw(self, data) -> None:
        try:
            self._f.write(data)
        except OSError as e:
            raise LlamacliError(f"{self.path}: cannot write ({e.strerror})") from None

    def _end_tensor(self) -> None:
        n = self.tensors[self._cur].n_bytes
        self._write_raw(bytes(_pad(n, self.alignment) - n))
        self._cur += 1
        self._written = 0

    def _abort(self) -> None:
        try:
            if self._f is not None:
                self._f.close()
        except OSError:
            pass
        finally:
            self._f = None
            if self._tmp is not None:
                self._tmp.unlink(missing_ok=True)
                self._tmp = None

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._abort()
            return
        try:
            if self.tensors:
                last = len(self.tensors) - 1
                if self._cur != last or self._written != self.tensors[last].n_bytes:
                    raise LlamacliError(f"{self.path}: not every tensor was written")
                self._end_tensor()
            self._f.flush()
            if self.fsync:
                os.fsync(self._f.fileno())
            self._f.close()
            self._f = None
            os.chmod(self._tmp, 0o644 & ~_umask())
            os.replace(self._tmp, self.path)
            self._tmp = None
        except OSError as e:
            self._abort()
            raise LlamacliError(f"{self.path}: cannot write ({e.strerror})") from None
        except BaseException:
            self._abort()
            raise


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m
