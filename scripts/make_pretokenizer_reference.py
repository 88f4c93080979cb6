"""Golden ids for every BPE pre-tokenizer type llama.cpp knows, from llama.cpp's llama-tokenize.

Run with llamacli's interpreter (llama-tokenize runs as a subprocess):

    .venv/bin/python scripts/make_pretokenizer_reference.py [--jobs 2]

The names are read from llama.cpp's source (the `tokenizer_pre == "..."` chain of
llama_vocab::impl::load), so a name llamacli lacks still gets reference data. For each name a
vocab-only GGUF is written: SmolLM2's general.* and tokenizer.* metadata, no tensors, with
tokenizer.ggml.pre set to the name (and once without the key: llama.cpp's "missing" default).

One llama-tokenize run per name and mode tokenizes the whole corpus: the strings are joined
with a separator that is a user-defined token appended to the vocabulary, which llama.cpp's
special-token partition (tokenizer_st_partition) cuts out in both modes, so every string is
tokenized as its own raw-text fragment; the ids between separators are that string's ids.
That the extra token changes nothing else is checked: a few strings per name and mode are
also run alone on the unmodified vocabulary, and the smollm ids must equal tests/golden/
smollm2/tokens.json (llama-cpp-python, one call per string) for every string.

SmolLM2's merges hide some differences between splits (no merge crosses where they differ),
so the split itself is also recorded, through a probe vocabulary in which every word of the
short strings is a single token (see probe_vocab).

Writes tests/golden/pretokenizers.json:
  extra            strings tokenized after the corpus (EXTRA below): string i is corpus[i],
                   then extra[i - len(corpus)]
  variants[i]      the distinct id lists of string i over all names and modes
  types[name]      "special" / "no_special": per string, the index of its ids in variants
                   (one character of INDEX_CHARS each); "prefix" / "suffix": what the
                   separator run adds around the text with add_special (BOS / EOS);
                   "add_bos_default": whether BOS is added when tokenizer.ggml.add_bos_token
                   is absent (the pre type's own default)
                   "splits": per probe string, the index of llama.cpp's split (the
                   code-point lengths of its words) in probe.splits
  probe            strings: the indexes of the strings short enough for the split probe
                   (below); splits[j]: the distinct splits of probe string j
  missing          the same for a file without tokenizer.ggml.pre
  unknown          llama.cpp's error for a name it does not know
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gguf import GGUFValueType  # noqa: E402

from llamacli.gguf_io import AtomicGGUFWriter, open_gguf  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
from vocab_copy import PRE_KEY, gguf_str, string_kv, write_vocab_gguf  # noqa: E402

GOLDEN = ROOT / "tests" / "golden"
MODEL = Path.home() / ".cache" / "llamacli" / "SmolLM2-135M-Instruct.Q4_1.gguf"
LLAMA_TOKENIZE = Path("/work/peer/avx2/bin/llama-tokenize")
LLAMA_CPP_SRC = Path("/work/peer/llama_cpp_python-0.3.36/vendor/llama.cpp")
SEPARATOR = "<|llamacli-pretokenizer-sep|>"
INDEX_CHARS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
UNKNOWN = "no-such-pre-tokenizer"
N_CHECK = 3  # strings per name and mode also run alone on the unmodified vocabulary

# Strings aimed at what tells the pre-tokenizers apart (the shared corpus was written for
# SmolLM2 and Gemma-3): Han next to other scripts, marks, case changes inside words, digit runs,
# CJK and full-width punctuation, letters from deepseek-llm's list, chameleon's sentinels, long
# white space, apostrophes. They are tokenized after the corpus and stored with the ids.
EXTRA = [
    "中文English混合", "漢字とかなカナ", "Han字 a中b 中", "English's 中文's",
    "\u4e00\u9fff\u3400\U00020000\U0002a700\uf900\U0002f800", "\U0002ebef\U0002ebf0 edge of the Han ranges",
    "ABC'S HelloWorld's don'T O'REILLY's", "e\u0301\u0302x", "\u0301abc", "a \u0301 b",
    "\u0915\u094d\u0937\u0924\u094d\u0930\u093f\u092f", "HTTPServerError getHTTPResponseCode",
    "\u00c9coleNormale iPhone XMLHttpRequest", "\u0391\u03b8\u03ae\u03bd\u03b1\u0391\u03b8",
    "K\u212a \u03a9\u2126 \u1f7d\u1fbe\u1fd3", "\uff21\uff22\uff23\uff41\uff42\uff43\uff11\uff12\uff13\uff01\uff1f",
    "\u2018quoted\u2019 \u201cdouble\u201d", "\u3000\u3001\u3002\u300c\u300d", "text   ", "a \n", "end  \t",
    "\U00010400\U00010428 Deseret", "\ua640\ua641", "hello,world ,abc \"quoted\"", "#hashtag @user $100 USD",
    "\u0e44\u0e17\u0e22\u0e20\u0e32\u0e29\u0e32", "\u0ea5\u0eb2\u0ea7", "\u1781\u17d2\u1798\u17c2\u179a",
    "\u1019\u103c\u1014\u103a\u1019\u102c", "\ud55c\uae00\u3131\u3134", "\uff76\uff80\uff76\uff85", "\u2f00\u2f01",
    "\uaa60\uaa61", "ab1234567cd", "1 22 333 4444 55555 666666", "x12345678901y", "\u0663\u0664\u0665\u0666\u0667",
    "1234,5678.90", "00001", "1234567890123", "a123456b", "<sentinel:12>", "<sentinel:>x<sentinel:7>",
    "IMGIMGABCDZ IMGIMGAZ IMGIMGABCDEZ", "a\tb\nc    d  e", "!@#$%^&*()", "[brackets]{braces}",
    "Hello, world. How? Yes!", "a\u2026b\u3002c\uff0cd\u3001e\u0964f\u06d4g\u060ch", "(paren|pipe)",
    " " * 600 + "x", "a" + " " * 20 + "b", "\t" * 9 + "x", "!!\n\n", "a,\r\nb", "'S 'LL 'Ve 'd", "x\n\n\ny",
    "\ud55c\uad6d\uc5b4\uff01\u2026\u201c\u201d", "\u3105\u3106\u3107\u6ce8\u97f3", "\ufe30\ufe4f",
    "word/\n/path", "New York City", "a b c d", "\u00e9 \u00e9", "word /\n", "line1\nline2\n\n\nline3",
    "\n\nstart", "end\n\n", "1234567 89", "Ankara'da \u0130stanbul'un", "\u00c7al\u0131\u015fkan'\u0131n",
    "\u00a0\u00a0x", "\u2028\u2029", "x\u0085 y", "\r\r\n\n", " \t\n\u000b\u000c\r", "\x00a\x00",
    "\U0001f642\U0001f642's", "\u00a3\u20ac\u00a5\u20b9 \u2264\u2265", "+-*/=<> ^~|`", "'''s'", "a'", "'",
]


# -- the names llama.cpp knows -----------------------------------------------------------------

def llama_cpp_pre_names(src: Path) -> list[str]:
    text = (src / "src" / "llama-vocab.cpp").read_text(encoding="utf-8")
    start = text.index('tokenizer_pre == "default"')
    end = text.index('"unknown pre-tokenizer type', start)
    names = list(dict.fromkeys(re.findall(r'tokenizer_pre == "([^"]+)"', text[start:end])))
    assert len(names) > 50, names
    return names


# -- llama-tokenize ----------------------------------------------------------------------------

class ToolError(RuntimeError):
    pass


def tokenize(tool: Path, gguf: Path, text: str, parse_special: bool, tries: int = 6, log: bool = False) -> list[int]:
    """ids of `text` (stdin, no escape processing, with add_special as the vocabulary says)."""
    argv = [str(tool), "-m", str(gguf), "--stdin", "--ids", "--no-escape"] + ([] if log else ["--log-disable"])
    if not parse_special:
        argv.append("--no-parse-special")
    last = ""
    for _ in range(tries):
        p = subprocess.run(argv, input=text.encode("utf-8"), capture_output=True, timeout=600)
        if p.returncode != 0:
            # the log thread may not have written its last lines yet: keep both streams
            msg = (p.stderr + p.stdout).decode("utf-8", "replace").strip()
            raise ToolError(msg or f"exit {p.returncode}")
        lines = [ln for ln in p.stdout.decode("utf-8", "replace").splitlines() if ln.startswith("[")]
        if lines and lines[-1].endswith("]"):
            return json.loads(lines[-1])
        last = p.stdout.decode("utf-8", "replace")[-200:]
        time.sleep(0.2)
    raise ToolError(f"no complete id list after {tries} tries; last output ends {last!r}")


def run_corpus(tool: Path, gguf: Path, corpus: list[str], sep_id: int, parse_special: bool):
    """(ids of each string, ids before the first separator, ids after the last)."""
    text = SEPARATOR + SEPARATOR.join(corpus) + SEPARATOR
    for _ in range(6):
        ids = tokenize(tool, gguf, text, parse_special)
        parts: list[list[int]] = [[]]
        for t in ids:
            if t == sep_id:
                parts.append([])
            else:
                parts[-1].append(t)
        if len(parts) == len(corpus) + 2:
            return parts[1:-1], parts[0], parts[-1]
        # a truncated list that still parses: run again
    raise ToolError(f"{gguf.name}: expected {len(corpus) + 1} separators, got {len(parts) - 1}")


def tool_version(tool: Path) -> str:
    p = subprocess.run([str(tool), "--version"], capture_output=True, text=True)
    return " ".join((p.stdout + p.stderr).split())


# -- the split probe: a vocabulary in which every word is one token ----------------------------
# With SmolLM2's merges two different splits often give the same ids (no merge crosses the
# place where they differ). The probe vocabulary holds every substring of every short string
# (in GPT-2's byte alphabet) as a token, with a merge for every way to cut it in two: BPE then
# always ends with one token per word, whatever the pre-tokenizer did, so llama.cpp's ids spell
# out its split exactly.

PROBE_MAX_BYTES = 32


def _byte_chars() -> list[str]:
    """GPT-2's byte alphabet (bytes_to_unicode)."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = {b: chr(b) for b in printable}
    shifted = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + shifted)
            shifted += 1
    return [table[b] for b in range(256)]


def _string_array_kv(key: str, items: list[str]) -> bytes:
    head = gguf_str(key) + int(GGUFValueType.ARRAY).to_bytes(4, "little")
    head += int(GGUFValueType.STRING).to_bytes(4, "little") + len(items).to_bytes(8, "little")
    return head + b"".join(gguf_str(s) for s in items)


def _int32_array_kv(key: str, items: list[int]) -> bytes:
    head = gguf_str(key) + int(GGUFValueType.ARRAY).to_bytes(4, "little")
    head += int(GGUFValueType.INT32).to_bytes(4, "little") + len(items).to_bytes(8, "little")
    return head + b"".join(int(v).to_bytes(4, "little", signed=True) for v in items)


def probe_vocab(strings: list[str]) -> tuple[list[str], list[str]]:
    """(tokens, merges): the 256 byte tokens, then every substring of the strings' byte-encoded
    text, shortest first; a merge "left right" for every cut of every substring."""
    bc = _byte_chars()
    tokens = list(bc)
    seen = set(tokens)
    for s in strings:
        b = "".join(bc[x] for x in s.encode("utf-8"))
        for i in range(len(b)):
            for j in range(i + 2, len(b) + 1):
                if b[i:j] not in seen:
                    seen.add(b[i:j])
                    tokens.append(b[i:j])
    multi = sorted(tokens[256:], key=lambda t: (len(t), t))
    tokens = tokens[:256] + multi
    merges = [f"{t[:k]} {t[k:]}" for t in multi for k in range(1, len(t))]
    return tokens, merges


def write_probe_gguf(dst: Path, pre: str | None, tokens: list[str], merges: list[str]) -> None:
    kv = [
        ("general.architecture", string_kv("general.architecture", "llama")),
        ("tokenizer.ggml.model", string_kv("tokenizer.ggml.model", "gpt2")),
        *([(PRE_KEY, string_kv(PRE_KEY, pre))] if pre is not None else []),
        ("tokenizer.ggml.tokens", _string_array_kv("tokenizer.ggml.tokens", tokens + [SEPARATOR])),
        ("tokenizer.ggml.token_type", _int32_array_kv("tokenizer.ggml.token_type", [1] * len(tokens) + [4])),
        ("tokenizer.ggml.merges", _string_array_kv("tokenizer.ggml.merges", merges)),
    ]
    kv.append(("tokenizer.ggml.add_bos_token",
               gguf_str("tokenizer.ggml.add_bos_token") + int(GGUFValueType.BOOL).to_bytes(4, "little") + b"\0"))
    with AtomicGGUFWriter(dst, kv, []):
        pass


def probe_splits(name: str | None, args, strings: list[str], tokens: list[str], merges: list[str],
                 probe_file: Path) -> dict:
    """The code-point lengths of llama.cpp's words for each probe string (raw text only)."""
    decode = {c: b for b, c in enumerate(_byte_chars())}
    write_probe_gguf(probe_file, name, tokens, merges)
    try:
        per_string, prefix, suffix = run_corpus(args.tool, probe_file, strings, len(tokens), False)
    except ToolError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        error = next((ln for ln in lines if "GGML_ASSERT" in ln), lines[0])
        return {"error": error[error.find("GGML_ASSERT"):] if "GGML_ASSERT" in error else error}
    finally:
        probe_file.unlink(missing_ok=True)
    # prefix / suffix: a BOS some types force (gemma4); only the words matter here
    out = []
    for s, ids in zip(strings, per_string):
        words = [bytes(decode[c] for c in tokens[i]) for i in ids]
        if b"".join(words) != s.encode("utf-8"):  # llama.cpp did not keep to one token a word
            return {"error": f"string {s!r}: the probe ids do not spell the text"}
        out.append([len(w.decode("utf-8")) for w in words])
    return {"splits": out}


# -- one name ----------------------------------------------------------------------------------

def reference_for(name: str | None, args, corpus: list[str], tmp: Path, sep_id: int, bos_id: int,
                  probe: tuple[list[str], list[str], list[str]]) -> dict:
    label = name if name is not None else "(missing)"
    slug = re.sub(r"[^A-Za-z0-9_.-]", "_", label)
    sep_file = tmp / f"{slug}.sep.gguf"
    plain_file = tmp / f"{slug}.gguf"
    nobos_file = tmp / f"{slug}.nobos.gguf"
    write_vocab_gguf(args.model, sep_file, name, separator=SEPARATOR)
    write_vocab_gguf(args.model, plain_file, name)
    write_vocab_gguf(args.model, nobos_file, name, drop=("tokenizer.ggml.add_bos_token",))
    out: dict = {}
    rng = random.Random(f"check-{label}")
    for key, parse_special in (("special", True), ("no_special", False)):
        try:
            per_string, prefix, suffix = run_corpus(args.tool, sep_file, corpus, sep_id, parse_special)
        except ToolError as e:  # llama.cpp itself fails (an assertion) on this corpus
            lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
            error = next((ln for ln in lines if "GGML_ASSERT" in ln or "error" in ln.lower()), lines[0])
            print(f"  {label}: llama-tokenize fails: {error}", file=sys.stderr, flush=True)
            for f in (sep_file, plain_file, nobos_file):
                f.unlink()
            return {"error": error[error.find("GGML_ASSERT"):] if "GGML_ASSERT" in error else error}
        # the separator must change nothing: a few strings alone, on the unmodified vocabulary
        for i in rng.sample(range(len(corpus)), N_CHECK):
            alone = tokenize(args.tool, plain_file, corpus[i], parse_special)
            want = prefix + per_string[i] + suffix
            if alone != want:
                raise SystemExit(f"{label} {key}: string {i} {corpus[i]!r} gives {alone} alone, "
                                 f"{want} in the separator run")
        out[key] = per_string
        out[f"{key}_prefix"], out[f"{key}_suffix"] = prefix, suffix
    plain = tokenize(args.tool, plain_file, "a", True)
    nobos = tokenize(args.tool, nobos_file, "a", True)
    assert nobos in (plain, [bos_id] + plain), (label, plain, nobos)
    out["add_bos_default"] = nobos == [bos_id] + plain
    out["probe"] = probe_splits(name, args, *probe, tmp / f"{slug}.probe.gguf")
    for f in (sep_file, plain_file, nobos_file):
        f.unlink()
    print(f"  {label}: ok", file=sys.stderr, flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tool", type=Path, default=LLAMA_TOKENIZE)
    ap.add_argument("--model", type=Path, default=MODEL)
    ap.add_argument("--llama-cpp-src", type=Path, default=LLAMA_CPP_SRC)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=GOLDEN / "pretokenizers.json")
    ap.add_argument("--only", help="comma-separated names: run just these, write nothing (a dry run)")
    args = ap.parse_args()

    corpus_bytes = (GOLDEN / "corpus.json").read_bytes()
    corpus = json.loads(corpus_bytes)
    n_corpus = len(corpus)
    corpus = corpus + EXTRA  # from here on: every string tokenized
    assert not any(SEPARATOR in s for s in corpus)
    names = llama_cpp_pre_names(args.llama_cpp_src)
    if args.only:
        names = [n for n in args.only.split(",") if n in names] or names[:1]
    gf = open_gguf(args.model)
    sep_id = len(gf.strings("tokenizer.ggml.tokens"))
    bos_id = int(gf.get("tokenizer.ggml.bos_token_id"))
    probe_index = [i for i, t in enumerate(corpus) if 0 < len(t.encode("utf-8")) <= PROBE_MAX_BYTES]
    probe_strings = [corpus[i] for i in probe_index]
    probe = (probe_strings, *probe_vocab(probe_strings))
    print(f"{len(names)} pre-tokenizer names, {n_corpus} + {len(EXTRA)} strings; split probe: "
          f"{len(probe_strings)} strings, {len(probe[1])} tokens, {len(probe[2])} merges", file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="pretok-ref-") as d:
        tmp = Path(d)
        # llama.cpp's answer to a name it does not know
        write_vocab_gguf(args.model, tmp / "unknown.gguf", UNKNOWN)
        error = None
        for _ in range(20):  # the message is sometimes lost at exit (see tokenize)
            try:
                tokenize(args.tool, tmp / "unknown.gguf", "a", True, log=True)
                raise SystemExit(f"llama-tokenize accepted the pre-tokenizer '{UNKNOWN}'")
            except ToolError as e:
                line = next((ln for ln in str(e).splitlines() if "unknown pre-tokenizer" in ln), None)
            if line is not None:
                error = line[line.index("unknown pre-tokenizer"):].strip()
                break
        if error is None:
            raise SystemExit("llama-tokenize never printed why it refused the unknown pre-tokenizer")
        with ThreadPoolExecutor(args.jobs) as pool:
            jobs = {n: pool.submit(reference_for, n, args, corpus, tmp, sep_id, bos_id, probe)
                    for n in [None, *names]}
            results = {n: j.result() for n, j in jobs.items()}
    if args.only:
        return

    # the separator runs against llama-cpp-python's one call per string (tests/golden/smollm2)
    entries = json.loads((GOLDEN / "smollm2" / "tokens.json").read_text())["entries"]
    for key in ("special", "no_special"):
        got = results["smollm"][key]
        bad = [i for i, e in enumerate(entries) if e[key] != got[i]]
        if bad:
            raise SystemExit(f"smollm {key}: {len(bad)} strings differ from tests/golden/smollm2, first {bad[0]}")

    variants: list[list[list[int]]] = [[] for _ in corpus]
    probe_variants: list[list[list[int]]] = [[] for _ in probe_strings]

    def index(table: list[list[list[int]]], per_string: list[list[int]]) -> str:
        """One character per string: where its list sits among the string's distinct lists."""
        chars = []
        for i, ids in enumerate(per_string):
            if ids not in table[i]:
                table[i].append(ids)
            k = table[i].index(ids)
            assert k < len(INDEX_CHARS), f"string {i}: more than {len(INDEX_CHARS)} distinct lists"
            chars.append(INDEX_CHARS[k])
        return "".join(chars)

    def entry(r: dict) -> dict:
        if "error" in r:
            return {"error": r["error"]}
        e = {"special": index(variants, r["special"]), "no_special": index(variants, r["no_special"]),
             "prefix": r["special_prefix"], "suffix": r["special_suffix"],
             "add_bos_default": r["add_bos_default"]}
        if "error" in r["probe"]:
            e["splits_error"] = r["probe"]["error"]
        else:
            e["splits"] = index(probe_variants, r["probe"]["splits"])
        return e

    types = {n: entry(results[n]) for n in names}
    missing = entry(results[None])
    for r in results.values():
        if "error" not in r:
            assert r["special_prefix"] == r["no_special_prefix"] and r["special_suffix"] == r["no_special_suffix"]
    data = {
        "about": "ids llama.cpp's llama-tokenize gives every corpus string (tests/golden/corpus.json) "
                 "for each tokenizer.ggml.pre it knows, on a vocab-only GGUF holding SmolLM2's "
                 "general.* and tokenizer.* metadata with tokenizer.ggml.pre replaced; "
                 "scripts/make_pretokenizer_reference.py",
        "llama_cpp": tool_version(args.tool),
        "model": args.model.name,
        "corpus_sha256": hashlib.sha256(corpus_bytes).hexdigest(),
        "call": "llama-tokenize -m vocab.gguf --stdin --ids --no-escape [--no-parse-special] "
                "(add_special as the vocabulary says: no BOS, SmolLM2 sets add_bos_token false)",
        "index_chars": INDEX_CHARS,
        "extra": EXTRA,
        "names": names,
        "variants": variants,
        "probe": {"max_bytes": PROBE_MAX_BYTES, "strings": probe_index, "splits": probe_variants},
        "types": types,
        "missing": missing,
        "unknown": {"name": UNKNOWN, "error": error},
    }
    args.out.write_text(json.dumps(data, ensure_ascii=True, separators=(",", ":")) + "\n")
    n_var = sum(len(v) for v in variants)
    print(f"{args.out}: {len(names)} names, {n_var} distinct id lists, {args.out.stat().st_size} bytes",
          file=sys.stderr)


if __name__ == "__main__":
    main()
