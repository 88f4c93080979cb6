"""`llamacli trace`: every named tensor of a prompt's graph, as llama-eval-callback prints them;
with --compare FILE, the first tensor whose sum differs from llama-eval-callback's output."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from ..errors import LlamacliError
from .run import check_flash_attn, default_threads, flash_attn_option

COMMAND_SETTINGS = {"help": "Print every named tensor of a prompt's graph (like llama-eval-callback), "
                            "or find the first that differs from its output."}


def command(
    model: Path = typer.Option(..., "-m", "--model", help="GGUF model file."),
    prompt: str = typer.Option(None, "-p", "--prompt", help="Prompt text."),
    file: Path = typer.Option(None, "-f", "--file", help="Read the prompt from a file."),
    threads: int = typer.Option(default_threads(), "-t", "--threads", help="Threads."),
    ctx_size: int = typer.Option(4096, "-c", "--ctx-size", help="Context size."),
    batch_size: int = typer.Option(2048, "-b", "--batch-size", help="Prompt tokens per micro-batch (eval-callback's 2048)."),
    flash_attn: str = flash_attn_option(),
    against: Optional[Path] = typer.Option(None, "--compare", metavar="FILE",
                                           help="llama-eval-callback's output for the same prompt: report the first "
                                                "tensor whose sum differs (exit 1), or that all agree."),
) -> None:
    """The tensors of one prompt evaluation, named as llama.cpp's graph names them."""
    from .. import trace as tr
    from ..model.transformer import load_model
    from ..tokenizer import load_tokenizer

    flash_attn = check_flash_attn(flash_attn)
    if prompt is not None and file is not None:
        raise LlamacliError("give the prompt with -p or -f, not both")
    if file is not None:
        try:
            prompt = file.read_text(encoding="utf-8")
        except OSError as e:
            raise LlamacliError(f"{file}: cannot read ({e.strerror})") from None
    if not prompt:
        raise LlamacliError("nothing to trace: give a prompt with -p or -f")
    for name, v in (("-t", threads), ("-b", batch_size), ("-c", ctx_size)):
        if v < 1:
            raise LlamacliError(f"{name} must be at least 1, got {v}")
    theirs = tr.read_eval_callback(against) if against is not None else None
    m = load_model(model, n_ctx=ctx_size, n_batch=min(batch_size, ctx_size), n_threads=threads,
                   flash_attn=flash_attn)
    tokens = load_tokenizer(m.gguf).encode(prompt, add_special=True, parse_special=True)
    if len(tokens) > ctx_size:
        raise LlamacliError(f"prompt is too long ({len(tokens)} tokens, context {ctx_size})")
    recs = tr.trace_prompt(m, tokens)
    if theirs is None:
        for t in recs:
            print(tr.format_tensor(t))
        return
    res = tr.compare(recs, theirs)
    if res.first_diff is None:
        print(f"all {res.compared} tensors llama.cpp also names have its sums "
              f"({len(res.missing)} of ours it does not print: {', '.join(res.missing[:4])}"
              f"{', ...' if len(res.missing) > 4 else ''})")
        return
    t, (name, op, s) = res.first_diff
    print(f"first difference at tensor {res.compared} of {len(recs)}: {t.name}: sum {t.sum} here, "
          f"{s} in llama.cpp ({name} = {op or '?'})")
    print(tr.format_tensor(t))
    sys.stdout.flush()
    raise typer.Exit(1)
