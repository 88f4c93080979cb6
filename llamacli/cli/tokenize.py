"""`llamacli tokenize`: show how a model tokenizes text, as llama.cpp's llama-tokenize does.

Default output is one line per token, `%6d -> 'piece'` (pieces with special tokens shown);
--ids prints only a Python-style list; --jsonl reads one JSON string per line (stdin or -f)
and prints one JSON array of ids per line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from ..errors import LlamacliError
from ..gguf_io import open_gguf
from ..tokenizer import Tokenizer, load_tokenizer

COMMAND_SETTINGS = {"help": "Tokenize a prompt with a model's tokenizer (like llama-tokenize)."}


def process_escapes(text: str) -> str:
    r"""\n \r \t \' \" \\ and \xNN, as common's string_process_escapes; other escapes stay."""
    out: list[str] = []
    raw = bytearray()

    def flush() -> None:
        if raw:
            out.append(raw.decode("utf-8", errors="replace"))
            raw.clear()

    i, n = 0, len(text)
    simple = {"n": "\n", "r": "\r", "t": "\t", "'": "'", '"': '"', "\\": "\\"}
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n:
            e = text[i + 1]
            if e in simple:
                flush()
                out.append(simple[e])
                i += 2
                continue
            if e == "x" and i + 3 < n and _is_hex2(text[i + 2:i + 4]):
                raw.append(int(text[i + 2:i + 4], 16))  # a byte: may start a UTF-8 sequence
                i += 4
                continue
            flush()
            out.append(c + e)
            i += 2
            continue
        flush()
        out.append(c)
        i += 1
    flush()
    return "".join(out)


def _is_hex2(s: str) -> bool:
    return len(s) == 2 and all(ch in "0123456789abcdefABCDEF" for ch in s)


def format_tokens(tok: Tokenizer, ids: list[int]) -> str:
    """llama-tokenize's listing: `%6d -> 'piece'`, special pieces shown."""
    lines = []
    for tid in ids:
        piece = tok.token_to_piece(tid, special=True)
        try:
            lines.append(f"{tid:6d} -> '{piece.decode('utf-8')}'")
        except UnicodeDecodeError:  # half a character: show the bytes, as llama-tokenize on Windows
            lines.append(f"{tid:6d} -> '<{' '.join(f'{b:02x}' for b in piece)}>' (utf-8 decode failure)")
    return "\n".join(lines)


def _read_file(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        raise LlamacliError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise LlamacliError(f"{path}: is a directory") from None
    except OSError as e:
        raise LlamacliError(f"{path}: cannot be read ({e.strerror})") from None


def _jsonl_texts(lines: list[str], source: str) -> list[str]:
    texts = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            raise LlamacliError(f"{source}:{n}: not valid JSON ({e.msg})") from None
        if not isinstance(value, str):
            raise LlamacliError(f"{source}:{n}: expected a JSON string, got {type(value).__name__}")
        texts.append(value)
    return texts


def command(
    model: Path = typer.Option(..., "-m", "--model", help="GGUF model file"),
    prompt: Optional[str] = typer.Option(None, "-p", "--prompt", help="text to tokenize"),
    file: Optional[Path] = typer.Option(None, "-f", "--file", help="read the text from a file"),
    ids: bool = typer.Option(False, "--ids", help="only print the ids, as a Python list"),
    no_bos: bool = typer.Option(False, "--no-bos", help="do not add BOS even if the model wants it"),
    no_parse_special: bool = typer.Option(False, "--no-parse-special",
                                          help="treat special-token text as plain text"),
    jsonl: bool = typer.Option(False, "--jsonl",
                               help="each line of stdin (or -f) is a JSON string; print a JSON array of ids per line"),
    show_count: bool = typer.Option(False, "--show-count", help="print the number of tokens"),
    no_escape: bool = typer.Option(False, "--no-escape", help=r"do not process \n, \t, \xNN ... in the text"),
) -> None:
    if prompt is not None and file is not None:
        raise LlamacliError("give either -p/--prompt or -f/--file, not both")
    if jsonl and prompt is not None:
        raise LlamacliError("--jsonl reads stdin or -f/--file, not -p/--prompt")
    if not jsonl and prompt is None and file is None:
        raise LlamacliError("nothing to tokenize: give -p/--prompt or -f/--file")

    # read the input before the (slow) model, so bad input fails fast
    if jsonl:
        if file is not None:
            texts = _jsonl_texts(_read_file(file).splitlines(), str(file))
        else:
            texts = _jsonl_texts(sys.stdin.read().splitlines(), "<stdin>")
    else:
        text = prompt if prompt is not None else _read_file(file)
        texts = [text if no_escape else process_escapes(text)]

    tok = load_tokenizer(open_gguf(model))
    add_special = not no_bos
    parse_special = not no_parse_special
    for text in texts:
        tokens = tok.encode(text, add_special=add_special, parse_special=parse_special)
        if jsonl:
            print(json.dumps(tokens))
        elif ids:
            print("[" + ", ".join(str(t) for t in tokens) + "]")
        else:
            if tokens:
                print(format_tokens(tok, tokens))
        if show_count:
            print(f"Total number of tokens: {len(tokens)}")
