"""`llamacli quantize` as a user meets it: positional syntax, options, the plan, and failures
that leave nothing behind. A small synthetic llama model keeps these fast; the byte-for-byte
comparison with llama.cpp on the real models is in test_quantize_golden.py.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from gguf import GGUFWriter, LlamaFileType

from llamacli.cli import main
from llamacli.errors import LlamacliError
from llamacli.quantize import quantize_file
from llamacli.quantize.plan import _use_more_bits
from llamacli.quantize.scan import ScannedGGUF

N_LAYER = 8
N_EMBD = 256
N_FF = 512


def _write_model(path, dtype=np.float16, n_embd=N_EMBD, tied=True, poison=None, arch="llama"):
    """A llama-shaped GGUF with random weights; `poison` = (tensor, value) plants one value."""
    rng = np.random.default_rng(0)
    w = GGUFWriter(str(path), arch)
    w.add_block_count(N_LAYER)
    w.add_head_count(8)
    w.add_head_count_kv(2)
    w.add_embedding_length(n_embd)
    w.add_file_type(int(LlamaFileType.MOSTLY_F16))
    w.add_string("general.name", "tiny")

    def t(name, *shape, one_d=False):
        a = (rng.standard_normal(shape) * 0.02).astype(np.float32 if one_d else dtype)
        if poison and poison[0] == name:
            a.flat[5] = poison[1]
        w.add_tensor(name, a)

    t("token_embd.weight", 320, n_embd)
    t("output_norm.weight", n_embd, one_d=True)
    if not tied:
        t("output.weight", 320, n_embd)
    for i in range(N_LAYER):
        p = f"blk.{i}."
        t(p + "attn_norm.weight", n_embd, one_d=True)
        t(p + "attn_q.weight", n_embd, n_embd)
        t(p + "attn_k.weight", 64, n_embd)
        t(p + "attn_v.weight", 64, n_embd)
        t(p + "attn_output.weight", n_embd, n_embd)
        t(p + "ffn_norm.weight", n_embd, one_d=True)
        t(p + "ffn_gate.weight", N_FF, n_embd)
        t(p + "ffn_up.weight", N_FF, n_embd)
        t(p + "ffn_down.weight", n_embd, N_FF)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    return _write_model(d / "tiny-f16.gguf")


@pytest.fixture(scope="module")
def tiny_q8(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("tinyq8") / "tiny-q8_0.gguf"
    quantize_file(tiny, out, "Q8_0", log=None)
    return out


def run(capsys, *args):
    code = main(["quantize", *map(str, args)])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _types(path) -> dict[str, T]:
    return {v.name: v.qtype for v in ScannedGGUF(path).tensors.values()}


# -- positional syntax -------------------------------------------------------------------------------

def test_default_output_name_and_case_insensitive_type(tiny, capsys):
    code, out, err = run(capsys, tiny, "q4_k_m")
    target = tiny.parent / "ggml-model-Q4_K_M.gguf"
    try:
        assert code == 0, err
        assert f"to '{target}' as Q4_K_M" in err
        assert target.exists()
        g = ScannedGGUF(target)
        assert g.get("general.file_type") == LlamaFileType.MOSTLY_Q4_K_M
        assert g.get("general.quantization_version") == 2
        assert g.get("general.name") == "tiny"  # the rest of the metadata is copied
        assert list(g.kv)[-2:] == ["general.quantization_version", "general.file_type"]
    finally:
        target.unlink(missing_ok=True)


def test_output_path_type_number_and_threads(tiny, tmp_path, capsys):
    out = tmp_path / "x.gguf"
    code, _, err = run(capsys, tiny, out, "7", "1")  # 7 = MOSTLY_Q8_0
    assert code == 0, err
    assert "as Q8_0 using 1 threads" in err
    assert set(_types(out).values()) <= {T.Q8_0, T.F32}


def test_bad_type_is_one_line(tiny, tmp_path, capsys):
    code, _, err = run(capsys, tiny, tmp_path / "x.gguf", "Q9_9")
    assert code == 1
    assert err.strip().splitlines()[-1].startswith("llamacli: error: invalid ftype 'Q9_9'")
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_missing_input_is_one_line(tmp_path, capsys):
    code, _, err = run(capsys, tmp_path / "nope.gguf", tmp_path / "x.gguf", "Q8_0")
    assert code == 1 and "no such file" in err and "Traceback" not in err


# -- the plan ---------------------------------------------------------------------------------------

def test_dry_run_prints_the_plan_and_writes_nothing(tiny, capsys):
    before = set(tiny.parent.iterdir())
    code, _, err = run(capsys, "--dry-run", tiny, "Q4_K_M")
    assert code == 0, err
    lines = [l for l in err.splitlines() if l.startswith("[")]
    assert len(lines) == 2 + 9 * N_LAYER
    # llama.cpp's order: tensors of no layer first, then by layer number, then by name
    assert lines[0].startswith("[   1/  74] output_norm.weight")
    assert lines[1].startswith("[   2/  74] token_embd.weight")
    assert "blk.0.attn_k.weight" in lines[2]
    assert "blk.7.ffn_up.weight" in lines[-1]
    assert "model size  =" in err and "quant size  =" in err and "BPW" in err
    assert set(tiny.parent.iterdir()) == before


def test_q4_k_m_mixture_rules(tiny):
    r = quantize_file(tiny, None, "Q4_K_M", dry_run=True, log=None)
    types = {tp.name: tp.dst_type for tp in r.plan.tensors}
    assert types["token_embd.weight"] == T.Q6_K  # tied embeddings take the output rules
    assert types["output_norm.weight"] == T.F32
    for i in range(N_LAYER):
        more = _use_more_bits(i, N_LAYER)
        assert types[f"blk.{i}.attn_v.weight"] == (T.Q6_K if more else T.Q4_K)
        assert types[f"blk.{i}.ffn_down.weight"] == (T.Q6_K if more else T.Q4_K)
        assert types[f"blk.{i}.attn_q.weight"] == T.Q4_K
    assert r.plan.n_fallback == 0


def test_q3_k_m_and_q2_k_rules(tiny):
    types = {tp.name: tp.dst_type for tp in quantize_file(tiny, None, "Q3_K", dry_run=True, log=None).plan.tensors}
    assert [types[f"blk.{i}.attn_v.weight"] for i in range(3)] == [T.Q5_K, T.Q5_K, T.Q4_K]
    assert types["blk.0.attn_output.weight"] == T.Q4_K
    assert types["blk.0.ffn_down.weight"] == T.Q4_K  # n_layer/16 = 0 layers get Q5_K
    types = {tp.name: tp.dst_type for tp in quantize_file(tiny, None, "Q2_K", dry_run=True, log=None).plan.tensors}
    assert types["blk.3.attn_v.weight"] == T.Q4_K  # n_gqa = 8/2 = 4
    assert types["blk.3.ffn_down.weight"] == T.Q3_K
    assert types["blk.3.ffn_up.weight"] == T.Q2_K


def test_fallback_for_rows_not_multiple_of_256(tmp_path, capsys):
    m = _write_model(tmp_path / "w96.gguf", n_embd=96)
    code, _, err = run(capsys, "--dry-run", m, "Q4_K_M")
    assert code == 0, err
    assert (f"warning: {'blk.0.attn_q.weight':<36} - ncols     96 not divisible by 256 "
            "(required for type    q4_K) -> falling back to    q5_0") in err
    r = quantize_file(m, None, "Q4_K_M", dry_run=True, log=None)
    assert f"WARNING: {r.plan.n_fallback} of {len(r.plan.tensors)} tensor(s) required fallback" in err
    assert r.plan.n_fallback == 6 * N_LAYER  # every layer matrix but ffn_down (512 wide)


def test_options_pure_leave_output_overrides(tmp_path):
    m = _write_model(tmp_path / "untied.gguf", tied=False)
    def plan(**kw):
        return {tp.name: tp.dst_type for tp in quantize_file(m, None, "Q4_K_M", dry_run=True, log=None, **kw).plan.tensors}
    assert plan()["output.weight"] == T.Q6_K
    assert plan()["token_embd.weight"] == T.Q4_K  # untied: an ordinary tensor
    assert set(plan(pure=True).values()) == {T.Q4_K, T.F32}
    assert plan(leave_output_tensor=True)["output.weight"] == T.F16
    assert plan(output_tensor_type="q8_0")["output.weight"] == T.Q8_0
    assert plan(token_embedding_type="Q5_0")["token_embd.weight"] == T.Q5_0
    p = plan(tensor_types=[("attn_(q|k)", "q8_0"), ("ATTN_Q", "q4_0")])  # first match wins, any case
    assert p["blk.1.attn_q.weight"] == T.Q8_0 and p["blk.1.attn_k.weight"] == T.Q8_0
    assert p["blk.1.attn_v.weight"] in (T.Q4_K, T.Q6_K)


def test_tensor_type_option_on_the_command_line(tiny, capsys):
    code, _, err = run(capsys, "--dry-run", "--tensor-type", "ffn_down=q8_0", "--tensor-type", "attn_v=Q5_0",
                       tiny, "Q4_K_M")
    assert code == 0, err
    down = [l for l in err.splitlines() if "ffn_down" in l and l.startswith("[")]
    assert down and all(l.endswith("(q8_0)") for l in down)
    assert "blk.0.attn_v.weight                  - applying manual override: q4_K -> q5_0" in err
    code, _, err = run(capsys, "--dry-run", "--tensor-type", "ffn_down", tiny, "Q4_K_M")
    assert code == 1 and "malformed tensor type" in err


def test_q2_k_s_needs_an_imatrix(tiny, tmp_path, capsys):
    code, _, err = run(capsys, tiny, tmp_path / "x.gguf", "Q2_K_S")
    assert code == 1 and "requires an imatrix" in err
    assert list(tmp_path.iterdir()) == []
    code, _, err = run(capsys, "--dry-run", tiny, "Q2_K_S")
    assert code == 0 and "will require an imatrix" in err


# -- requantization -----------------------------------------------------------------------------------

def test_quantized_input_needs_allow_requantize(tiny_q8, tmp_path, capsys):
    out = tmp_path / "re.gguf"
    code, _, err = run(capsys, tiny_q8, out, "Q4_0")
    assert code == 1
    assert "requantizing from type q8_0 is disabled" in err
    assert list(tmp_path.iterdir()) == []
    code, _, err = run(capsys, "--allow-requantize", tiny_q8, out, "Q4_0")
    assert code == 0, err
    assert set(_types(out).values()) == {T.Q4_0, T.Q6_K, T.F32}  # tied token_embd: Q6_K


def test_same_input_and_output_is_refused(tiny, capsys):
    size = tiny.stat().st_size
    code, _, err = run(capsys, tiny, tiny, "Q8_0")
    assert code == 1 and "input and output files are the same" in err
    other = tiny.parent / "." / tiny.name
    code, _, err = run(capsys, tiny, other, "Q8_0")
    assert code == 1 and "input and output files are the same" in err
    assert tiny.stat().st_size == size


# -- failures leave nothing behind -----------------------------------------------------------------------

def test_unwritable_output_dir(tiny, tmp_path, capsys):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    code, _, err = run(capsys, tiny, blocker / "out.gguf", "Q8_0")
    assert code == 1 and "cannot create the output file" in err
    code, _, err = run(capsys, tiny, tmp_path / "missing" / "out.gguf", "Q8_0")
    assert code == 1 and "cannot create the output file" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-a-dir"]


@pytest.mark.parametrize("exc", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_full_disk_or_ctrl_c_mid_write_leaves_nothing(tiny, tmp_path, monkeypatch, exc):
    from llamacli import gguf_io

    calls = {"n": 0}
    real = gguf_io.AtomicGGUFWriter._write_raw

    def failing(self, data):
        calls["n"] += 1
        if calls["n"] == 20:
            if isinstance(exc, OSError):
                raise LlamacliError(f"{self.path}: cannot write ({exc.strerror})")
            raise exc
        return real(self, data)

    monkeypatch.setattr(gguf_io.AtomicGGUFWriter, "_write_raw", failing)
    out = tmp_path / "out.gguf"
    out.write_bytes(b"previous")  # an existing file survives a failed run untouched
    with pytest.raises((LlamacliError, KeyboardInterrupt)):
        quantize_file(tiny, out, "Q4_0", log=None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.gguf"]
    assert out.read_bytes() == b"previous"


def test_nan_input_is_refused_like_llama_cpp(tmp_path, capsys):
    m = _write_model(tmp_path / "nan.gguf", poison=("blk.2.ffn_up.weight", np.nan))
    code, _, err = run(capsys, m, tmp_path / "out.gguf", "Q4_0")
    assert code == 1 and "tensor 'blk.2.ffn_up.weight' has invalid data" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.gguf"]


def test_f32_value_too_large_for_f16_fails_validation(tmp_path, capsys):
    m = _write_model(tmp_path / "big.gguf", dtype=np.float32, poison=("blk.1.attn_q.weight", 1e6))
    code, _, err = run(capsys, m, tmp_path / "out.gguf", "F16")
    assert code == 1 and "quantized data validation failed" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.gguf"]
    out = tmp_path / "ok.gguf"
    assert run(capsys, m, out, "Q8_0")[0] == 0  # 1e6 / 127 fits an fp16 scale
    assert os.path.getsize(out) > 0


def test_file_size_limit_mid_write_is_one_clean_error(tiny, tmp_path):
    """A real write failure (RLIMIT_FSIZE, like a full disk): one line, status 1, no output."""
    import resource
    import signal
    import subprocess
    import sys

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so the write fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    out = tmp_path / "out.gguf"
    p = subprocess.run([sys.executable, "-m", "llamacli", "quantize", str(tiny), str(out), "F32"],
                       capture_output=True, text=True, preexec_fn=limit, timeout=300)
    assert p.returncode == 1, p.stderr
    lines = [l for l in p.stderr.splitlines() if l.startswith("llamacli: error:")]
    assert len(lines) == 1 and "Traceback" not in p.stderr
    assert not out.exists()
    assert [x.name for x in tmp_path.iterdir()] == []
