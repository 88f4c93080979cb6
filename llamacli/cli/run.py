"""`llamacli run`: complete a prompt, streaming tokens, as llama.cpp's llama-cli / llama-completion.

Flags and defaults follow llama.cpp: the sampler chain (top-k 40, top-p 0.95, min-p 0.05,
temperature 0.8), a random seed unless -s, -c 4096, -b 512, escapes processed in the prompt
(-e, on by default), and the perf summary on stderr at the end, also after Ctrl-C.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from ..errors import LlamacliError
from ..sampling import DEFAULT_SEED, SamplerParams


def process_escapes(text: str) -> str:
    """common's string_process_escapes: \\n \\r \\t \\' \\" \\\\ and \\xNN, on the UTF-8 bytes."""
    src = text.encode("utf-8")
    out = bytearray()
    i = 0
    simple = {ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("'"): b"'", ord('"'): b'"', ord("\\"): b"\\"}
    while i < len(src):
        c = src[i]
        if c == 0x5C and i + 1 < len(src):
            i += 1
            e = src[i]
            if e in simple:
                out += simple[e]
            elif e == ord("x") and i + 2 < len(src) and all(chr(b) in "0123456789abcdefABCDEF" for b in src[i + 1:i + 3]):
                out.append(int(src[i + 1:i + 3], 16))
                i += 2
            else:
                out += b"\\" + bytes([e])
        else:
            out.append(c)
        i += 1
    return out.decode("utf-8", errors="replace")


def default_threads() -> int:
    return max(1, min(os.cpu_count() or 1, 4))


FLASH_ATTN_VALUES = ("on", "off", "auto")


def flash_attn_option():
    """-fa, as llama.cpp's tools take it (auto: on, since ggml's CPU backend runs it)."""
    return typer.Option("auto", "-fa", "--flash-attn", metavar="on|off|auto",
                        help="Flash attention, as llama.cpp's -fa (auto: on for the CPU). The numerics "
                             "follow ggml's flash-attention kernel when on, its soft_max path when off.")


def check_flash_attn(value: str) -> str:
    if value.lower() not in FLASH_ATTN_VALUES:
        raise LlamacliError(f"-fa: expected on, off or auto, got '{value}'")
    return value.lower()


def command(
    model: Path = typer.Option(..., "-m", "--model", help="GGUF model file."),
    prompt: str = typer.Option(None, "-p", "--prompt", help="Prompt text."),
    file: Path = typer.Option(None, "-f", "--file", help="Read the prompt from a file."),
    n_predict: int = typer.Option(-1, "-n", "--n-predict", help="Tokens to generate (-1: until end of generation or a full context)."),
    threads: int = typer.Option(default_threads(), "-t", "--threads", help="Threads."),
    ctx_size: int = typer.Option(4096, "-c", "--ctx-size", help="Context size (0: the model's trained context, capped so the KV cache fits in half the free memory)."),
    batch_size: int = typer.Option(512, "-b", "--batch-size", help="Prompt tokens evaluated per micro-batch."),
    flash_attn: str = flash_attn_option(),
    seed: int = typer.Option(DEFAULT_SEED, "-s", "--seed", help="RNG seed (default: random)."),
    temp: float = typer.Option(0.8, "--temp", help="Temperature (0: greedy)."),
    top_k: int = typer.Option(40, "--top-k", help="Top-k (0: off)."),
    top_p: float = typer.Option(0.95, "--top-p", help="Top-p (1.0: off)."),
    min_p: float = typer.Option(0.05, "--min-p", help="Min-p (0.0: off)."),
    typical: float = typer.Option(1.0, "--typical", help="Locally typical sampling (1.0: off)."),
    repeat_last_n: int = typer.Option(64, "--repeat-last-n", help="Tokens considered by the penalties (0: off, -1: context size)."),
    repeat_penalty: float = typer.Option(1.0, "--repeat-penalty", help="Repetition penalty (1.0: off)."),
    presence_penalty: float = typer.Option(0.0, "--presence-penalty", help="Presence penalty (0.0: off)."),
    frequency_penalty: float = typer.Option(0.0, "--frequency-penalty", help="Frequency penalty (0.0: off)."),
    ignore_eos: bool = typer.Option(False, "--ignore-eos", help="Keep generating past end-of-generation tokens."),
    escape: bool = typer.Option(True, "-e/-E", "--escape/--no-escape", help="Process escapes (\\n, \\t, \\xNN, ...) in the prompt."),
    no_display_prompt: bool = typer.Option(False, "--no-display-prompt", help="Do not print the prompt."),
    conversation: bool = typer.Option(False, "-cnv", "--conversation",
                                      help="Chat with the model through its chat template. Off by default: "
                                           "completion stays the default, so scripts keep working."),
    system_prompt: str = typer.Option(None, "-sys", "--system-prompt", help="System message of the conversation (-cnv)."),
    single_turn: bool = typer.Option(False, "-st", "--single-turn", help="Answer one user turn, then exit (-cnv)."),
    chat_template: str = typer.Option(None, "--chat-template",
                                      help="Chat template (-cnv): a built-in name (chatml, gemma, llama3, phi3, "
                                           "zephyr) or Jinja source. Default: the model's, else chatml."),
    chat_template_file: Path = typer.Option(None, "--chat-template-file", help="Read the Jinja chat template from a file (-cnv)."),
    grammar: str = typer.Option(None, "--grammar", help="GBNF grammar the output must follow (llama.cpp's grammars/README.md)."),
    grammar_file: Path = typer.Option(None, "--grammar-file", help="Read the GBNF grammar from a file."),
    json_schema: str = typer.Option(None, "-j", "--json-schema", help="JSON schema the output must follow (converted to a grammar as llama.cpp does)."),
    json_schema_file: Path = typer.Option(None, "--json-schema-file", help="Read the JSON schema from a file."),
):
    """Complete a prompt, streaming the text; llama.cpp's perf summary goes to stderr.

    With -cnv, chat instead: -p (if given) is the first user turn, then each line read is one
    (interactive with line editing, or piped). /exit, /regen, /clear as in llama-cli."""
    from ..generate import Generator, catch_ctrl_c, choose_context  # the engine loads only when it is needed
    from ..gguf_io import open_gguf

    if not conversation:
        for flag, v in (("-sys", system_prompt), ("-st", single_turn or None), ("--chat-template", chat_template),
                        ("--chat-template-file", chat_template_file)):
            if v is not None:
                raise LlamacliError(f"{flag} needs -cnv (conversation mode is opt-in)")
    if chat_template is not None and chat_template_file is not None:
        raise LlamacliError("give --chat-template or --chat-template-file, not both")
    if chat_template_file is not None:
        chat_template = _read_text(chat_template_file, "chat template file")

    grammar_text = _grammar_text(grammar, grammar_file, json_schema, json_schema_file)

    if prompt is not None and file is not None:
        raise LlamacliError("give the prompt with -p or -f, not both")
    if file is not None:
        prompt = _read_text(file, "prompt file")
    if prompt is None and not conversation:
        prompt = ""
    if escape:
        prompt = process_escapes(prompt) if prompt is not None else None
        system_prompt = process_escapes(system_prompt) if system_prompt is not None else None
    flash_attn = check_flash_attn(flash_attn)
    for name, v in (("-t", threads), ("-b", batch_size)):
        if v < 1:
            raise LlamacliError(f"{name} must be at least 1, got {v}")
    if not 0 <= seed <= 0xFFFFFFFF:
        raise LlamacliError(f"-s must be between 0 and {0xFFFFFFFF}, got {seed}")
    gf = open_gguf(model)  # parsed once, for the context size and for the model
    n_ctx, note = choose_context(gf, ctx_size)
    if note:
        print(f"llamacli: warning: {note}", file=sys.stderr)
    if repeat_last_n < 0:
        repeat_last_n = n_ctx
    params = SamplerParams(temp=temp, top_k=top_k, top_p=top_p, min_p=min_p, typical_p=typical,
                           repeat_last_n=repeat_last_n, repeat_penalty=repeat_penalty,
                           frequency_penalty=frequency_penalty, presence_penalty=presence_penalty, seed=seed)
    gen = Generator(gf, n_ctx=n_ctx, n_batch=batch_size, n_threads=threads, flash_attn=flash_attn)
    catch_ctrl_c()
    compiled = None
    if grammar_text is not None:
        from ..grammar import compile_grammar
        compiled = compile_grammar(grammar_text, gen.tokenizer)
    if conversation:
        _converse(gen, gf, params, prompt, system_prompt, single_turn, chat_template, n_predict, ignore_eos, seed,
                  compiled)
        return
    ids = gen.tokenize_prompt(prompt)
    gen.check_prompt(ids)
    out = sys.stdout
    interrupted = False
    try:
        if not no_display_prompt:
            dec = gen.tokenizer.stream_decoder()
            out.write("".join(dec.feed(t) for t in ids) + dec.flush())
            out.flush()
        dec = gen.tokenizer.stream_decoder()

        def emit(tok: int) -> None:
            text = dec.feed(tok)
            if text:
                out.write(text)
                out.flush()

        gen.generate(ids, n_predict, params, ignore_eos=ignore_eos, on_token=emit, grammar=compiled)
        out.write(dec.flush() + "\n")
        out.flush()
        if gen.context_full:
            print("llamacli: context full, stopping generation", file=sys.stderr)
    except KeyboardInterrupt:
        interrupted = True
        out.write("\n")
        out.flush()
    finally:
        _perf_summary(gen, gen.sampler.seed if hasattr(gen, "sampler") else seed)
    if interrupted:
        raise typer.Exit(130)


def _grammar_text(grammar, grammar_file, json_schema, json_schema_file) -> str | None:
    """The GBNF text from --grammar / --grammar-file / -j / --json-schema-file (at most one)."""
    given = [f for f, v in (("--grammar", grammar), ("--grammar-file", grammar_file), ("-j", json_schema),
                            ("--json-schema-file", json_schema_file)) if v is not None]
    if len(given) > 1:
        raise LlamacliError(f"give one of {', '.join(given)}, not several")
    if grammar_file is not None:
        return _read_text(grammar_file, "grammar file")
    if json_schema_file is not None:
        json_schema = _read_text(json_schema_file, "JSON schema file")
    if json_schema is not None:
        from ..grammar.json_schema import schema_text_to_grammar
        return schema_text_to_grammar(json_schema)
    return grammar


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as e:
        raise LlamacliError(f"{path}: cannot read the {what} ({e.strerror})") from None
    except UnicodeDecodeError:
        raise LlamacliError(f"{path}: the {what} is not UTF-8 text") from None


def _perf_summary(gen, seed: int) -> None:
    from ..generate import system_info

    print("", file=sys.stderr)
    print(f"llamacli: seed = {seed}", file=sys.stderr)
    print(system_info(gen.model), file=sys.stderr)
    for line in gen.perf.lines():
        print(line, file=sys.stderr)


def _converse(gen, gf, params, prompt, system_prompt, single_turn, chat_template, n_predict, ignore_eos, seed,
              grammar=None) -> None:
    from ..chat_template import choose_template
    from ..conversation import Session, converse

    template, note = choose_template(gf, gen.tokenizer, chat_template)
    if note:
        print(f"llamacli: warning: {note}", file=sys.stderr)
    session = Session(gen, template, params, system=system_prompt, n_predict=n_predict, ignore_eos=ignore_eos,
                      grammar=grammar)
    try:
        status = converse(session, first=prompt, single_turn=single_turn)
    finally:
        print("\nExiting...", file=sys.stderr)
        _perf_summary(gen, session.sampler.seed)
    if status:
        raise typer.Exit(status)
