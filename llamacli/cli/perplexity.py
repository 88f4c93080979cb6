"""`llamacli perplexity`: perplexity of a model over a text, as llama.cpp's llama-perplexity.

The running estimate after each chunk (`[1]39.9077,[2]41.6182,...`) and the final
`Final estimate: PPL = x +/- y` go to stdout in llama-perplexity's format; progress and timing
go to stderr (a tqdm bar only on a terminal). --save-logits keeps the log-probabilities for a
later --kl-divergence-base run, which prints llama-perplexity --kl-divergence's table and
statistics instead.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from ..errors import LlamacliError
from .run import check_flash_attn, default_threads, flash_attn_option

COMMAND_SETTINGS = {"help": "Perplexity over a text, or KL divergence against saved logits (like llama-perplexity)."}

DEFAULT_CTX = 512  # llama-perplexity's default -c

KL_HEADER = ("chunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence"
             "              Δp RMS            Same top p")


def _info(line: str) -> None:
    print(f"llamacli: {line}", file=sys.stderr)


def _bar(total: int):
    from tqdm import tqdm

    return tqdm(total=total, unit="chunk", file=sys.stderr, leave=False, disable=not sys.stderr.isatty())


def _rate(n_tokens: int, seconds: float) -> str:
    return f"{n_tokens} tokens in {seconds:.1f} s ({n_tokens / seconds:.1f} tokens/s)" if seconds > 0 else ""


def _print_kl_stats(s: dict) -> None:
    """The three blocks llama-perplexity --kl-divergence prints at the end."""
    pr = print
    pr("====== Perplexity statistics ======")
    pr(f"Mean PPL(Q)                   : {s['ppl']:10.6f} ± {s['ppl_stderr']:10.6f}")
    pr(f"Mean PPL(base)                : {s['ppl_base']:10.6f} ± {s['ppl_base_stderr']:10.6f}")
    pr(f"Cor(ln(PPL(Q)), ln(PPL(base))): {100 * s['ppl_cor']:6.2f}%")
    pr(f"Mean ln(PPL(Q)/PPL(base))     : {s['ln_ppl_ratio']:10.6f} ± {s['ln_ppl_ratio_stderr']:10.6f}")
    pr(f"Mean PPL(Q)/PPL(base)         : {s['ppl_ratio']:10.6f} ± {s['ppl_ratio_stderr']:10.6f}")
    pr(f"Mean PPL(Q)-PPL(base)         : {s['ppl_diff']:10.6f} ± {s['ppl_diff_stderr']:10.6f}")
    pr()
    pr("====== KL divergence statistics ======")
    pr(f"Mean    KLD: {s['kld_mean']:10.6f} ± {s['kld_mean_stderr']:10.6f}")
    pr(f"Maximum KLD: {s['kld_max']:10.6f}")
    for q in ("99.9", "99", "95", "90"):
        pr(f"{float(q):4.1f}%   KLD: {s['kld_percentiles'][q]:10.6f}")
    pr(f"Median  KLD: {s['kld_median']:10.6f}")
    for q in ("10", "5", "1", "0.1"):
        pr(f"{float(q):4.1f}%   KLD: {s['kld_percentiles'][q]:10.6f}")
    pr(f"Minimum KLD: {s['kld_min']:10.6f}")
    pr()
    pr("====== Token probability statistics ======")
    pr(f"Mean    Δp: {100 * s['dp_mean']:6.3f} ± {100 * s['dp_mean_stderr']:5.3f} %")
    pr(f"Maximum Δp: {100 * s['dp_max']:6.3f}%")
    for q in ("99.9", "99", "95", "90", "75"):
        pr(f"{float(q):4.1f}%   Δp: {100 * s['dp_percentiles'][q]:6.3f}%")
    pr(f"Median  Δp: {100 * s['dp_median']:6.3f}%")
    for q in ("25", "10", "5", "1", "0.1"):
        pr(f"{float(q):4.1f}%   Δp: {100 * s['dp_percentiles'][q]:6.3f}%")
    pr(f"Minimum Δp: {100 * s['dp_min']:6.3f}%")
    pr(f"RMS Δp    : {100 * s['dp_rms']:6.3f} ± {100 * s['dp_rms_stderr']:5.3f} %")
    pr(f"Same top p: {100 * s['same_top']:6.3f} ± {100 * s['same_top_stderr']:5.3f} %")


def command(
    model: Path = typer.Option(..., "-m", "--model", help="GGUF model file."),
    file: Optional[Path] = typer.Option(None, "-f", "--file", help="Text to score (not needed with --kl-divergence-base)."),
    ctx_size: Optional[int] = typer.Option(None, "-c", "--ctx-size",
                                           help=f"Tokens per chunk (default {DEFAULT_CTX}; with --kl-divergence-base, the saved one)."),
    batch_size: int = typer.Option(512, "-b", "--batch-size", help="Tokens evaluated per micro-batch."),
    threads: int = typer.Option(default_threads(), "-t", "--threads", help="Threads."),
    flash_attn: str = flash_attn_option(),
    chunks: int = typer.Option(-1, "--chunks", help="Score at most this many chunks (-1: all)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of the text report."),
    save_logits: Optional[Path] = typer.Option(None, "--save-logits",
                                               help="Save tokens and log-probabilities to this .npz (for --kl-divergence-base)."),
    kl_base: Optional[Path] = typer.Option(None, "--kl-divergence-base",
                                           help="Compare this model with the log-probabilities saved in this .npz."),
) -> None:
    """Perplexity over the second half of each chunk of a text, as llama-perplexity computes it."""
    from .. import perplexity as ppl  # numpy only; the engine loads below

    flash_attn = check_flash_attn(flash_attn)
    for name, v in (("-t", threads), ("-b", batch_size)):
        if v < 1:
            raise LlamacliError(f"{name} must be at least 1, got {v}")
    if chunks == 0 or chunks < -1:
        raise LlamacliError(f"--chunks must be positive or -1 (all), got {chunks}")
    if save_logits is not None and kl_base is not None:
        raise LlamacliError("give either --save-logits or --kl-divergence-base, not both")
    if save_logits is not None and not save_logits.absolute().parent.is_dir():
        raise LlamacliError(f"{save_logits}: cannot write there, its folder does not exist")
    if not model.is_file():
        raise LlamacliError(f"{model}: no such model file")

    if kl_base is not None:
        _kl(ppl, model, kl_base, file, ctx_size, batch_size, threads, chunks, as_json, flash_attn)
        return
    if file is None:
        raise LlamacliError("nothing to score: give the text with -f/--file")
    n_ctx = DEFAULT_CTX if ctx_size is None else ctx_size
    ppl.check_ctx(n_ctx)

    # the text and its token count first: bad input fails before the (slower) model loads
    from ..gguf_io import open_gguf
    from ..tokenizer import load_tokenizer

    text = ppl.read_text(file)
    tok = load_tokenizer(open_gguf(model))
    tokens = ppl.tokenize_text(tok, text)
    n_chunk = ppl.count_chunks(tokens.shape[0], n_ctx, chunks, source=str(file))
    m = _load(model, n_ctx, batch_size, threads, flash_attn)
    _info(f"calculating perplexity over {n_chunk} chunks, n_ctx={n_ctx}, batch_size={min(batch_size, n_ctx)}, "
          f"threads={threads}")

    bar = _bar(n_chunk)
    stream = not as_json and bar.disable  # with a bar on the terminal, print the line at the end

    def on_chunk(i: int, running: float) -> None:
        bar.update(1)
        bar.set_postfix_str(f"PPL {running:.4f}", refresh=False)
        if stream:
            print(f"[{i}]{running:.4f},", end="", flush=True)

    try:
        res = ppl.perplexity(m, tokens, n_ctx, ppl.bos_of(tok), chunks, save_logits, on_chunk)
    finally:
        bar.close()
    rate = _rate(res.n_chunks * n_ctx, res.seconds)
    if as_json:
        print(json.dumps(res.to_json()))
    else:
        if not stream:
            print("".join(f"[{i + 1}]{v:.4f}," for i, v in enumerate(res.chunk_ppl)), end="")
        print()
        print(f"Final estimate: PPL = {res.ppl:.4f} +/- {res.ppl_stderr:.5f}")
    if res.logits_file:
        _info(f"saved log-probabilities of {res.n_chunks} chunks to {res.logits_file}")
    if rate:
        _info(f"evaluated {rate}")


def _load(model: Path, n_ctx: int, batch_size: int, threads: int, flash_attn: str):
    from ..model.transformer import load_model

    m = load_model(model, n_ctx=n_ctx, n_batch=batch_size, n_threads=threads, flash_attn=flash_attn)
    if n_ctx > m.cfg.n_ctx_train:
        _info(f"warning: model was trained on only {m.cfg.n_ctx_train} context tokens ({n_ctx} specified)")
    return m


def _kl(ppl, model: Path, kl_base: Path, file: Optional[Path], ctx_size: Optional[int], batch_size: int,
        threads: int, chunks: int, as_json: bool, flash_attn: str) -> None:
    """--kl-divergence-base: the base's own tokens through this model (the text is not needed)."""
    if file is not None:
        _info(f"note: {file} is not read; the tokens come from {kl_base}")
    base = ppl.SavedLogits(kl_base)
    try:
        if ctx_size is not None and ctx_size != base.n_ctx:
            raise LlamacliError(f"{kl_base} was computed with -c {base.n_ctx}; drop -c or give -c {base.n_ctx}")
        from ..tokenizer import load_tokenizer

        m = _load(model, base.n_ctx, batch_size, threads, flash_attn)
        tok = load_tokenizer(m.gguf)
        n_chunk = base.n_chunk if chunks < 0 else min(chunks, base.n_chunk)
        _info(f"computing over {n_chunk} chunks, n_ctx={base.n_ctx}, batch_size={min(batch_size, base.n_ctx)}, "
              f"threads={threads}")
        bar = _bar(n_chunk)
        if not as_json:
            print(KL_HEADER)

        def on_chunk(i: int, partial) -> None:
            bar.update(1)
            if not as_json:
                line = partial.chunk_line()
                if bar.disable:
                    print(line, flush=True)
                else:
                    bar.write(line)

        try:
            res = ppl.kl_divergence(m, base, ppl.bos_of(tok), chunks, on_chunk)
        finally:
            bar.close()
    finally:
        base.close()
    stats = res.stats()
    if as_json:
        print(json.dumps(stats))
    else:
        print()
        _print_kl_stats(stats)
    rate = _rate(res.n_chunks * res.n_ctx, res.seconds)
    if rate:
        _info(f"evaluated {rate}")
