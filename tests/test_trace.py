"""`llamacli trace` (llama-eval-callback's tensors) and --compare, against llama-eval-callback's
own output for SmolLM2 (the AVX2 build; tests/golden/trace/smollm2_evalcb.txt keeps the name and
sum lines of its tensors of blocks 0 and 1 and of the output)."""

import numpy as np

from llamacli import trace as tr
from llamacli.cli import main

PROMPT = "The old lighthouse keeper climbed the stairs"  # the prompt the golden file was made with


def run(capsys, *args):
    code = main(["trace", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_compare_finds_llama_cpps_sums(smollm2_path, golden, capsys):
    code, out, err = run(capsys, "-m", smollm2_path, "-p", PROMPT, "-c", 512,
                         "--compare", golden / "trace" / "smollm2_evalcb.txt")
    assert code == 0, err
    assert out.startswith("all 22 tensors llama.cpp also names have its sums")  # blocks 0-1, result_*


def test_compare_stops_at_the_first_difference(smollm2_path, golden, capsys, tmp_path):
    text = (golden / "trace" / "smollm2_evalcb.txt").read_text()
    lines = text.splitlines()
    i = next(k for k, line in enumerate(lines) if "ffn_out-1 = " in line)
    lines[i + 1] = "    sum = 1.000000"
    bad = tmp_path / "changed.txt"
    bad.write_text("\n".join(lines))
    code, out, err = run(capsys, "-m", smollm2_path, "-p", PROMPT, "-c", 512, "--compare", bad)
    assert code == 1
    assert out.splitlines()[0].startswith("first difference at tensor ")
    assert "ffn_out-1: sum " in out and "1.000000 in llama.cpp" in out


def test_printed_tensors_read_back_with_their_sums(smollm2_path, capsys, tmp_path):
    code, out, err = run(capsys, "-m", smollm2_path, "-p", "The old", "-c", 64)
    assert code == 0, err
    dump = tmp_path / "ours.txt"
    dump.write_text(out)
    recs = tr.read_eval_callback(dump)
    assert len(recs) == 30 * 10 + 2 and recs[-1][0] == "result_output"  # 10 a block, then the head
    # a sum is the float32 running sum in memory order, as common_debug_print_tensor's
    x = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    want = np.float32(0)
    for v in x:
        want = np.float32(want + v)
    assert tr._record("t", 0, x.reshape(10, 100)).sum == "%f" % want


def test_bad_input_is_one_line(smollm2_path, capsys, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("nothing here\n")
    for args in (["--compare", tmp_path / "missing.txt"], ["--compare", empty], []):
        code, out, err = run(capsys, "-m", smollm2_path, *(["-p", "x"] if args else []), *args)
        assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
