"""`llamacli inspect MODEL`: a summary of a GGUF file, then gguf-dump's listing.

Glue over `llamacli.inspect`: parse options, load, render. Rich tables on a terminal,
plain aligned text when piped; `--json` and `--markdown` are gguf-dump's formats.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any, Optional

import typer

from ..errors import LlamacliError

if TYPE_CHECKING:
    from .. import inspect as core

COMMAND_SETTINGS = {"help": "Show a GGUF file: summary, header, key/values and tensors (gguf-dump and more)."}

# (title, headers, rows, right-aligned columns) -- one section of the listing
Section = tuple[str, list[str], list[list[str]], set[int]]


def command(
    model: str = typer.Argument(..., metavar="MODEL", help="GGUF file to inspect."),
    as_json: bool = typer.Option(False, "--json", help="gguf-dump's JSON document (arrays summarised)."),
    json_array: bool = typer.Option(
        False, "--json-array", help="JSON with every array value in full (implies --json)."
    ),
    markdown: bool = typer.Option(False, "--markdown", help="gguf-dump's markdown report."),
    no_tensors: bool = typer.Option(False, "--no-tensors", help="Leave out the tensor listing."),
    tensor_filter: Optional[str] = typer.Option(
        None, "--filter", metavar="REGEX", help="Only tensors whose name matches REGEX (re.search)."
    ),
    template: bool = typer.Option(
        False, "--template", help="Print the chat template (tokenizer.chat_template) in full."
    ),
    data_offset: bool = typer.Option(False, "--data-offset", help="Print the offset of the tensor data and stop."),
    data_alignment: bool = typer.Option(False, "--data-alignment", help="Print the data alignment and stop."),
) -> None:
    from .. import inspect as core  # gguf and numpy load only when inspect runs, not for --help

    as_json = as_json or json_array
    modes = [n for n, on in (("--json", as_json), ("--markdown", markdown), ("--template", template),
                             ("--data-offset", data_offset), ("--data-alignment", data_alignment)) if on]
    if len(modes) > 1:
        raise LlamacliError(f"inspect: {' and '.join(modes)} cannot be combined")
    if tensor_filter is not None:
        core.compile_filter(tensor_filter)  # a bad pattern fails before the file is read

    insp = core.load(model)
    shown = [] if no_tensors else insp.select(tensor_filter)
    out = sys.stdout

    if as_json:
        doc = core.gguf_dump_json(insp, model, json_array=json_array, tensors=shown)
        out.write(json.dumps(doc) + "\n")
    elif markdown:
        out.write(core.gguf_dump_markdown(insp, model, None if no_tensors else shown))
    elif template:
        if insp.summary.chat_template is None:
            raise LlamacliError(f"{model}: no chat template (tokenizer.chat_template is not set)")
        t = insp.summary.chat_template
        out.write(t if t.endswith("\n") else t + "\n")
    elif data_offset:
        out.write(f"{insp.header.data_offset}\n")
    elif data_alignment:
        out.write(f"{insp.header.alignment}\n")
    else:
        sections = listing(insp, model, None if no_tensors else shown, tensor_filter)
        if out.isatty():
            from rich.console import Console  # only a terminal pays for importing rich

            render_rich(sections, Console())
        else:
            out.write(render_plain(sections))


# -- the listing, as sections ---------------------------------------------------------------


def listing(
    insp: core.Inspection, filename: str, tensors: list[core.TensorInfo] | None, pattern: str | None = None
) -> list[Section]:
    """Summary, tensor types, header, key/values and (unless None) the given tensors."""
    s, h = insp.summary, insp.header
    arch = s.architecture or "?"
    if s.n_layers is not None:
        arch += f" ({s.n_layers} layer{'s' if s.n_layers != 1 else ''}"
        arch += f", embedding {s.embedding_length})" if s.embedding_length else ")"
    name = s.name or "?"
    if s.size_label:
        name += f" ({s.size_label})"
    vocab = "?" if s.vocab_size is None else str(s.vocab_size)
    if s.tokenizer:
        vocab += f", tokenizer {s.tokenizer}" + (f" (pre {s.tokenizer_pre})" if s.tokenizer_pre else "")
    summary = [
        ["file", filename],
        ["architecture", arch],
        ["model", s.model],
        ["name", name],
        ["file type", s.file_type or "?"],
        ["parameters", f"{count(s.n_params)} ({s.n_params})"],
        *([["experts", f"{s.n_expert}, {s.n_expert_used} used per token; {count(s.n_params_active)} of "
                       f"{count(s.n_params)} parameters active ({s.n_params_active})"]] if s.n_params_active else []),
        ["file size", f"{size(s.file_size)} ({s.file_size} bytes)"],
        ["tensor data", f"{size(s.tensor_bytes)}, {s.bpw:.2f} bits per weight"],
        ["context length", "?" if s.context_length is None else str(s.context_length)],
        ["vocabulary", vocab],
        ["output head", "tied to token_embd.weight" if s.tied_output else "separate (output.weight)"],
        ["chat template",
         "none" if s.chat_template is None else f"{len(s.chat_template)} characters (--template shows it)"],
    ]
    types = [
        [t.qtype.name, str(t.tensors), str(t.elements), str(t.bytes), size(t.bytes),
         f"{100 * t.bytes / max(s.tensor_bytes, 1):.1f}%", f"{t.bpw:.2f}"]
        for t in s.types
    ]
    header = [
        ["GGUF version", str(h.version)],
        ["endian", f"{h.endian} (host {h.host_endian})"],
        ["alignment", str(h.alignment)],
        ["data offset", str(h.data_offset)],
        ["tensors", str(h.tensor_count)],
        ["key/values", f"{h.kv_count} (+{len(insp.entries) - h.kv_count} GGUF.* header fields listed below)"],
    ]
    kvs = [[str(e.index + 1), e.pretty_type, str(e.count), e.key, e.short()] for e in insp.entries]
    sections: list[Section] = [
        ("summary", ["", ""], summary, set()),
        ("tensor types", ["type", "tensors", "elements", "bytes", "size", "share", "bpw"], types, {1, 2, 3, 4, 5, 6}),
        ("header", ["", ""], header, set()),
        (f"key/values ({len(kvs)})", ["#", "type", "count", "key", "value"], kvs, {0, 2}),
    ]
    if tensors is not None:
        title = f"tensors ({len(tensors)})"
        if pattern is not None:
            n_el = sum(t.n_elements for t in tensors)
            n_b = sum(t.n_bytes for t in tensors)
            title = (f"tensors ({len(tensors)} of {len(insp.tensors)} match '{pattern}': "
                     f"{count(n_el)} parameters, {size(n_b)})")
        rows = [
            [str(t.index), t.name, " x ".join(str(d) for d in t.ne), t.qtype.name, str(t.n_bytes), str(t.offset)]
            for t in tensors
        ]
        sections.append((title, ["#", "name", "shape", "type", "bytes", "offset"], rows, {0, 4, 5}))
    return sections


def count(n: int) -> str:
    """Parameters the way llama.cpp prints them: 134.52 M, 1.24 B."""
    for scale, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return str(n)


def size(n: int) -> str:
    for scale, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


# -- renderers ------------------------------------------------------------------------------


def render_plain(sections: list[Section]) -> str:
    """Aligned text for pipes: a title line, a header row (unless blank), two-space gutters."""
    out: list[str] = []
    for title, headers, rows, right in sections:
        out.append(title)
        table = ([headers] if any(headers) else []) + rows
        if not rows:
            out.append("  (none)")
        widths = [max(len(r[i]) for r in table) for i in range(len(headers))]
        last = len(headers) - 1
        for r in table:
            cells = [
                c.rjust(w) if i in right else (c if i == last else c.ljust(w))
                for i, (c, w) in enumerate(zip(r, widths))
            ]
            out.append(("  " + "  ".join(cells)).rstrip())
        out.append("")
    return "\n".join(out)


def render_rich(sections: list[Section], console: Any) -> None:
    from rich.table import Table
    from rich.text import Text

    for title, headers, rows, right in sections:
        show_header = any(headers)
        t = Table(title=title, title_justify="left", show_header=show_header, box=None,
                  header_style="bold", title_style="bold cyan", pad_edge=False)
        for i, head in enumerate(headers):
            t.add_column(head, justify="right" if i in right else "left",
                         style="bold" if (not show_header and i == 0) else None, overflow="fold")
        for r in rows:
            t.add_row(*(Text(c) for c in r))  # Text: values are shown as-is, never as markup
        console.print(t)
        console.print()
