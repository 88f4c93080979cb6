"""`llamacli bench`: structure and consistency of its output, never timings."""

from __future__ import annotations

import csv
import io
import json

import pytest

from llamacli import bench as core
from llamacli.cli import main
from llamacli.profile import Profiler, profile_model

from synthetic import write_tiny_llama

# the fields llama-bench's json / csv printers write, in its order (test::get_fields)
LLAMA_BENCH_FIELDS = [
    "build_commit", "build_number", "cpu_info", "gpu_info", "backends", "model_filename", "model_type",
    "model_size", "model_n_params", "n_batch", "n_ubatch", "n_threads", "cpu_mask", "cpu_strict", "poll",
    "type_k", "type_v", "n_gpu_layers", "n_cpu_moe", "split_mode", "main_gpu", "no_kv_offload", "flash_attn",
    "devices", "tensor_split", "tensor_buft_overrides", "load_mode", "lazy_mode", "embeddings", "no_op_offload",
    "no_host", "repack", "fit_target", "fit_min_ctx", "n_prompt", "n_gen", "n_depth", "test_time", "avg_ns",
    "stddev_ns", "avg_ts", "stddev_ts",
]


def bench(capsys, *args):
    code = main(["bench", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny.gguf")


# -- the core ------------------------------------------------------------------------------------

def test_glibc_rand_matches_c():
    # glibc rand() after srand(1), the generator llama-bench draws its tokens from
    r = core.GlibcRand(1)
    assert [r() for _ in range(5)] == [1804289383, 846930886, 1681692777, 1714636915, 1957747793]


def test_stdev_is_the_sample_standard_deviation():
    assert core.stdev([1.0]) == 0.0
    assert core.stdev([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]) == pytest.approx(2.138089935)
    assert core.mean([1.0, 2.0, 3.0]) == 2.0


def test_ftype_names_as_llama_cpp():
    from gguf import LlamaFileType as F

    assert core.ftype_name(F.MOSTLY_Q4_1) == "Q4_1"
    assert core.ftype_name(F.MOSTLY_Q4_K_M) == "Q4_K - Medium"
    assert core.ftype_name(F.MOSTLY_Q2_K) == "Q2_K - Medium"
    assert core.ftype_name(F.ALL_F32) == "all F32"
    assert core.ftype_name(None) == "unknown, may not work"


def test_test_order_and_names(tiny):
    p = core.BenchParams(models=[str(tiny)], n_prompt=[8, 0], n_gen=[4], n_pg=[(4, 2)], n_threads=[1, 2])
    assert p.tests() == [(str(tiny), 8, 0, 1), (str(tiny), 0, 4, 1), (str(tiny), 4, 2, 1),
                         (str(tiny), 8, 0, 2), (str(tiny), 0, 4, 2), (str(tiny), 4, 2, 2)]
    info = core.ModelInfo("x", "llama ?B Q8_0", 1, 1)
    names = [core.TestResult(info, p_, g, 1, 2048, 512, "").name for p_, g in ((8, 0), (0, 4), (4, 2))]
    assert names == ["pp8", "tg4", "pp4+tg2"]


def test_run_bench_samples_and_statistics(tiny):
    res = core.run_bench(core.BenchParams(models=[str(tiny)], n_prompt=[6], n_gen=[3], n_threads=[1], reps=3))
    assert [(r.n_prompt, r.n_gen) for r in res] == [(6, 0), (0, 3)]
    for r in res:
        assert len(r.samples_ns) == 3 and all(t > 0 for t in r.samples_ns)
        n = r.n_prompt + r.n_gen
        assert r.samples_ts == pytest.approx([1e9 * n / t for t in r.samples_ns])
        assert r.avg_ts == pytest.approx(sum(r.samples_ts) / 3)
        assert r.stddev_ts == pytest.approx(core.stdev(r.samples_ts))
    assert res[0].info.size == sum(t.n_bytes for t in __import__("llamacli.gguf_io").gguf_io.open_gguf(tiny).tensors.values())


# -- the command's formats ---------------------------------------------------------------------------

def test_markdown_table_columns(capsys, tiny):
    code, out, err = bench(capsys, "-m", tiny, "-p", 8, "-n", 2, "-pg", "4,2", "-r", 2, "-t", 1)
    assert code == 0, err
    lines = out.splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["model", "size", "params", "backend", "threads", "test", "t/s"]
    assert set(lines[1]) <= set("|-: ")
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:5]]
    assert [r[5] for r in rows] == ["pp8", "tg2", "pp4+tg2"]
    for r in rows:
        assert r[0].startswith("llama ") and r[1].endswith(" MiB") and r[2].endswith(" M")
        assert r[3] == "CPU" and r[4] == "1"
        avg, sd = r[6].split(" ± ")
        assert float(avg) > 0 and float(sd) >= 0
    assert all(len(ln) == len(lines[0]) for ln in lines[:5])  # aligned as llama-bench's table
    assert lines[-1].startswith("build: ")


def test_json_fields_and_samples(capsys, tiny):
    code, out, err = bench(capsys, "-m", tiny, "-p", 8, "-n", 2, "-r", 3, "-t", 1, "-o", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert len(doc) == 2
    for d in doc:
        assert list(d) == LLAMA_BENCH_FIELDS + ["samples_ns", "samples_ts"]
        assert isinstance(d["avg_ns"], int) and isinstance(d["avg_ts"], float)
        assert isinstance(d["cpu_strict"], bool)
        assert len(d["samples_ns"]) == len(d["samples_ts"]) == 3
        assert d["model_filename"] == str(tiny) and d["n_threads"] == 1
    assert (doc[0]["n_prompt"], doc[0]["n_gen"]) == (8, 0)
    assert (doc[1]["n_prompt"], doc[1]["n_gen"]) == (0, 2)


def test_jsonl_and_csv(capsys, tiny):
    code, out, _ = bench(capsys, "-m", tiny, "-p", 4, "-n", 0, "-r", 1, "-t", 1, "-o", "jsonl")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 1 and list(json.loads(lines[0]))[:len(LLAMA_BENCH_FIELDS)] == LLAMA_BENCH_FIELDS
    code, out, _ = bench(capsys, "-m", tiny, "-p", 4, "-n", 2, "-r", 1, "-t", 1, "-o", "csv")
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == LLAMA_BENCH_FIELDS
    assert len(rows) == 3 and all(len(r) == len(LLAMA_BENCH_FIELDS) for r in rows)
    assert out.splitlines()[1].startswith('"')  # every value quoted, as csv_printer


def test_models_and_threads_as_lists(capsys, tiny, tmp_path):
    other = write_tiny_llama(tmp_path / "other.gguf", n_layer=3)
    code, out, err = bench(capsys, "-m", f"{tiny},{other}", "-p", 4, "-n", 0, "-r", 1, "-t", "1,2", "-o", "jsonl")
    assert code == 0, err
    got = [(d["model_filename"], d["n_threads"]) for d in map(json.loads, out.splitlines())]
    assert got == [(str(tiny), 1), (str(tiny), 2), (str(other), 1), (str(other), 2)]


@pytest.mark.parametrize("args, message", [
    (["-p", "x"], "-p: 'x' is not a number"),
    (["-pg", "4"], "-pg takes PP,TG"),
    (["-t", "0"], "-t values must be at least 1"),
    (["-r", "0"], "-r must be at least 1"),
    (["-o", "xml"], "-o must be one of"),
    (["-p", "0", "-n", "0"], "nothing to run"),
    (["--per-layer", "--kernels"], "cannot be combined"),
    (["--kernels", "--kernel-types", "Q9_9"], "unknown weight type Q9_9"),
])
def test_bad_flags_give_one_line(capsys, tiny, args, message):
    code, out, err = bench(capsys, "-m", tiny, *args)
    assert code != 0
    assert err.count("\n") == 1 and err.startswith("llamacli: error:") and message in err
    assert out == ""


def test_unknown_option_and_missing_model(capsys, tiny):
    code, _, err = bench(capsys, "-m", tiny, "--bogus")
    assert code == 2 and err.count("\n") == 1 and "--bogus" in err
    code, _, err = bench(capsys, "-m", "/nonexistent/model.gguf")
    assert code == 1 and err.count("\n") == 1 and "no such model file" in err
    code, _, err = bench(capsys, "-p", 8)
    assert code == 1 and "no model given" in err


# -- --per-layer ---------------------------------------------------------------------------------------

def _check_step(step: dict, n_layer: int, kind: str):
    names = [r["name"] for r in step["layers"]]
    blocks = [n for n in names if n.startswith("blk.")]
    assert blocks == [f"blk.{i}" for i in range(n_layer)]  # one row per block, in order
    assert names[0] == "input" and "output" in names
    assert ("sampling" in names) == (kind == "decode")
    total = sum(r["ms"] for r in step["layers"]) + step["unattributed_ms"]
    assert total == pytest.approx(step["step_ms"], rel=1e-4, abs=1e-5)
    ops_total = sum(r["ms"] for r in step["ops"]) + step["unattributed_ms"]
    assert ops_total == pytest.approx(step["step_ms"], rel=1e-4, abs=1e-5)
    assert step["unattributed_ms"] >= 0
    ops = {r["name"]: r for r in step["ops"]}
    for op in ("attn_norm", "q_proj", "k_proj", "v_proj", "rope", "attention", "o_proj", "ffn_norm", "gate",
               "up", "glu", "down", "output_norm", "output"):
        assert op in ops, op
    for op in ("q_proj", "k_proj", "v_proj", "o_proj", "gate", "up", "down"):
        assert ops[op]["calls"] == n_layer
        assert ops[op]["bytes"] > 0 and ops[op]["flops"] > 0
    assert ops["attention"]["calls"] == n_layer and ops["rope"]["calls"] == 2 * n_layer
    shares = sum(r["share"] for r in step["layers"]) + step["unattributed_share"]
    assert shares == pytest.approx(1.0, abs=1e-3)


def test_per_layer_json_on_tiny(capsys, tiny):
    code, out, err = bench(capsys, "-m", tiny, "--per-layer", "-p", 8, "-r", 2, "-t", 1, "-o", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert set(doc) == {"model_filename", "model_type", "n_threads", "decode", "prefill"}
    _check_step(doc["decode"], 2, "decode")
    _check_step(doc["prefill"], 2, "prefill")
    assert doc["decode"]["n_tokens"] == 1 and doc["decode"]["n_past"] >= 8
    assert doc["prefill"]["n_tokens"] == 8 and doc["prefill"]["n_past"] == 0
    # flops of a projection: 2 * n_in * n_out * tokens (tiny: 64 -> 64 for q)
    q = next(r for r in doc["prefill"]["ops"] if r["name"] == "q_proj")
    assert q["flops"] == 2 * 64 * 64 * 8 * 2  # two blocks


def test_per_layer_markdown(capsys, tiny):
    code, out, err = bench(capsys, "-m", tiny, "--per-layer", "-p", 4, "-r", 1, "-t", 1)
    assert code == 0, err
    assert "### decode" in out and "### prefill" in out
    assert out.count("| unattributed") == 4 and out.count("| measured step") == 4
    assert out.count("| blk.0 ") == 2 and out.count("| blk.1 ") == 2


def test_profiler_restores_the_engine(tiny):
    from llamacli.kernels import ops
    from llamacli.model import transformer
    from llamacli.model.transformer import load_model

    m = load_model(tiny, n_ctx=32, n_batch=8, n_threads=1)
    before = {n: getattr(ops, n) for n in dir(ops) if not n.startswith("_")}
    rnd = transformer.round_to_f16
    a = m.eval([1, 2, 3], want="all").copy()
    with Profiler(m) as p:
        m.state.reset()
        b = m.eval([1, 2, 3], want="all").copy()
    assert (a == b).all()  # timing changes nothing in the numbers
    assert p.log
    assert {n: getattr(ops, n) for n in before} == before and transformer.round_to_f16 is rnd
    assert "_embed" not in vars(m)
    assert all("load" not in vars(act) and "matmul" not in vars(act) for act in m.state.acts.values())


def test_per_layer_on_smollm2(smollm2_path):
    rep = profile_model(smollm2_path, n_threads=1, n_prompt=8, reps=1)
    d = rep.as_dict()
    _check_step(d["decode"], 30, "decode")
    _check_step(d["prefill"], 30, "prefill")
    assert d["model_type"] == "llama 256M Q4_1"  # as llama-bench calls it


def test_smollm2_model_columns(capsys, smollm2_path):
    code, out, err = bench(capsys, "-m", smollm2_path, "-p", 4, "-n", 0, "-r", 1, "-t", 1, "-o", "json")
    assert code == 0, err
    d = json.loads(out)[0]
    # llama-bench reports these for this file: llama_model_size, llama_model_n_params
    assert (d["model_type"], d["model_size"], d["model_n_params"]) == ("llama 256M Q4_1", 96576768, 134515008)


# -- --kernels -----------------------------------------------------------------------------------------

def test_kernels_json(capsys):
    code, out, err = bench(capsys, "--kernels", "--kernel-types", "Q8_0,F32", "--kernel-tokens", "1,2", "-t", 1,
                           "-o", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert {(r["type"], r["n_tokens"]) for r in rows} == {(t, n) for t in ("Q8_0", "F32") for n in (1, 2)}
    for r in rows:
        assert set(r) >= {"type", "act", "shape", "n_in", "n_out", "n_tokens", "weight_bytes", "time_us",
                          "gb_s", "gflop_s", "n_threads"}
        assert r["gflop_s"] == pytest.approx(2 * r["n_in"] * r["n_out"] * r["n_tokens"] / (r["time_us"] * 1e3),
                                             rel=1e-2)


def test_kernels_covers_every_type(capsys):
    from llamacli.kernels.dot import DOTS

    res = core.bench_kernels(1, n_tokens=(1,), shapes=[("tiny", 256, 8)], min_time=0.0)
    assert sorted(r.qtype for r in res) == sorted(t.name for t in DOTS)
    table = core.render_kernels(res, "md", 1)
    assert table.splitlines()[0].split("|")[1].strip() == "type"
