"""`llamacli inspect`: agreement with gguf-py (GGUFReader and gguf-dump itself), the summary,
the options, and one-line errors on bad input.

Opening a real model takes seconds (GGUFReader parses every vocabulary string in Python),
so each real file is loaded once per module (SmolLM2 also by an independent GGUFReader;
Gemma 3 is checked against the reader inside the inspection) and most CLI behaviour runs on a small
synthetic GGUF written with gguf.GGUFWriter.
"""

from __future__ import annotations

import argparse
import io
import json
import re

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader, GGUFWriter
from gguf.quants import quantize
from gguf.scripts import gguf_dump

from llamacli import inspect as core
from llamacli.cli import inspect as cli_inspect
from llamacli.cli import main

TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}"


def write_synthetic(path, *, tied: bool = True, template: str | None = TEMPLATE):
    """A tiny llama-shaped GGUF with one key/value of every type and F32, F16 and Q8_0 tensors."""
    w = GGUFWriter(str(path), "llama")
    w.add_name("Tiny `test` model")
    w.add_block_count(1)
    w.add_context_length(128)
    w.add_embedding_length(16)
    w.add_file_type(7)  # MOSTLY_Q8_0
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list([f"tok{i}" for i in range(8)] + ["`tick`", "x" * 70])
    w.add_token_types([1] * 10)
    if template is not None:
        w.add_chat_template(template)
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -5)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -300)
    w.add_uint32("test.u32", 4_000_000_000)
    w.add_int32("test.i32", -7)
    w.add_uint64("test.u64", 2**40)
    w.add_int64("test.i64", -(2**40))
    w.add_float32("test.f32", 0.25)
    w.add_float64("test.f64", 1e-300)
    w.add_bool("test.bool", True)
    w.add_string("test.long", "y" * 100)
    w.add_array("test.floats", [0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5])
    w.add_array("test.bools", [True, False])

    rng = np.random.default_rng(0)
    w.add_tensor("token_embd.weight", rng.standard_normal((10, 16), dtype=np.float32))  # (n_vocab, n_embd)
    w.add_tensor("blk.0.attn_q.weight", rng.standard_normal((16, 16)).astype(np.float16))
    q8 = quantize(rng.standard_normal((16, 32), dtype=np.float32), GGMLQuantizationType.Q8_0)  # (rows, bytes/row)
    w.add_tensor("blk.0.ffn_down.weight", q8, raw_dtype=GGMLQuantizationType.Q8_0)
    w.add_tensor("output_norm.weight", np.ones(16, dtype=np.float32))
    if not tied:
        w.add_tensor("output.weight", rng.standard_normal((10, 16), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("inspect") / "tiny.gguf")


@pytest.fixture(scope="module")
def smollm2(smollm2_path):
    return smollm2_path, core.load(smollm2_path), GGUFReader(smollm2_path)


@pytest.fixture(scope="module")
def gemma3(gemma3_path):
    # 262k vocabulary strings make a second GGUFReader too slow: check against the one inside
    insp = core.load(gemma3_path)
    return gemma3_path, insp, insp.reader


def run(capsys, *args):
    code = main(["inspect", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


# -- agreement with gguf-py -------------------------------------------------------------------


def check_against_reader(doc: dict, reader: GGUFReader):
    """Every key and tensor of the --json-array document matches GGUFReader's view."""
    assert doc["endian"] == reader.endianess.name
    assert list(doc["metadata"]) == list(reader.fields)
    for i, (key, f) in enumerate(reader.fields.items()):
        m = doc["metadata"][key]
        assert (m["index"], m["type"], m["offset"]) == (i, f.types[0].name, f.offset), key
        assert m["value"] == f.contents(), key
        if len(f.types) > 1:
            assert m["array_types"] == [t.name for t in f.types[1:]], key
    assert list(doc["tensors"]) == [t.name for t in reader.tensors]
    for i, t in enumerate(reader.tensors):
        d = doc["tensors"][t.name]
        assert d == {"index": i, "shape": t.shape.tolist(), "type": t.tensor_type.name, "offset": t.field.offset}


def gguf_dump_output(capsys, fn, reader, filename, json_array=False) -> str:
    """What gguf-dump itself prints, called in-process on an already open reader."""
    args = argparse.Namespace(model=filename, no_tensors=False, json_array=json_array)
    capsys.readouterr()
    fn(reader, args)
    return capsys.readouterr().out


def test_synthetic_json_agrees_with_reader(synthetic, capsys):
    code, out, err = run(capsys, synthetic, "--json-array")
    assert code == 0 and err == ""
    check_against_reader(json.loads(out), GGUFReader(synthetic))


@pytest.mark.real
@pytest.mark.parametrize("model", ["smollm2", "gemma3"])
def test_real_json_agrees_with_reader(model, request):
    path, insp, reader = request.getfixturevalue(model)
    check_against_reader(core.gguf_dump_json(insp, str(path), json_array=True), reader)


@pytest.mark.parametrize("json_array", [False, True])
def test_json_is_gguf_dumps(synthetic, capsys, json_array):
    code, out, _ = run(capsys, synthetic, "--json-array" if json_array else "--json")
    assert code == 0
    ref = gguf_dump_output(capsys, gguf_dump.dump_metadata_json, GGUFReader(synthetic), str(synthetic), json_array)
    assert out == ref + "\n"  # byte for byte, plus a final newline
    doc = json.loads(out)
    assert ("value" in doc["metadata"]["tokenizer.ggml.tokens"]) == json_array
    assert doc["metadata"]["tokenizer.ggml.tokens"]["array_types"] == ["STRING"]


def test_markdown_is_gguf_dumps(synthetic, capsys):
    code, out, _ = run(capsys, synthetic, "--markdown")
    assert code == 0
    assert out == gguf_dump_output(capsys, gguf_dump.dump_markdown_metadata, GGUFReader(synthetic), str(synthetic))


@pytest.mark.real
def test_markdown_is_gguf_dumps_real(smollm2, capsys):
    path, insp, reader = smollm2
    ref = gguf_dump_output(capsys, gguf_dump.dump_markdown_metadata, reader, str(path))
    assert core.gguf_dump_markdown(insp, str(path), list(insp.tensors)) == ref


# -- the summary ------------------------------------------------------------------------------


@pytest.mark.real
def test_smollm2_summary(smollm2):
    path, insp, reader = smollm2
    s = insp.summary
    assert (s.architecture, s.tokenizer, s.tokenizer_pre) == ("llama", "gpt2", "smollm")
    assert len(insp.tensors) == insp.header.tensor_count == 272
    assert s.tied_output and "output.weight" not in {t.name for t in insp.tensors}
    assert s.vocab_size == 49152 and s.context_length == 8192 and s.n_layers == 30
    assert s.n_params == sum(t.n_elements for t in reader.tensors)
    assert s.tensor_bytes == sum(t.n_bytes for t in reader.tensors)
    assert s.file_size == path.stat().st_size
    assert s.bpw == pytest.approx(s.tensor_bytes * 8 / s.n_params)
    assert {t.qtype.name for t in s.types} == {t.tensor_type.name for t in reader.tensors}
    assert sum(t.tensors for t in s.types) == 272 and sum(t.bytes for t in s.types) == s.tensor_bytes
    assert s.chat_template == reader.fields["tokenizer.chat_template"].contents()
    assert insp.header.version == 3 and insp.header.endian == "LITTLE"
    assert insp.header.alignment == reader.alignment and insp.header.data_offset == reader.data_offset


@pytest.mark.real
def test_gemma3_summary(gemma3):
    path, insp, reader = gemma3
    s = insp.summary
    assert s.architecture == "gemma3" and s.tokenizer == "llama"
    assert s.vocab_size == len(reader.fields["tokenizer.ggml.tokens"].data)
    assert s.tied_output == ("output.weight" not in {t.name for t in reader.tensors})
    assert len(insp.tensors) == len(reader.tensors)


def test_synthetic_summary(tmp_path, synthetic):
    s = core.load(synthetic).summary
    assert (s.architecture, s.name, s.file_type) == ("llama", "Tiny `test` model", "MOSTLY_Q8_0")
    assert (s.context_length, s.vocab_size, s.tokenizer, s.n_layers) == (128, 10, "gpt2", 1)
    assert s.n_params == 10 * 16 + 16 * 16 + 16 * 32 + 16
    assert [t.qtype.name for t in s.types] == ["F32", "Q8_0", "F16"]  # by bytes: 704, 544, 512
    assert s.tied_output and s.chat_template == TEMPLATE
    untied = core.load(write_synthetic(tmp_path / "untied.gguf", tied=False)).summary
    assert not untied.tied_output


def test_inspect_file_dict(synthetic):
    doc = core.inspect_file(synthetic, tensor_filter=r"^blk\.")
    assert set(doc) == {"filename", "endian", "metadata", "tensors", "header", "summary"}
    assert list(doc["tensors"]) == ["blk.0.attn_q.weight", "blk.0.ffn_down.weight"]
    assert doc["metadata"]["test.floats"]["value"] == [0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5]
    assert doc["summary"]["types"]["Q8_0"] == {"tensors": 1, "elements": 512, "bytes": 544}
    assert doc["header"]["tensor_count"] == 4
    json.dumps(doc)  # JSON-ready


# -- the text listing and options --------------------------------------------------------------


def test_plain_listing(synthetic, capsys):
    code, out, err = run(capsys, synthetic)
    assert code == 0 and err == ""
    assert "\x1b[" not in out  # piped: no colours, no box drawing
    titles = [line for line in out.splitlines() if line and not line.startswith(" ")]
    assert titles == ["summary", "tensor types", "header", "key/values (28)", "tensors (4)"]
    assert re.search(r"output head\s+tied to token_embd.weight", out)
    assert re.search(r"vocabulary\s+10, tokenizer gpt2 \(pre default\)", out)
    # gguf-dump's summaries: long strings cut at 60 characters, arrays after 6 values
    assert "'" + "y" * 57 + "...'" in out
    assert "[0.5, 1.5, 2.5, 3.5, 4.5, 5.5, ...]" in out
    # the tensor table: index, name, shape (ggml order), type, bytes, offset -- aligned
    rows = out.split("tensors (4)\n")[1].splitlines()
    assert rows[0].split() == ["#", "name", "shape", "type", "bytes", "offset"]
    assert rows[3].split()[:7] == ["2", "blk.0.ffn_down.weight", "32", "x", "16", "Q8_0", "544"]
    assert len({len(r) for r in rows[:5]}) == 1  # right-aligned offsets end in one column


def test_filter_and_no_tensors(synthetic, capsys):
    _, out, _ = run(capsys, synthetic, "--filter", "attn|norm")
    assert "tensors (2 of 4 match 'attn|norm'" in out
    tail = out.split("tensors (2 of 4")[1]
    assert "blk.0.attn_q.weight" in tail and "output_norm.weight" in tail and "ffn_down" not in tail

    _, out, _ = run(capsys, synthetic, "--no-tensors")
    assert "tensors (" not in out and "tensor types" in out  # the summary still counts them

    _, out, _ = run(capsys, synthetic, "--json", "--filter", "^blk")
    assert list(json.loads(out)["tensors"]) == ["blk.0.attn_q.weight", "blk.0.ffn_down.weight"]
    _, out, _ = run(capsys, synthetic, "--json", "--no-tensors")
    assert json.loads(out)["tensors"] == {}


def test_template(synthetic, tmp_path, capsys):
    code, out, _ = run(capsys, synthetic, "--template")
    assert code == 0 and out == TEMPLATE + "\n"  # in full, untouched
    bare = write_synthetic(tmp_path / "bare.gguf", template=None)
    code, out, err = run(capsys, bare, "--template")
    assert code != 0 and out == "" and "no chat template" in err and err.count("\n") == 1


def test_data_offset_and_alignment(synthetic, capsys):
    r = GGUFReader(synthetic)
    assert run(capsys, synthetic, "--data-offset")[1] == f"{r.data_offset}\n"
    assert run(capsys, synthetic, "--data-alignment")[1] == f"{r.alignment}\n"


def test_rich_on_a_terminal(synthetic):
    from rich.console import Console

    buf = io.StringIO()
    insp = core.load(synthetic)
    sections = cli_inspect.listing(insp, str(synthetic), list(insp.tensors))
    cli_inspect.render_rich(sections, Console(file=buf, force_terminal=True, width=200))
    text = buf.getvalue()
    assert "\x1b[" in text  # styled
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    for s in ("summary", "tensor types", "blk.0.ffn_down.weight", "Q8_0", "Tiny `test` model", "[STRING]"):
        assert s in plain


# -- bad input: one line on stderr, non-zero exit, no traceback --------------------------------


def truncated(path, tmp_path, n):
    out = tmp_path / f"cut{n}.gguf"
    out.write_bytes(path.read_bytes()[:n])
    return out


@pytest.mark.parametrize(
    "make, args, message",
    [
        (lambda p, t: t / "missing.gguf", [], "no such file"),
        (lambda p, t: t, [], "directory"),
        (lambda p, t: (t / "notes.txt").write_text("hello, not a model") and t / "notes.txt", [], "not a GGUF"),
        (lambda p, t: (t / "empty.gguf").write_bytes(b"") or t / "empty.gguf", [], "not a GGUF"),
        (lambda p, t: truncated(p, t, 40), [], "GGUF"),
        (lambda p, t: truncated(p, t, 300), [], "GGUF"),
        (lambda p, t: truncated(p, t, p.stat().st_size - 100), [], "truncated"),
        (lambda p, t: p, ["--filter", "blk.(0"], "regular expression"),
        (lambda p, t: p, ["--json", "--markdown"], "cannot be combined"),
    ],
    ids=["missing", "directory", "text", "empty", "cut-header", "cut-kv", "cut-data", "bad-regex", "two-modes"],
)
def test_bad_input(synthetic, tmp_path, capsys, make, args, message):
    code, out, err = run(capsys, make(synthetic, tmp_path), *args)
    assert code != 0 and out == ""
    assert err.count("\n") == 1 and err.startswith("llamacli: error:"), err
    assert message in err and "Traceback" not in err


def test_every_truncation_is_one_line(synthetic, tmp_path, capsys):
    data = synthetic.read_bytes()
    cut = tmp_path / "cut.gguf"
    for n in range(4, len(data), 37):  # through the header, the key/values and the tensor data
        cut.write_bytes(data[:n])
        code, out, err = run(capsys, cut)
        assert code != 0 and out == "" and err.count("\n") == 1 and "Traceback" not in err, (n, err)
