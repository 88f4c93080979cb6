"""`llamacli imatrix`: an importance matrix over a text, as llama.cpp's llama-imatrix.

Glue over `llamacli.imatrix`. With -f the model runs over the text chunk by chunk and the
collected sums are written to -o (GGUF by default, the legacy format with --output-format dat),
every --output-frequency chunks and at the end; --in-file files are merged in first. Without
-f the --in-file files are only combined (or converted) into -o. --show-statistics prints the
per-tensor statistics of one --in-file. The running perplexity goes to stdout as llama-imatrix
prints it; a progress bar only on a terminal.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import LlamacliError
from .run import check_flash_attn, default_threads, flash_attn_option

COMMAND_SETTINGS = {"help": "Compute an importance matrix over a text (like llama-imatrix), merge or show one."}


def _info(line: str) -> None:
    print(f"llamacli: {line}", file=sys.stderr)


def command(
    model: Optional[Path] = typer.Option(None, "-m", "--model", help="GGUF model file."),
    file: Optional[Path] = typer.Option(None, "-f", "--file", help="Text to run the model over."),
    ctx_size: int = typer.Option(512, "-c", "--ctx-size", help="Tokens per chunk."),
    chunks: int = typer.Option(-1, "--chunks", help="Process at most this many chunks (-1: all)."),
    skip_chunks: int = typer.Option(0, "--chunk", help="Skip this many chunks at the start of the text."),
    batch_size: int = typer.Option(2048, "-b", "--batch-size", help="Tokens a call (llama-imatrix's -b)."),
    threads: int = typer.Option(default_threads(), "-t", "--threads", help="Threads."),
    output: str = typer.Option("imatrix.gguf", "-o", "--output", "--output-file", help="Output file."),
    output_format: Optional[str] = typer.Option(None, "--output-format", metavar="gguf|dat",
                                                help="gguf (default) or dat (the legacy format)."),
    process_output: bool = typer.Option(False, "--process-output", help="Collect output.weight too."),
    in_file: Optional[List[Path]] = typer.Option(None, "--in-file", help="Imatrix file to merge in (repeatable)."),
    save_frequency: int = typer.Option(0, "--save-frequency", help="Also save <out>.at_N every N chunks (0: never)."),
    output_frequency: int = typer.Option(10, "--output-frequency", help="Rewrite the output every N chunks."),
    no_ppl: bool = typer.Option(False, "--no-ppl", help="Do not compute perplexity."),
    show_statistics: bool = typer.Option(False, "--show-statistics", help="Show the statistics of one --in-file."),
    parse_special: bool = typer.Option(False, "--parse-special", help="Parse special tokens in the text."),
    flash_attn: str = flash_attn_option(),
) -> None:
    """Sums of squared activations per weight column, as llama-imatrix collects them."""
    from .. import imatrix as im

    in_files = list(in_file or [])
    flash_attn = check_flash_attn(flash_attn)
    dat = None
    if output_format is not None:
        if output_format.lower() not in ("gguf", "dat"):
            raise LlamacliError(f"--output-format: expected gguf or dat, got '{output_format}'")
        dat = output_format.lower() == "dat"
    if output_frequency < 1:
        raise LlamacliError(f"--output-frequency must be at least 1, got {output_frequency}")
    if save_frequency < 0:
        raise LlamacliError(f"--save-frequency must be 0 or more, got {save_frequency}")
    for name, v in (("-t", threads), ("-b", batch_size)):
        if v < 1:
            raise LlamacliError(f"{name} must be at least 1, got {v}")
    out_parent = Path(output).absolute().parent
    if not out_parent.is_dir():
        raise LlamacliError(f"{output}: cannot write there, its folder does not exist")

    if show_statistics:
        if len(in_files) != 1:
            raise LlamacliError("a single imatrix file is required to compute tensor statistics (--in-file)")
        for line in im.show_statistics(in_files[0], ctx_size, log=_info):
            print(line)
        return
    if ctx_size <= 0:
        raise LlamacliError("imatrix tool requires '--ctx-size' > 0")
    n_ctx = ctx_size
    n_seq = max(1, batch_size // n_ctx)
    if batch_size >= n_ctx and batch_size % n_ctx:
        raise LlamacliError(f"-b {batch_size} must be below -c {n_ctx} or a multiple of it")
    n_batch = min(batch_size, n_seq * n_ctx)

    def log(line: str) -> None:
        print(line, file=sys.stderr)

    collector = im.Collector(output, n_ctx, process_output, dat, output_frequency, save_frequency,
                             str(file) if file is not None else "", log=log)
    for p in in_files:
        _info(f"loading imatrix from '{p}'")
        collector.merge(im.load_imatrix(p), str(p))

    if file is None:
        if not in_files:
            raise LlamacliError("no text (-f) and no precomputed matrices (--in-file) to combine")
        collector.save()
        _info(f"saved {'combined ' if len(in_files) > 1 else ''}imatrix to '{output}'")
        return
    if model is None:
        raise LlamacliError("no model: give it with -m/--model")
    if not model.is_file():
        raise LlamacliError(f"{model}: no such model file")
    if chunks == 0 or chunks < -1:
        raise LlamacliError(f"--chunks must be positive or -1 (all), got {chunks}")

    from .. import perplexity as ppl
    from ..gguf_io import open_gguf
    from ..model.transformer import load_model
    from ..tokenizer import load_tokenizer
    import numpy as np

    text = ppl.read_text(file)
    tok = load_tokenizer(open_gguf(model))
    tokens = np.asarray(tok.encode(text, add_special=True, parse_special=parse_special), np.int64)
    m = load_model(model, n_ctx=n_ctx, n_batch=min(im.N_UBATCH, n_batch), n_threads=threads, flash_attn=flash_attn)
    if n_ctx > m.cfg.n_ctx_train:
        _info(f"warning: model was trained on only {m.cfg.n_ctx_train} context tokens ({n_ctx} specified)")
    collector.n_expert = m.cfg.n_expert
    n_chunk_max = max(0, tokens.shape[0] - max(0, skip_chunks) * n_ctx) // n_ctx
    n_chunk = n_chunk_max if chunks < 0 else min(chunks, n_chunk_max)
    _info(f"computing over {n_chunk} chunks, n_ctx={n_ctx}, batch_size={n_batch}, n_seq={n_seq}")

    from tqdm import tqdm

    bar = tqdm(total=n_chunk, unit="chunk", file=sys.stderr, leave=False, disable=not sys.stderr.isatty())
    stream = bar.disable

    def on_chunk(i: int, running) -> None:
        bar.update(1)
        if running is not None:
            bar.set_postfix_str(f"PPL {running:.4f}", refresh=False)
            if stream:
                print(f"[{i}]{running:.4f},", end="", flush=True)

    try:
        res = im.compute_imatrix(m, tokens, n_ctx, n_batch, ppl.bos_of(tok), collector, chunks, not no_ppl,
                                 skip_chunks, on_chunk)
    finally:
        bar.close()
    if not stream:
        print("".join(f"[{i + 1}]{v:.4f}," for i, v in enumerate(res.chunk_ppl)), end="")
    print()
    if res.ppl is not None:
        if res.ppl_stderr == res.ppl_stderr:  # not NaN
            print(f"Final estimate: PPL = {res.ppl:.4f} +/- {res.ppl_stderr:.5f}")
        else:
            print("Unexpected negative standard deviation of log(prob)")
    collector.save()
    _info(f"stored collected data after {collector.last_chunk} chunks in {output}")
