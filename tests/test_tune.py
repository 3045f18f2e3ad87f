"""tmac.tune: cache round trip, corrupt cache ignored with a warning, tuned runs stay exact."""
import json
import warnings

import numpy as np
import pytest

from tmac import kernels, tune
from tmac.kernels import tiles
from tmac.layout import pack


@pytest.fixture()
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TMAC_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tiles, "_cache", None)
    return tmp_path


def test_missing_cache_means_defaults(cache_dir):
    assert tune.load_cache() == {}
    assert tune.lookup("avx512", 64, 64, 2, 1, 1, "int8") is None


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"k": {"tiles_per_task": "x"}}'])
def test_corrupt_cache_is_ignored_with_a_warning(cache_dir, text):
    (cache_dir / tiles.CACHE_NAME).write_text(text)
    with pytest.warns(RuntimeWarning, match="ignoring"):
        assert tune.load_cache() == {}


def test_round_trip_and_lookup(cache_dir):
    k = tune.key("portable", 100, 64, 3, 1, 2, "int8")
    tune.save_cache({k: {"tiles_per_task": 2, "us": 1.0}})
    assert json.loads((cache_dir / tiles.CACHE_NAME).read_text())[k]["tiles_per_task"] == 2
    assert tune.lookup("portable", 100, 64, 3, 1, 2, "int8") == 2


def test_tuned_choice_changes_no_bit(cache_dir):
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 8, (200, 64)).astype(np.uint8)
    scales = rng.random((200, 2)).astype(np.float32)
    zeros = rng.integers(0, 8, (200, 2)).astype(np.float32)
    x = rng.standard_normal((1, 64)).astype(np.float32)
    packed = pack(codes, 3, scales, zeros)
    before = kernels.lut_matmul(packed, scales, zeros, 3, x, 32, threads=2)
    res = tune.tune_one(200, 64, 3, threads=2, group_size=32, repeat=3)
    assert res["tiles_per_task"] in tune.candidates(4, 2)
    isa = res["isa"]
    tune.save_cache({tune.key(isa, 200, 64, 3, 1, 2, "int8"): res})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        after = kernels.lut_matmul(packed, scales, zeros, 3, x, 32, threads=2)
    assert np.array_equal(before.view(np.int32), after.view(np.int32))
