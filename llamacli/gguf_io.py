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
