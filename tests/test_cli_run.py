"""`llamacli run` driven like a user would, through the CLI entry point."""

import numpy as np
import pytest

from llamacli.cli import main

from synthetic import write_tiny_llama


def run(capsys, *args):
    code = main(["run", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny.gguf")


def test_paris(capsys, smollm2_path):
    code, out, err = run(capsys, "-m", smollm2_path, "-p", "The capital of France is", "-n", 32, "--temp", 0)
    assert code == 0
    assert out.startswith("The capital of France is Paris.")
    assert "prompt eval time" in err and "eval time" in err and "load time" in err


def test_seed_reproducible_across_runs_and_threads(capsys, smollm2_path):
    args = ["-m", smollm2_path, "-p", "Once upon a time", "-n", 16, "-s", 42, "-c", 256]
    outs = [run(capsys, *args, "-t", t)[1] for t in (1, 2, 2)]
    assert outs[0] == outs[1] == outs[2]
    other = run(capsys, *args[:-2], "-s", 43, "-t", 2)[1]
    assert other != outs[0]


def test_tiny_model_runs_and_no_display_prompt(capsys, tiny):
    code, out, err = run(capsys, "-m", tiny, "-p", "the the", "-n", 8, "-s", 1, "--no-display-prompt", "--ignore-eos")
    assert code == 0
    assert not out.startswith("the the")
    assert "eval time =" in err


def _one_line_error(code, err):
    assert code != 0
    assert "Traceback" not in err
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("llamacli: error:")


def test_bad_inputs(capsys, tmp_path, tiny):
    missing = tmp_path / "nope.gguf"
    _one_line_error(*run(capsys, "-m", missing, "-p", "x")[::2])
    text = tmp_path / "text.gguf"
    text.write_text("hello, not a model")
    _one_line_error(*run(capsys, "-m", text, "-p", "x")[::2])
    truncated = tmp_path / "trunc.gguf"
    truncated.write_bytes(tiny.read_bytes()[: tiny.stat().st_size // 2])
    _one_line_error(*run(capsys, "-m", truncated, "-p", "x")[::2])
    header_only = tmp_path / "head.gguf"
    header_only.write_bytes(tiny.read_bytes()[:200])
    _one_line_error(*run(capsys, "-m", header_only, "-p", "x")[::2])
    _one_line_error(*run(capsys, "-m", tiny, "-p", "the " * 200, "-c", 64)[::2])
    _one_line_error(*run(capsys, "-m", tiny, "-p", "x", "-t", 0)[::2])
    code, _, err = run(capsys, "-m", tiny, "-p", "x", "--temp", "hot")
    _one_line_error(code, err)


def test_unsupported_architecture(capsys, tmp_path):
    path = write_tiny_llama(tmp_path / "mamba.gguf", arch="mamba")
    code, _, err = run(capsys, "-m", path, "-p", "x")
    _one_line_error(code, err)
    assert "mamba" in err and "llama" in err


def test_escapes():
    from llamacli.cli.run import process_escapes
    assert process_escapes(r"a\nb\tc\\d\x41\q") == "a\nb\tc\\dA\\q"


def test_ctrl_c_prints_summary_and_exits_130(tmp_path):
    """SIGINT during generation: the text so far, the perf summary, exit status 130."""
    import os
    import signal
    import subprocess
    import sys
    import time

    model = write_tiny_llama(tmp_path / "tiny.gguf", n_embd=256, n_ff=1024, n_layer=4)
    proc = subprocess.Popen(
        [sys.executable, "-m", "llamacli", "run", "-m", str(model), "-p", "the", "-n", "-1", "--ignore-eos",
         "-c", "4096", "-t", "1", "-s", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # a job started in the background inherits SIGINT ignored; a terminal's Ctrl-C does not
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # wait until tokens stream, then interrupt
    first = proc.stdout.read(8)
    assert first
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "eval time" in err and "Traceback" not in err


def test_context_whose_kv_cache_cannot_fit_is_refused(capsys, tiny):
    code, _, err = run(capsys, "-m", tiny, "-p", "the", "-c", 2_000_000_000)
    _one_line_error(code, err)
    assert "MiB" in err and "KV cache" in err


def test_n_beyond_context_stops_at_a_full_context(capsys, tiny):
    code, out, err = run(capsys, "-m", tiny, "-p", "the", "-n", 500, "-c", 32, "-s", 1, "--ignore-eos")
    assert code == 0
    assert "context full" in err
    assert "/    32 tokens" in err  # prompt + generated tokens fill the 32 positions


@pytest.mark.parametrize("cmd", ["bench", "perplexity"])
def test_ctrl_c_in_bench_and_perplexity_exits_130_leaving_no_output(tmp_path, golden, cmd):
    import signal
    import subprocess
    import sys
    import time

    model = write_tiny_llama(tmp_path / "tiny.gguf", n_embd=256, n_ff=1024, n_layer=4)
    saved = tmp_path / "logits.npz"
    args = {"bench": ["bench", "-m", str(model), "-p", "256", "-n", "256", "-r", "50", "-t", "1"],
            "perplexity": ["perplexity", "-m", str(model), "-f", str(golden / "reference.txt"), "-c", "64",
                           "-t", "1", "--save-logits", str(saved)]}[cmd]
    # a first, short run compiles and caches the kernels: a SIGINT that lands while Numba
    # compiles is swallowed by llvmlite's callback
    warm = {"bench": ["-r", "1", "-n", "4"], "perplexity": ["--chunks", "1"]}[cmd]
    subprocess.run([sys.executable, "-m", "llamacli", *args, *warm], capture_output=True, timeout=600)
    saved.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "llamacli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(4)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.gguf"]
