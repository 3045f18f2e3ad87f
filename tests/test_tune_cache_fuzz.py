"""The tuning cache is a file anyone can damage: every truncation, random bytes and entries with
impossible values are ignored with a warning, and the kernels then run with the defaults."""

import json
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tmac import tune
from tmac.kernels import tiles

VALID = {"emeraldrapids|avx512|4096x4096|b2|n1|t1|int8": {"tiles_per_task": 8, "us": 200.0,
                                                           "tried": {"8": 200.0}}}


@pytest.fixture()
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TMAC_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tiles, "_cache", None)
    return tmp_path


def load_quietly():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = tune.load_cache()
    return data, caught


def test_every_truncation_is_ignored_or_complete(cache_dir):
    text = json.dumps(VALID)
    for cut in range(len(text)):
        (cache_dir / tiles.CACHE_NAME).write_text(text[:cut])
        data, caught = load_quietly()
        assert data == {} and caught, cut
    (cache_dir / tiles.CACHE_NAME).write_text(text)
    assert load_quietly() == (VALID, [])


@settings(max_examples=60, deadline=None)
@given(blob=st.binary(max_size=200))
def test_random_bytes_never_crash(blob, tmp_path_factory):
    path = tmp_path_factory.mktemp("cache") / tiles.CACHE_NAME
    path.write_bytes(blob)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = tune.load_cache(str(path))
    assert isinstance(data, dict)
    assert all(isinstance(v["tiles_per_task"], int) and v["tiles_per_task"] >= 1 for v in data.values())


@pytest.mark.parametrize("value", [0, -3, True, 1.5, "8", None, 1 << 40])
def test_impossible_entries_are_refused(cache_dir, value):
    entry = {"k": {"tiles_per_task": value, "us": 1.0}}
    (cache_dir / tiles.CACHE_NAME).write_text(json.dumps(entry))
    data, caught = load_quietly()
    assert data == {} and "ignoring" in str(caught[0].message)


def test_flipped_bytes(cache_dir):
    text = bytearray(json.dumps(VALID).encode())
    rng = np.random.default_rng(0)
    for _ in range(100):
        blob = bytearray(text)
        blob[rng.integers(0, len(blob))] ^= 1 << int(rng.integers(0, 8))
        (cache_dir / tiles.CACHE_NAME).write_bytes(bytes(blob))
        data, _ = load_quietly()
        assert data == {} or all(v["tiles_per_task"] >= 1 for v in data.values())
