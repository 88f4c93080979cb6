"""Fuzzing the GGUF loading path: mutated real headers must end in LlamacliError, nothing else.

Every subcommand that reads a model goes through open_gguf -> config -> weights -> tokenizer;
the mutations are random byte flips, overwritten 8-byte fields (counts, lengths, offsets,
dimensions) and truncations of SmolLM2's header and of a synthetic model.
"""

import os
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llamacli.errors import LlamacliError
from llamacli.gguf_io import open_gguf
from llamacli.model.config import config_from_gguf
from llamacli.model.weights import load_weights
from llamacli.tokenizer import load_tokenizer

from synthetic import write_tiny_llama


def load_everything(path):
    gf = open_gguf(path)
    cfg = config_from_gguf(gf)
    load_weights(gf, cfg)
    load_tokenizer(gf)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory, smollm2_path):
    d = tmp_path_factory.mktemp("fuzz")
    tiny = write_tiny_llama(d / "tiny.gguf").read_bytes()
    gf = open_gguf(smollm2_path)
    smol_header = smollm2_path.read_bytes()[: gf.data_offset]  # metadata and tensor infos
    # the tensor data is left as a sparse hole of zeros: loading gets past the header checks
    return {"tiny": (tiny, len(tiny)), "smol": (smol_header, smollm2_path.stat().st_size)}, d


mutation = st.one_of(
    st.tuples(st.just("byte"), st.floats(0, 1), st.integers(0, 255)),
    st.tuples(st.just("u64"), st.floats(0, 1), st.sampled_from([0, 1, 2**31 - 1, 2**32, 2**62, 2**64 - 1, 7, 255])),
    st.tuples(st.just("cut"), st.floats(0, 1), st.just(0)),
)


def _mutate(data: bytes, muts) -> bytes:
    b = bytearray(data)
    for kind, where, value in muts:
        # most of what can go wrong is in the first few KB: bias positions towards them
        pos = int((where ** 3) * (len(b) - 9))
        if kind == "byte":
            b[pos] = value
        elif kind == "u64":
            b[pos:pos + 8] = value.to_bytes(8, "little")
        else:
            del b[pos:]
            break
    return bytes(b)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from(["tiny", "smol"]), muts=st.lists(mutation, min_size=1, max_size=3))
def test_mutated_headers_fail_cleanly(seeds, which, muts):
    data, d = seeds
    path = d / "mutant.gguf"
    seed, size = data[which]
    mutant = _mutate(seed, muts)
    path.write_bytes(mutant)
    if which == "smol" and len(mutant) == len(seed):
        os.truncate(path, size)
    t0 = time.perf_counter()
    try:
        load_everything(path)
    except LlamacliError:
        pass
    assert time.perf_counter() - t0 < 10, "loading a mutated file must not hang"
