"""``tmac cache`` and the verification of fetched models, in temporary folders only
(``$TMAC_CACHE_DIR``, ``$NUMBA_CACHE_DIR``): never the user's cache or tmac's own __pycache__."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tmac import cache
from tmac.model import fetch

PACKAGE_PARENT = Path(cache.__file__).resolve().parents[1]


@pytest.fixture
def where(tmp_path, monkeypatch):
    """A cache folder and a Numba cache folder, both empty, for this process and its children."""
    from numba.core import config

    dirs = {"cache": tmp_path / "cache", "numba": tmp_path / "numba"}
    monkeypatch.setenv("TMAC_CACHE_DIR", str(dirs["cache"]))
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(dirs["numba"]))
    monkeypatch.setattr(config, "CACHE_DIR", str(dirs["numba"]))
    monkeypatch.delenv(cache.LIMIT_ENV, raising=False)
    return dirs


def write(path, n):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(range(256)) * (n // 256) + bytes(n % 256))
    return path


def populate(where):
    """Files of every kind, of known sizes: {kind: total bytes}."""
    c = where["cache"]
    write(c / "prepared" / "tiny-w4-0123.npz", 3000)
    write(c / "prepared" / "tiny-base-4567.npz", 1234)
    write(c / "calibration" / "tiny-89ab.npy", 512)
    write(c / "tune.json", 77)
    write(fetch.cached_path("smollm2"), 5000)
    kernel_dir = cache.kernel_dirs()[0]
    assert str(kernel_dir).startswith(str(where["numba"]))
    write(kernel_dir / "tables.pad-168.py311.nbi", 900)
    write(kernel_dir / "tables.pad-168.py311.1.nbc", 40000)
    return {"prepared": 4234, "calibration": 512, "tune": 77, "fetched": 5000, "kernels": 40900}


def sizes(field="size"):
    """Bytes (or file counts) per kind of entry, summed (one "fetched" entry per known model)."""
    out = {}
    for e in cache.entries():
        out[e.kind] = out.get(e.kind, 0) + getattr(e, field)
    return out


def tmac(*args, env=None):
    """``python -m tmac ARGS`` run on the tmac this process imported (installed or a checkout:
    where its sources are decides where Numba keeps their compiled code)."""
    return subprocess.run([sys.executable, "-m", "tmac", *args], capture_output=True, text=True,
                          env=env or os.environ.copy(), cwd=PACKAGE_PARENT, timeout=120)


def test_sizes_parse_and_print():
    assert cache.parse_size("500MB") == 500_000_000 and cache.parse_size("1.5 GiB") == 3 * 2**29
    assert cache.parse_size("1000") == 1000 and cache.parse_size("2k") == 2000
    for bad in ("", "5XB", "-1MB", "MB", "1e9"):
        with pytest.raises(ValueError, match="as a size"):
            cache.parse_size(bad)
    assert [cache.human_size(n) for n in (0, 812, 1500, 98_362_432, 1_210_000_000)] == \
        ["0 B", "812 B", "1.5 kB", "98.4 MB", "1.21 GB"]


def test_listing_sizes_equal_the_files(where):
    expected = populate(where)
    assert sizes() == expected
    assert sizes("count") == {"prepared": 2, "calibration": 1, "tune": 1, "fetched": 1, "kernels": 2}
    run = tmac("cache", "--json")                      # the CLI, in a process of its own
    assert run.returncode == 0, run.stderr
    listing = json.loads(run.stdout)
    by_kind = {}
    for e in listing["entries"]:
        by_kind[e["kind"]] = by_kind.get(e["kind"], 0) + e["bytes"]
    assert by_kind == expected
    assert listing["total_bytes"] == sum(expected.values()) and listing["total_files"] == 7
    assert listing["cache_dir"] == str(where["cache"])
    table = tmac("cache", env=dict(os.environ, COLUMNS="200"))
    assert table.returncode == 0 and "4.23 kB" in table.stdout and "fetched (smollm2)" in table.stdout
    assert "50.7 kB" in table.stdout                   # the total
    assert "no size limit" in table.stdout


@pytest.mark.parametrize("kind", ["prepared", "calibration", "tune", "kernels"])
def test_clear_removes_only_its_kind(where, kind):
    expected = populate(where)
    files, size = cache.clear(kind)
    assert size == expected[kind] and files >= 1
    assert sizes() == {**expected, kind: 0}


def test_clear_through_the_cli(where):
    expected = populate(where)
    run = tmac("cache", "clear", "prepared")
    assert run.returncode == 0 and "removed 2 files (4.23 kB) of prepared" in run.stdout
    assert sizes() == {**expected, "prepared": 0}


def test_fetched_models_are_kept_unless_named(where):
    expected = populate(where)
    run = tmac("cache", "clear", "fetched")
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.count("\n") == 1 and "--name" in run.stderr
    with pytest.raises(ValueError, match="unknown model"):
        cache.clear("fetched", ["nosuchmodel"])
    with pytest.raises(ValueError, match="fetched models only"):
        cache.clear("prepared", ["smollm2"])
    for kind in ("prepared", "calibration", "tune", "kernels"):
        cache.clear(kind)
    assert sizes()["fetched"] == expected["fetched"]
    run = tmac("cache", "clear", "fetched", "--name", "smollm2")
    assert run.returncode == 0, run.stderr
    assert not fetch.cached_path("smollm2").parent.exists()
    assert sum(sizes().values()) == 0


def test_least_recently_used_prepared_files_are_evicted_first(where):
    folder = where["cache"] / "prepared"
    files = [write(folder / f"m{i}.npz", 100) for i in range(5)]
    for i, f in enumerate(files):                      # m0 oldest ... m4 newest
        os.utime(f, ns=(10**18 + i * 10**9,) * 2)
    cache.touch(files[1])                              # m1 used just now
    fetched = write(fetch.cached_path("smollm2"), 5000)
    assert cache.evict() == []                         # no limit: nothing happens
    removed = cache.evict(250, keep=[files[0]])        # m0 kept although oldest
    assert removed == [files[2], files[3], files[4]]
    assert sorted(cache.prepared_files()) == [files[0], files[1]] and fetched.is_file()


def test_the_limit_is_stored_or_taken_from_the_environment(where, monkeypatch):
    folder = where["cache"] / "prepared"
    files = [write(folder / f"m{i}.npz", 1000) for i in range(3)]
    for i, f in enumerate(files):
        os.utime(f, ns=(10**18 + i * 10**9,) * 2)
    run = tmac("cache", "limit", "2.5kB")               # applies at once
    assert run.returncode == 0 and "evicted 1" in run.stdout and "limit 2.5 kB" in run.stdout
    assert cache.prepared_files() == files[1:]
    assert cache.limit() == (2500, str(cache.config_path()))
    monkeypatch.setenv(cache.LIMIT_ENV, "1kB")
    assert cache.limit() == (1000, "$TMAC_CACHE_LIMIT")
    monkeypatch.setenv(cache.LIMIT_ENV, "lots")
    with pytest.warns(RuntimeWarning, match="no eviction"):
        assert cache.evict() == []
    monkeypatch.delenv(cache.LIMIT_ENV)
    bad = tmac("cache", "limit", "5XB")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    assert cache.set_limit("none") is None and cache.limit() == (None, "none")


def test_the_store_touches_on_load_and_evicts_after_writing(where, tmp_path):
    pytest.importorskip("gguf", reason="the 'model' extra (gguf) is not installed")
    from tmac.model import formats, store, tiny

    gguf = tiny.write_tiny_llama(tmp_path / "tiny.gguf")
    w2, w3, w4 = (formats.parse(f"w{b}", 32) for b in (2, 3, 4))
    store.open_model(str(gguf), w2)
    store.open_model(str(gguf), w3)
    base, p2, p3 = store.base_path(gguf), store.prepared_path(gguf, w2), store.prepared_path(gguf, w3)
    for age, f in enumerate((base, p2, p3)):           # base oldest, then w2, then w3
        os.utime(f, ns=(10**18 + age * 10**9,) * 2)
    store.open_model(str(gguf), w2)                    # a use of w2 and of the base
    assert min(p2.stat().st_mtime_ns, base.stat().st_mtime_ns) > p3.stat().st_mtime_ns
    p4 = store.prepared_path(gguf, w4)
    cache.set_limit(str(sum(f.stat().st_size for f in (base, p2)) + 2 * p3.stat().st_size))
    store.open_model(str(gguf), w4)    # written, over the limit (w4 > w3): w3, least recent, goes
    assert sorted(cache.prepared_files()) == sorted([base, p2, p4])


@pytest.fixture
def fake_model(where, monkeypatch):
    """A known model "tiny" whose fetched file is a GGUF (stand-in for a download)."""
    pytest.importorskip("gguf", reason="the 'model' extra (gguf) is not installed")
    from tmac.model import tiny

    path = where["cache"] / "tiny" / "tiny.gguf"
    path.parent.mkdir(parents=True)
    tiny.write_tiny_llama(path)
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    part = fetch.Part("none", "0", "none.whl", "0" * 64, "x/tiny.gguf", digest, len(data))
    source = fetch.ModelSource("tiny", "tiny.gguf", (part,), digest, len(data), "none")
    monkeypatch.setitem(fetch.MODELS, "tiny", source)
    calls = []
    real = fetch.sha256_file
    monkeypatch.setattr(fetch, "sha256_file", lambda p, *a: calls.append(p) or real(p, *a))
    return path, calls


def test_an_unchanged_fetched_file_is_not_hashed_again(fake_model):
    path, calls = fake_model
    assert fetch.resolve("tiny") == path and len(calls) == 1
    assert fetch.resolve("tiny") == path and fetch.resolve(str(path)) == path
    assert len(calls) == 1                             # size and mtime as recorded
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert fetch.resolve("tiny") == path and len(calls) == 2        # touched: verified again
    assert fetch.resolve("tiny") == path and len(calls) == 2


def test_a_damaged_fetched_file_is_refused_in_one_line(fake_model, capsys):
    from tmac.cli import main

    path, calls = fake_model
    fetch.resolve("tiny")                              # verified and recorded
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x10                       # one bit of a tensor: still a valid GGUF
    mtime = path.stat().st_mtime_ns
    path.write_bytes(bytes(blob))
    os.utime(path, ns=(mtime + 10**9, mtime + 10**9))
    assert main(["info", "tiny"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"{path} is damaged" in err and "tmac fetch tiny" in err
    with pytest.raises(fetch.DamagedModelError):       # also by its path in the cache
        fetch.resolve(str(path))
    path.write_bytes(bytes(blob[:-7]))                 # truncated: refused without hashing
    n = len(calls)
    with pytest.raises(fetch.DamagedModelError, match=f"{len(blob) - 7} bytes"):
        fetch.resolve("tiny")
    assert len(calls) == n
