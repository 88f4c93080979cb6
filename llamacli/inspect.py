"""Inspect a GGUF file: a summary, then gguf-dump's listing (header, key/values, tensors).

The listing mirrors llama.cpp's `gguf-py/gguf/scripts/gguf_dump.py` (gguf-dump): the same
key/value order and types, its one-line value summaries, its `--json` structure
(`filename`, `endian`, `metadata`, `tensors`) and its `--markdown` report, so that output
can be diffed against the reference. The summary on top is ours: what one usually opens a
GGUF to find out (architecture, parameters, bits per weight, context, vocabulary, which
weight types take the bytes, whether the output head is tied to the embedding).

Everything here is plain data built from `gguf_io.open_gguf`; the CLI module renders it.
No model engine and no Numba are imported: `llamacli inspect` must start fast.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gguf import GGMLQuantizationType, GGUFValueType, Keys, LlamaFileType

from .errors import LlamacliError
from .gguf_io import GGUFFile, open_gguf

# The scalar value types, as in GGUFReader.gguf_scalar_to_np (everything but STRING, ARRAY).
_SCALAR_TYPES = frozenset(t for t in GGUFValueType if t not in (GGUFValueType.STRING, GGUFValueType.ARRAY))

# gguf-dump's one-line rendering: strings cut at 60 characters, arrays after 6 elements.
_STRING_CUT = 60
_ARRAY_HEAD = 6


# -- the data ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    version: int
    endian: str  # of the file: "LITTLE" or "BIG" (gguf-dump's `file_endian`)
    host_endian: str
    alignment: int
    data_offset: int  # absolute offset of the tensor data section
    tensor_count: int
    kv_count: int  # key/value pairs as stored (without the three GGUF.* header pseudo-keys)
    file_size: int


@dataclass(frozen=True)
class Entry:
    """One key/value pair, as GGUFReader lists it (the GGUF.* header fields included)."""

    index: int  # 0-based position among the reader's fields (gguf-dump's JSON "index")
    key: str
    types: tuple[GGUFValueType, ...]  # (ARRAY, element type) for arrays
    count: int  # number of values: 1 for scalars and strings, the length for arrays
    offset: int  # absolute offset of the key/value record in the file
    raw: Any = field(repr=False, compare=False)  # the gguf ReaderField

    @property
    def is_array(self) -> bool:
        return self.types[:1] == (GGUFValueType.ARRAY,)

    @property
    def pretty_type(self) -> str:
        """gguf-dump's type column: `UINT32`, `[STRING]`."""
        if not self.types:
            return "N/A"
        nest = len(self.types) - 1 if self.is_array else 0
        return "[" * nest + self.types[-1].name + "]" * nest

    def value(self, index_or_slice: int | slice = slice(None)) -> Any:
        """The value as Python data (`ReaderField.contents`), lists for arrays."""
        return _contents(self.raw, index_or_slice)

    def short(self) -> str:
        """The value as gguf-dump prints it on one line."""
        if not self.types:
            return ""
        t = self.types[0]
        if t == GGUFValueType.STRING:
            s = self.value()
            return repr(s[: _STRING_CUT - 3] + "..." if len(s) > _STRING_CUT else s)
        if t in _SCALAR_TYPES:
            return str(self.value())
        text = repr(self.value(slice(_ARRAY_HEAD)))
        return text[:-1] + ", ...]" if self.count > _ARRAY_HEAD else text


@dataclass(frozen=True)
class TensorInfo:
    index: int  # 0-based position in the file's tensor list
    name: str
    ne: tuple[int, ...]  # ggml order: ne[0] is the row length (the order gguf-dump prints)
    qtype: GGMLQuantizationType
    n_elements: int
    n_bytes: int
    offset: int  # absolute offset of the tensor's data
    info_offset: int  # absolute offset of its record in the header (gguf-dump's JSON "offset")

    @property
    def bpw(self) -> float:
        return self.n_bytes * 8 / self.n_elements if self.n_elements else float("nan")


@dataclass(frozen=True)
class TypeStat:
    """One bar of the tensor-type histogram."""

    qtype: GGMLQuantizationType
    tensors: int
    elements: int
    bytes: int

    @property
    def bpw(self) -> float:
        return self.bytes * 8 / self.elements if self.elements else float("nan")


@dataclass(frozen=True)
class Summary:
    architecture: str | None
    name: str | None
    size_label: str | None
    file_type: str | None  # general.file_type as llama.cpp names it (MOSTLY_Q4_1)
    n_params: int  # elements over all tensors (llama.cpp's "model params")
    tensor_bytes: int  # bytes of tensor data (llama.cpp's "model size")
    file_size: int
    bpw: float  # tensor bits per weight, as llama.cpp's "model size = ... (x BPW)"
    n_layers: int | None
    embedding_length: int | None
    context_length: int | None
    vocab_size: int | None
    tokenizer: str | None  # tokenizer.ggml.model: gpt2 (byte-level BPE), llama (SentencePiece), ...
    tokenizer_pre: str | None  # tokenizer.ggml.pre: the pre-tokenizer pattern set
    types: tuple[TypeStat, ...]  # by bytes, largest first
    tied_output: bool  # no output.weight: the head reuses token_embd.weight
    chat_template: str | None
    model: str = ""  # llama_model_desc ("llama 8B Q4_K - Medium"), or why llamacli cannot run it
    n_expert: int | None = None  # mixture of experts: experts per layer
    n_expert_used: int | None = None  # experts each token goes through
    n_params_active: int | None = None  # parameters a token reads: all but the unused experts' share


@dataclass(frozen=True)
class Inspection:
    path: Path
    header: Header
    entries: tuple[Entry, ...]
    tensors: tuple[TensorInfo, ...]
    summary: Summary
    reader: Any = field(repr=False, compare=False)  # the gguf.GGUFReader behind it all

    def entry(self, key: str) -> Entry | None:
        return next((e for e in self.entries if e.key == key), None)

    def select(self, pattern: str | None) -> list[TensorInfo]:
        """The tensors whose name matches `pattern` (re.search), all of them for None."""
        if pattern is None:
            return list(self.tensors)
        rx = compile_filter(pattern)
        return [t for t in self.tensors if rx.search(t.name)]


# -- reading ----------------------------------------------------------------------------------


def compile_filter(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as e:
        raise LlamacliError(f"bad --filter regular expression {pattern!r}: {e}") from None


def load(path: str | os.PathLike) -> Inspection:
    """Open `path` and gather everything `inspect` shows. Bad input is a LlamacliError."""
    gf = open_gguf(path)
    try:
        return _inspect(gf)
    except LlamacliError:
        raise
    except (ValueError, IndexError, KeyError, TypeError, OverflowError) as e:
        # a header the reader accepted but that does not hold together (gguf_io checks less)
        raise LlamacliError(f"{gf.path}: corrupt GGUF ({e})") from None


def _inspect(gf: GGUFFile) -> Inspection:
    r = gf.reader
    file_endian = r.endianess.name
    host_endian = ("BIG" if file_endian == "LITTLE" else "LITTLE") if r.byte_order == "S" else file_endian
    entries = tuple(
        Entry(i, f.name, tuple(f.types), len(f.data), int(f.offset), f) for i, f in enumerate(r.fields.values())
    )
    # GGUFFile.tensors keeps the reader's order; the reader's tensors carry the record offsets.
    if len(gf.tensors) != len(r.tensors):
        raise LlamacliError(f"{gf.path}: {len(r.tensors)} tensors listed but {len(gf.tensors)} distinct names")
    tensors = tuple(
        TensorInfo(i, v.name, v.ne, v.qtype, v.n_elements, v.n_bytes, v.offset, int(rt.field.offset))
        for i, (v, rt) in enumerate(zip(gf.tensors.values(), r.tensors))
    )
    file_size = gf.path.stat().st_size
    header = Header(
        version=gf.version,
        endian=file_endian,
        host_endian=host_endian,
        alignment=int(gf.alignment),
        data_offset=int(gf.data_offset),
        tensor_count=len(tensors),
        kv_count=sum(1 for e in entries if not e.key.startswith("GGUF.")),
        file_size=file_size,
    )
    summary = replace(_summarise(entries, tensors, file_size), model=_model_desc(gf))
    return Inspection(gf.path, header, entries, tensors, summary, r)


def _model_desc(gf) -> str:
    """The model as llama.cpp describes it, when its family spec accepts the file's metadata."""
    from .bench import model_desc
    from .model.config import config_from_gguf

    try:
        return model_desc(gf, config_from_gguf(gf))
    except (LlamacliError, ValueError, TypeError) as e:
        return f"not runnable here: {e}"


def _summarise(entries: tuple[Entry, ...], tensors: tuple[TensorInfo, ...], file_size: int) -> Summary:
    by_key = {e.key: e for e in entries}

    def scalar(key: str) -> Any:
        e = by_key.get(key)
        return e.value() if e is not None and not e.is_array else None

    arch = scalar(Keys.General.ARCHITECTURE)
    a = arch or "?"
    ftype = scalar(Keys.General.FILE_TYPE)
    try:
        ftype_name = LlamaFileType(ftype).name if ftype is not None else None
    except ValueError:
        ftype_name = f"unknown ({ftype})"
    vocab = scalar(Keys.LLM.VOCAB_SIZE.format(arch=a))
    if vocab is None and Keys.Tokenizer.LIST in by_key:
        vocab = by_key[Keys.Tokenizer.LIST].count  # array length, without decoding the tokens

    stats: dict[GGMLQuantizationType, list[int]] = {}
    for t in tensors:
        s = stats.setdefault(t.qtype, [0, 0, 0])
        s[0] += 1
        s[1] += t.n_elements
        s[2] += t.n_bytes
    types = tuple(
        sorted((TypeStat(q, *s) for q, s in stats.items()), key=lambda s: (-s.bytes, s.qtype.name))
    )
    n_params = sum(t.n_elements for t in tensors)
    tensor_bytes = sum(t.n_bytes for t in tensors)
    names = {t.name for t in tensors}
    n_expert = scalar(Keys.LLM.EXPERT_COUNT.format(arch=a))
    n_used = scalar(Keys.LLM.EXPERT_USED_COUNT.format(arch=a))
    active = None
    if n_expert and n_used:
        # the *_exps tensors hold n_expert experts each, of which a token reads n_used
        exps = sum(t.n_elements for t in tensors if "_exps." in t.name)
        active = n_params - exps + exps * int(n_used) // int(n_expert)
    return Summary(
        architecture=arch,
        name=scalar(Keys.General.NAME),
        size_label=scalar(Keys.General.SIZE_LABEL),
        file_type=ftype_name,
        n_params=n_params,
        tensor_bytes=tensor_bytes,
        file_size=file_size,
        bpw=tensor_bytes * 8 / n_params if n_params else float("nan"),
        n_layers=scalar(Keys.LLM.BLOCK_COUNT.format(arch=a)),
        embedding_length=scalar(Keys.LLM.EMBEDDING_LENGTH.format(arch=a)),
        context_length=scalar(Keys.LLM.CONTEXT_LENGTH.format(arch=a)),
        vocab_size=vocab,
        tokenizer=scalar(Keys.Tokenizer.MODEL),
        tokenizer_pre=scalar(Keys.Tokenizer.PRE),
        types=types,
        tied_output="output.weight" not in names,
        chat_template=scalar(Keys.Tokenizer.CHAT_TEMPLATE),
        n_expert=n_expert, n_expert_used=n_used, n_params_active=active,
    )


def _contents(f, index_or_slice: int | slice = slice(None)) -> Any:
    """`ReaderField.contents`, except that bytes which are not UTF-8 become U+FFFD, not a crash."""
    try:
        return f.contents(index_or_slice)
    except UnicodeDecodeError:
        dec = lambda part: bytes(part).decode("utf-8", errors="replace")  # noqa: E731
        if f.types[0] == GGUFValueType.STRING:
            return dec(f.parts[-1])
        idx = f.data[index_or_slice]
        return dec(f.parts[idx]) if isinstance(index_or_slice, int) else [dec(f.parts[i]) for i in idx]


# -- gguf-dump --json -------------------------------------------------------------------------


def gguf_dump_json(
    insp: Inspection, filename: str, *, json_array: bool = False, tensors: list[TensorInfo] | None = None
) -> dict[str, Any]:
    """gguf-dump's `--json` document (`dump_metadata_json`): arrays get `array_types` and,
    with `json_array`, their whole value. `tensors=[]` is gguf-dump's `--no-tensors`."""
    metadata: dict[str, Any] = {}
    for e in insp.entries:
        curr: dict[str, Any] = {
            "index": e.index,
            "type": e.types[0].name if e.types else "UNKNOWN",
            "offset": e.offset,
        }
        metadata[e.key] = curr
        if e.is_array:
            curr["array_types"] = [t.name for t in e.types[1:]]
            if not json_array:
                continue
        curr["value"] = e.value()
    return {
        "filename": filename,
        "endian": insp.header.endian,
        "metadata": metadata,
        "tensors": {
            t.name: {"index": t.index, "shape": list(t.ne), "type": t.qtype.name, "offset": t.info_offset}
            for t in (insp.tensors if tensors is None else tensors)
        },
    }


def inspect_file(
    path: str | os.PathLike, *, tensor_filter: str | None = None, json_array: bool = True
) -> dict[str, Any]:
    """Everything about a GGUF as JSON-ready data: gguf-dump's document (`filename`,
    `endian`, `metadata`, `tensors`) plus our `header` and `summary`."""
    insp = load(path)
    doc = gguf_dump_json(insp, str(path), json_array=json_array, tensors=insp.select(tensor_filter))
    h, s = insp.header, insp.summary
    doc["header"] = {k: getattr(h, k) for k in h.__dataclass_fields__}
    doc["summary"] = {k: getattr(s, k) for k in s.__dataclass_fields__ if k != "types"}
    doc["summary"]["types"] = {
        t.qtype.name: {"tensors": t.tensors, "elements": t.elements, "bytes": t.bytes} for t in s.types
    }
    return doc


# -- gguf-dump --markdown ---------------------------------------------------------------------
# A transcription of gguf_dump.py's dump_markdown_metadata, output byte for byte the same
# (tests compare the two); `tensors` lets --filter narrow the tensor sections.

_TENSOR_WORDS = {  # https://github.com/ggml-org/ggml/blob/master/docs/gguf.md#standardized-tensor-names
    "token_embd": "Token embedding",
    "pos_embd": "Position embedding",
    "output_norm": "Output normalization",
    "output": "Output",
    "attn_norm": "Attention normalization",
    "attn_norm_2": "Attention normalization",
    "attn_qkv": "Attention query-key-value",
    "attn_q": "Attention query",
    "attn_k": "Attention key",
    "attn_v": "Attention value",
    "attn_output": "Attention output",
    "ffn_norm": "Feed-forward network normalization",
    "ffn_up": 'Feed-forward network "up"',
    "ffn_gate": 'Feed-forward network "gate"',
    "ffn_down": 'Feed-forward network "down"',
    "ffn_gate_inp": "Expert-routing layer for the Feed-forward network in Mixture of Expert models",
    "ffn_gate_exp": 'Feed-forward network "gate" layer per expert in Mixture of Expert models',
    "ffn_down_exp": 'Feed-forward network "down" layer per expert in Mixture of Expert models',
    "ffn_up_exp": 'Feed-forward network "up" layer per expert in Mixture of Expert models',
    "ssm_in": "State space model input projections",
    "ssm_conv1d": "State space model rolling/shift",
    "ssm_x": "State space model selective parametrization",
    "ssm_a": "State space model state compression",
    "ssm_d": "State space model skip connection",
    "ssm_dt": "State space model time step",
    "ssm_out": "State space model output projection",
    "blk": "Block",
    "enc": "Encoder",
    "dec": "Decoder",
}


def _translate_tensor_name(name: str) -> str:
    out = []
    for word in name.split("."):
        w = _TENSOR_WORDS.get(word.strip().lower())
        out.append(w.title() if w is not None else word.title())
    return " ".join(out)


def rounded_count(count: int) -> str:
    """gguf-dump's element_count_rounded_notation: ~135M."""
    for scale, suffix in ((1e15, "Q"), (1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if count > scale:
            return f"~{round(count * (1 / scale))}{suffix}"  # gguf-dump multiplies: count * 1e-6
    return f"{round(count)}"


def _md_table(columns: list[tuple[str, str, str]], rows: list[dict[str, Any]]) -> str:
    """gguf-dump's markdown_table_with_alignment_support; columns are (key, header, align)."""
    pads = []
    for key, head, _ in columns:
        width = max((len(str(r[key])) for r in rows), default=0) + 2
        pads.append(max(width, len(head) + 2))

    def cell(pad: int, align: str, s: str) -> str:
        return s.rjust(pad - 1) + " " if align == "right" else " " + s.ljust(pad - 1)

    def dash(pad: int, align: str) -> str:
        return "-" * (pad - 1) + ":" if align == "right" else ":" + "-" * (pad - 1)

    lines = [
        "|".join(cell(p, a, h) for p, (_, h, a) in zip(pads, columns)),
        "|".join(dash(p, a) for p, (_, _, a) in zip(pads, columns)),
    ]
    lines += ["|".join(cell(p, a, str(r[k])) for p, (k, _, a) in zip(pads, columns)) for r in rows]
    return "".join(f"|{line}|\n" for line in lines)


def _md_code(s: str) -> str:
    """Inline code that survives backticks inside it."""
    ticks = "`" * (max((len(m.group(0)) for m in re.finditer(r"`+", s)), default=0) + 1)
    if s.startswith("`") or s.endswith("`"):
        s = f" {s} "
    return f"{ticks}{s}{ticks}"


def _md_cut(s: str, n: int) -> str:
    return f"{_md_code(s[: n // 2])}...{_md_code(s[-n // 2 :])}" if len(s) > n else _md_code(s)


def _md_value(e: Entry) -> str:
    parts = e.raw.parts
    dec = lambda part: str(bytes(part), encoding="utf-8", errors="replace")  # noqa: E731
    if len(e.types) == 1:
        if e.types[0] == GGUFValueType.STRING:
            return _md_cut(dec(parts[-1]), 60)
        if e.types[0] in _SCALAR_TYPES:
            return str(parts[-1][0])
        return ""
    if e.types[0] != GGUFValueType.ARRAY:
        return ""
    sub, shown = e.types[1], []
    if sub == GGUFValueType.STRING:
        shown = [_md_cut(dec(parts[e.raw.data[i]]), 30) for i in range(min(5, e.count))]
    elif sub in _SCALAR_TYPES:
        shown = [str(parts[e.raw.data[i]][0]) for i in range(min(7, e.count))]
    return f'[ {", ".join(shown).strip()}{", ..." if e.count > len(shown) else ""} ]'


def _tensor_group(name: str) -> str:
    c = name.split(".")
    if c[0] == "blk":
        return f"{c[0]}.{c[1]}"
    if c[0] in ("enc", "dec") and c[1] == "blk":
        return f"{c[0]}.{c[1]}.{c[2]}"
    if c[0] in ("enc", "dec"):
        return c[0]
    return "base"


def gguf_dump_markdown(insp: Inspection, filename: str, tensors: list[TensorInfo] | None) -> str:
    """gguf-dump's `--markdown` report; `tensors=None` is its `--no-tensors`."""
    md = f"# {filename} - GGUF Internal File Dump\n\n"
    md += f"- Endian: {insp.header.endian} endian\n\n"
    md += "## Key Value Metadata Store\n\n"
    md += f"There are {len(insp.entries)} key-value pairs in this file\n\n"
    kv_rows = [
        {"n": e.index + 1, "type": e.pretty_type, "count": e.count, "key": e.key, "value": _md_value(e)}
        for e in insp.entries
    ]
    md += _md_table(
        [("n", "POS", "right"), ("type", "TYPE", "left"), ("count", "Count", "right"),
         ("key", "Key", "left"), ("value", "Value", "left")],
        kv_rows,
    )
    md += "\n"

    total_bytes = total_elements = 0
    if tensors is not None:
        groups: dict[str, list[TensorInfo]] = {}
        for t in tensors:
            groups.setdefault(_tensor_group(t.name), []).append(t)
        all_elements = sum(t.n_elements for t in tensors)

        md += f"## Tensors Overview {rounded_count(all_elements)} Elements\n\n"
        md += f"Total number of elements in all tensors: {all_elements} Elements\n\n"
        for g, ts in groups.items():
            n = sum(t.n_elements for t in ts)
            anchor = g.replace(".", "_")
            md += f"- [{_translate_tensor_name(g)} Tensor Group - {rounded_count(n)} Elements](#{anchor})\n"
        md += "\n### Tensor Data Offset\n\n"
        md += "This table contains the offset and data segment relative to start of file\n\n"
        md += _md_table(
            [("id", "T_ID", "right"), ("name", "Tensor Layer Name", "left"),
             ("off", "Data Offset (B)", "right"), ("size", "Data Size (B)", "right")],
            [{"id": t.index, "name": t.name, "off": f"{t.offset:#16x}", "size": f"{t.n_bytes:#16x}"} for t in tensors],
        )
        md += "\n"

        for g, ts in groups.items():
            n = sum(t.n_elements for t in ts)
            md += (
                f"### <a name=\"{g.replace('.', '_')}\">{_translate_tensor_name(g)} Tensor Group : "
                f"{rounded_count(n)} Elements</a>\n\n"
            )
            dims = [list(t.ne) + [1] * (4 - len(t.ne)) for t in ts]
            est_w = max([1] + [len(rounded_count(t.n_elements)) for t in ts])
            cnt_w = max([1] + [len(str(t.n_elements)) for t in ts])
            dim_w = [max([1] + [len(str(d[i])) for d in dims]) for i in range(4)]
            rows = []
            for t, d in zip(ts, dims):
                rows.append({
                    "id": t.index,
                    "name": t.name,
                    "human": _translate_tensor_name(t.name.replace(".weight", ".(W)").replace(".bias", ".(B)")),
                    "elements": f"({rounded_count(t.n_elements):>{est_w}}) {t.n_elements:>{cnt_w}}",
                    "shape": " x ".join(f"{str(x):>{dim_w[i]}}" for i, x in enumerate(d)),
                    "type": t.qtype.name,
                    "bpw": f"{t.bpw:.4f}",
                })
            md += _md_table(
                [("id", "T_ID", "right"), ("name", "Tensor Layer Name", "left"),
                 ("human", "Human Friendly Tensor Layer Name", "left"), ("elements", "Elements", "left"),
                 ("shape", "Shape", "left"), ("type", "Type", "left"), ("bpw", "BPW", "right")],
                rows,
            )
            g_bytes = sum(t.n_bytes for t in ts)
            md += "\n"
            md += f"- Total elements in {g}: ({rounded_count(n):>4}) {n}\n"
            md += f"- Percentage of total elements: {n / max(all_elements, 1) * 100:.2f}%\n"
            if n > 0:
                md += f"- Bits per Weight (BPW) for {g}: {g_bytes * 8 / n:.4f} bits\n"
            else:
                md += f"- Bits per Weight (BPW) for {g}: undefined (no elements)\n"
            md += "\n\n"
            total_bytes += g_bytes
            total_elements += n

    base = os.path.basename(filename)
    if total_elements > 0:
        md += f"Total BPW for {base}: {total_bytes * 8 / total_elements:.4f} bits"
    else:
        md += f"Total BPW for {base}: undefined (no elements)"
    return md + "\n"
