"""Open and validate a GGUF file (memory-mapped, through `gguf.GGUFReader`).

Every tensor comes back as a read-only NumPy view into the mapped file: quantized data is
never copied. Anything the reader trips on becomes a `LlamacliError` naming the file and
the problem, so the CLI can print one line instead of a traceback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFReader, GGUFValueType

from .errors import LlamacliError

GGUF_MAGIC = b"GGUF"


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


class GGUFFile:
    """A validated, memory-mapped GGUF file: metadata as Python values, tensors as views."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.reader = _open_reader(self.path)
        r = self.reader
        self.version = int(r.fields["GGUF.version"].contents()) if "GGUF.version" in r.fields else 0
        self.alignment = r.alignment
        self.data_offset = r.data_offset
        self.fields = r.fields
        self.tensors: dict[str, TensorView] = {}
        size = self.path.stat().st_size
        for t in r.tensors:
            ne = tuple(int(x) for x in t.shape)
            view = TensorView(t.name, ne, GGMLQuantizationType(t.tensor_type), t.data, int(t.data_offset))
            if view.offset + view.n_bytes > size:
                raise LlamacliError(f"{self.path}: tensor '{t.name}' runs past the end of the file")
            self.tensors[t.name] = view

    # -- metadata ---------------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        f = self.fields.get(key)
        if f is None:
            return default
        try:
            return f.contents()
        except Exception as e:  # malformed value: name it
            raise LlamacliError(f"{self.path}: metadata key '{key}' cannot be read ({e})") from None

    def require(self, key: str) -> Any:
        v = self.get(key)
        if v is None:
            raise LlamacliError(f"{self.path}: metadata key '{key}' is missing")
        return v

    def field_type(self, key: str) -> GGUFValueType | None:
        f = self.fields.get(key)
        return f.types[0] if f is not None and f.types else None

    def array(self, key: str, dtype=None) -> np.ndarray | None:
        """A numeric metadata array as a NumPy array (scores, token types), without Python lists."""
        f = self.fields.get(key)
        if f is None:
            return None
        if not f.types or f.types[0] != GGUFValueType.ARRAY:
            raise LlamacliError(f"{self.path}: metadata key '{key}' is not an array")
        if len(f.types) > 1 and f.types[1] == GGUFValueType.STRING:
            raise LlamacliError(f"{self.path}: metadata key '{key}' holds strings, not numbers")
        parts = [f.parts[i] for i in f.data]
        arr = np.concatenate(parts) if parts else np.zeros(0, dtype=dtype or np.float32)
        return arr.astype(dtype) if dtype is not None else arr

    def strings(self, key: str) -> list[str] | None:
        """A string-array metadata value (token texts, merges) decoded as UTF-8."""
        f = self.fields.get(key)
        if f is None:
            return None
        return [bytes(f.parts[i]).decode("utf-8", errors="replace") for i in f.data]

    def tensor(self, name: str) -> TensorView:
        t = self.tensors.get(name)
        if t is None:
            raise LlamacliError(f"{self.path}: tensor '{name}' is missing")
        return t

    @property
    def architecture(self) -> str:
        return str(self.require("general.architecture"))


def _open_reader(path: Path) -> GGUFReader:
    if not path.exists():
        raise LlamacliError(f"{path}: no such file")
    if path.is_dir():
        raise LlamacliError(f"{path}: is a directory, not a GGUF file")
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise LlamacliError(f"{path}: cannot be read ({e.strerror})") from None
    if magic != GGUF_MAGIC:
        raise LlamacliError(f"{path}: not a GGUF file (magic {magic!r}, expected {GGUF_MAGIC!r})")
    try:
        return GGUFReader(path, "r")
    except (ValueError, IndexError, KeyError, OverflowError, MemoryError, TypeError, AssertionError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise LlamacliError(f"{path}: corrupt or truncated GGUF ({msg})") from None


def open_gguf(path: str | os.PathLike) -> GGUFFile:
    return GGUFFile(path)


# -- writing (llamacli quantize) -----------------------------------------------------------------
#
# A streaming GGUF writer laid out as ggml's gguf_write_out: header, key-value pairs, tensor
# infos, padding to the alignment, then each tensor's data padded to the alignment. Metadata
# copied from an input file keeps its exact bytes. The file is written beside the target under a
# temporary name and renamed only once every tensor is in, so an error, Ctrl-C or a full disk
# never leaves a partial output behind.

GGUF_WRITE_VERSION = 3
GGUF_DEFAULT_ALIGNMENT = 32


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
