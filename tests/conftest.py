"""Shared fixtures: the real models (fetched into the cache once) and the golden data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The golden data of most tests come from an AVX2 build of llama.cpp: pin the arithmetic to that
# path whatever this machine is (tests/test_cpu_levels.py checks every level against its own build).
os.environ["LLAMACLI_CPU"] = "avx2"

from llamacli import fetch

GOLDEN = Path(__file__).parent / "golden"


def _real_model(name: str) -> Path:
    try:
        return fetch.fetch(name, quiet=True)
    except fetch.FetchError as e:  # no registry reachable: this is a failure, not a skip
        pytest.fail(f"cannot fetch the real model {name}: {e}")


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    return _real_model("smollm2")


@pytest.fixture(scope="session")
def gemma3_path() -> Path:
    return _real_model("gemma3")


@pytest.fixture(scope="session")
def golden() -> Path:
    return GOLDEN
