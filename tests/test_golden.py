"""Golden vectors: the committed set regenerates byte for byte, verifies on every backend, and
the reader refuses hostile files with a clear error (and no large allocation)."""

import hashlib
import json
import shutil
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from tmac.cli import main as cli_main
from tmac.golden import GoldenFormatError, backends, cases, container, export, verify
from tmac.golden.export import INDEX, MANIFEST
from tmac.registry import OPS

COMMITTED = Path(__file__).resolve().parent / "golden"
REGENERATE = "tmac golden export tests/golden --force"


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """A fresh export of the default set (the committed one's twin)."""
    directory = tmp_path_factory.mktemp("golden") / "set"
    export(directory)
    return directory


def _manifest(directory):
    return json.loads((directory / MANIFEST).read_text())


# ---- no silent drift ------------------------------------------------------------------------

def test_committed_set_regenerates_byte_for_byte(fresh):
    committed = sorted(p.name for p in COMMITTED.iterdir())
    regenerated = sorted(p.name for p in fresh.iterdir())
    assert committed == regenerated, f"file lists differ; regenerate with `{REGENERATE}`"
    differ = [name for name in committed if name != MANIFEST
              and (COMMITTED / name).read_bytes() != (fresh / name).read_bytes()]
    assert not differ, (f"the numerics changed: {differ} no longer reproduce. If intended, run "
                        f"`{REGENERATE}` and review the diff")
    # the manifest too, except the generator's version (a release bump is not a numerics change)
    old, new = _manifest(COMMITTED), _manifest(fresh)
    old["generator"]["version"] = new["generator"]["version"]
    assert old == new, f"MANIFEST.json differs; regenerate with `{REGENERATE}`"


def test_committed_set_is_small():
    total = sum(p.stat().st_size for p in COMMITTED.iterdir())
    assert total <= 2 * 1024 * 1024, total


def test_committed_set_verifies_on_reference_and_every_kernel_path():
    report = verify(COMMITTED)
    assert report.ok, "\n".join(report.failures)
    for case in _manifest(COMMITTED)["cases"]:
        ops = backends.ops_for(case["params"])
        expected = {"reference"} | {b for op in ops for b in OPS[op].backends}
        assert set(report.passed[case["name"]]) == expected, case["name"]
        assert {f"output.{op}" for op in ops} <= set(case["tensors"])


# ---- coverage --------------------------------------------------------------------------------

def test_every_registry_op_and_format_is_exported_and_verified():
    """Both come from the tables: every op some case's format accepts, every format a case."""
    from tmac.formats import FORMATS

    assert {op for p in cases.CASES for op in backends.ops_for(p)} == set(OPS)
    assert {p["scheme"] for p in cases.CASES} == set(FORMATS)
    for op in OPS:
        assert f"output.{op}" in cases.TENSORS


def test_unknown_registry_op_is_an_error():
    with pytest.raises(KeyError, match="new_op"):
        backends.applies("new_op", cases.CASES[0])


def test_cases_cover_the_contract():
    params = cases.CASES
    uniform = [p for p in params if p["scheme"] in ("asym", "sym")]
    assert {p["bits"] for p in uniform if p["scheme"] == "asym"} == {1, 2, 3, 4}
    assert {p["bits"] for p in uniform if p["scheme"] == "sym"} == {1, 2, 3, 4}
    assert {p["scheme"] for p in params} >= {"asym", "sym", "ternary", "m0e4", "e2m1"}
    assert {p["lut"] for p in params} == {"int8", "float32", "none"}
    assert {p["n"] == 1 for p in params} == {True, False}
    assert any(p["m"] % 64 and p["m"] > 64 for p in params)          # more than one row tile
    assert any(p["k"] % 4 for p in params)                             # K padded to Kp
    assert any(p["k"] % 16 for p in params)                            # partial 16-column unit
    assert len({p["group_size"] for p in params}) >= 4
    assert len({p["act_group_size"] for p in params}) >= 4
    assert any(p["act_group_size"] > p["group_size"] for p in params)
    assert any(p["act_group_size"] < p["group_size"] for p in params)
    assert {p["x_pattern"] for p in params} == set(cases.X_PATTERNS)
    assert len({p["name"] for p in params}) == len(params)


def test_ties_case_exercises_round_half_to_even(fresh):
    tensors, _ = container.read(fresh / "b4_sym_m5k36_g12_a12_int8_n2_ties.safetensors")
    t = tensors["tables.float"]
    assert np.all(tensors["tables.scales"] == 1)
    halves = np.abs(t - np.trunc(t)) == 0.5
    assert halves.sum() > 50
    assert np.all(np.abs(tensors["tables.int8"][halves]) % 2 == 0)    # every tie went to even
    assert tensors["tables.int8"].max() == 127


# ---- the container ---------------------------------------------------------------------------

def test_container_round_trip_every_dtype():
    tensors = {f"t{tag}": np.arange(12, dtype=dt).reshape(3, 4) for tag, dt in container.DTYPES.items()}
    tensors["empty"] = np.zeros((0, 5), np.float32)
    tensors["scalar"] = np.array(2.5, np.float32)
    blob = container.encode(tensors, {"a": "b"})
    assert (8 + struct.unpack("<Q", blob[:8])[0]) % 8 == 0         # data region 8-aligned
    path = Path(__import__("tempfile").mkdtemp()) / "x.safetensors"
    path.write_bytes(blob)
    back, meta = container.read(path)
    assert meta == {"a": "b"} and list(back) == list(tensors)
    for name, array in tensors.items():
        assert back[name].dtype == array.dtype and np.array_equal(back[name], array)


def test_safetensors_package_reads_our_files(fresh):
    try:
        from safetensors import safe_open
        from safetensors.numpy import load_file
    except ImportError:
        pytest.skip("safetensors not installed")
    for case in _manifest(fresh)["cases"]:
        path = fresh / case["file"]
        ours, metadata = container.read(path)
        theirs = load_file(str(path))
        assert set(theirs) == set(ours)
        for name, array in ours.items():
            assert theirs[name].dtype == array.dtype and theirs[name].shape == array.shape
            assert theirs[name].tobytes() == array.tobytes(), (case["name"], name)
        with safe_open(str(path), framework="numpy") as f:
            assert f.metadata() == metadata


def _blob(header, data=b"", raw_header=None):
    text = raw_header if raw_header is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


HOSTILE = {
    "empty file": b"",
    "truncated length": b"\x10\x00\x00",
    "header past end": struct.pack("<Q", 100) + b"{}",
    "oversized header length": struct.pack("<Q", 1 << 62) + b"{}",
    "header length just over the limit": struct.pack("<Q", container.MAX_HEADER_BYTES + 1) + b"{}",
    "not json": _blob(None, raw_header=b"{not json"),
    "not utf-8": _blob(None, raw_header=b'{"\xff": 1}'),
    "header is a list": _blob([1, 2]),
    "unknown dtype": _blob({"a": {"dtype": "F8_E4M3", "shape": [1], "data_offsets": [0, 1]}}, b"\0"),
    "fp4 dtype": _blob({"a": {"dtype": "F4", "shape": [2], "data_offsets": [0, 1]}}, b"\0"),
    "negative shape": _blob({"a": {"dtype": "U8", "shape": [-1], "data_offsets": [0, 0]}}),
    "bool in shape": _blob({"a": {"dtype": "U8", "shape": [True], "data_offsets": [0, 1]}}, b"\0"),
    "float offsets": _blob({"a": {"dtype": "U8", "shape": [1], "data_offsets": [0.0, 1.0]}}, b"\0"),
    "offsets do not match shape": _blob({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}},
                                        b"\0" * 4),
    "offsets past the end": _blob({"a": {"dtype": "U8", "shape": [8], "data_offsets": [0, 8]}}, b"\0" * 4),
    "absurd shape": _blob({"a": {"dtype": "F32", "shape": [1 << 40, 1 << 40],
                                 "data_offsets": [0, 4 << 80]}}, b"\0" * 16),
    "absurd shape, small span": _blob({"a": {"dtype": "F32", "shape": [1 << 31, 1 << 31],
                                             "data_offsets": [0, 16]}}, b"\0" * 16),
    "overlap": _blob({"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
                      "b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]}}, b"\0" * 6),
    "gap": _blob({"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
                  "b": {"dtype": "U8", "shape": [2], "data_offsets": [4, 6]}}, b"\0" * 6),
    "trailing bytes": _blob({"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}}, b"\0" * 9),
    "duplicate name": _blob(None, raw_header=b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
                                             b'"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}'),
    "extra key": _blob({"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1], "x": 1}}, b"\0"),
    "metadata not strings": _blob({"__metadata__": {"a": 1}}),
    "too many dims": _blob({"a": {"dtype": "U8", "shape": [1] * 9, "data_offsets": [0, 1]}}, b"\0"),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_container_is_refused_clearly(tmp_path, kind):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(HOSTILE[kind])
    tracemalloc.start()
    try:
        with pytest.raises(GoldenFormatError) as error:
            container.read(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(path) in str(error.value)
    assert peak < 4 << 20, f"{kind}: {peak} bytes allocated"


def test_oversized_file_is_refused_before_reading(tmp_path):
    path = tmp_path / "big.safetensors"
    with open(path, "wb") as f:
        f.truncate(container.MAX_FILE_BYTES + 1)      # sparse: costs no disk
    with pytest.raises(GoldenFormatError, match="limit"):
        container.read(path)


# ---- verify finds and names every kind of damage ---------------------------------------------

def _copy(fresh, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(fresh, target)
    return target


def _rewrite(directory, file_name, tensors, metadata):
    """Replace a case file and fix its checksum, as a careless regeneration would."""
    blob = container.write(directory / file_name, tensors, metadata)
    manifest = _manifest(directory)
    manifest["files"][file_name] = {"sha256": hashlib.sha256(blob).hexdigest(), "size": len(blob)}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1))


def test_verify_names_case_tensor_index_and_values(fresh, tmp_path):
    directory = _copy(fresh, tmp_path)
    case = "b2_asym_m5k36_g12_a12_int8_n1"
    tensors, metadata = container.read(directory / f"{case}.safetensors")
    tensors = {k: np.array(v) for k, v in tensors.items()}
    tensors["sums.combined"][0, 3, 1] += 1
    tensors["output.lut_matmul"][0, 2] = np.nextafter(tensors["output.lut_matmul"][0, 2], np.inf)
    _rewrite(directory, f"{case}.safetensors", tensors, metadata)
    report = verify(directory, only_backends=["portable"])
    text = "\n".join(report.failures)
    assert f"case {case}: tensor sums.combined [reference]: first difference at index [0, 3, 1]" in text
    assert f"case {case}: tensor output.lut_matmul [portable]: first difference at index [0, 2]" in text
    assert "0x" in text                                           # float bit patterns shown
    assert report.passed[case] == []
    assert all(report.passed[c["name"]] for c in _manifest(directory)["cases"] if c["name"] != case)


def test_verify_checks_checksums_missing_and_unlisted_files(fresh, tmp_path):
    directory = _copy(fresh, tmp_path)
    first, second = [c["file"] for c in _manifest(directory)["cases"][:2]]
    data = bytearray((directory / first).read_bytes())
    data[-1] ^= 0x40
    (directory / first).write_bytes(bytes(data))
    (directory / second).unlink()
    (directory / "stray.bin").write_bytes(b"x")
    report = verify(directory, kernels=False)
    text = "\n".join(report.failures)
    assert f"file {first}: sha256" in text
    assert f"file {second}: missing" in text
    assert "file stray.bin: present but not listed" in text


def test_verify_refuses_bad_manifests(fresh, tmp_path):
    directory = _copy(fresh, tmp_path)
    manifest = _manifest(directory)
    for change, message in [
        (lambda m: m.update(schema_version=99), "schema_version 99"),
        (lambda m: m["files"].update({"../escape": {"sha256": "0", "size": 1}}), "plain file name"),
        (lambda m: m["cases"][0]["params"].update(m=10**9), "out of range"),
        (lambda m: m["cases"][0]["params"].update(scheme="q9"), "unknown scheme"),
        (lambda m: m.update(format="other"), "not a tmac-golden manifest"),
    ]:
        broken = json.loads(json.dumps(manifest))
        change(broken)
        (directory / MANIFEST).write_text(json.dumps(broken))
        with pytest.raises(GoldenFormatError, match=message):
            verify(directory, kernels=False)
    (directory / MANIFEST).write_text("{")
    with pytest.raises(GoldenFormatError, match="not valid UTF-8 JSON"):
        verify(directory, kernels=False)


def test_verify_reports_a_hostile_case_file_without_crashing(fresh, tmp_path):
    directory = _copy(fresh, tmp_path)
    case = _manifest(directory)["cases"][0]
    blob = HOSTILE["oversized header length"]
    (directory / case["file"]).write_bytes(blob)
    manifest = _manifest(directory)
    manifest["files"][case["file"]] = {"sha256": hashlib.sha256(blob).hexdigest(), "size": len(blob)}
    (directory / MANIFEST).write_text(json.dumps(manifest))
    report = verify(directory, kernels=False)
    assert any(f.startswith(f"case {case['name']}:") and "header length" in f for f in report.failures)


# ---- export leaves nothing half-written ------------------------------------------------------

def test_export_refuses_a_non_empty_directory(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(OSError, match="not empty"):
        export(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_failed_export_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken(params, w, x, ops):
        if params["name"] == cases.CASES[3]["name"]:
            raise RuntimeError("boom")
        return real(params, w, x, ops)

    real = cases.stages
    monkeypatch.setattr(cases, "stages", broken)
    with pytest.raises(RuntimeError, match="boom"):
        export(tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
    # replacing an existing export: the old one survives a failure untouched
    old = tmp_path / "old"
    old.mkdir()
    (old / "a").write_text("x")
    with pytest.raises(RuntimeError, match="boom"):
        export(old, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"] and (old / "a").read_text() == "x"


def test_force_replaces_and_index_lists_cases(tmp_path):
    target = tmp_path / "g"
    target.mkdir()
    (target / "old.txt").write_text("x")
    subset = [cases.CASES[0], cases.CASES[-1]]
    export(target, force=True, case_list=subset)
    assert not (target / "old.txt").exists()
    assert (target / INDEX).read_text().split() == [f"{c['name']}.safetensors" for c in subset]
    assert [p.name for p in tmp_path.iterdir()] == ["g"]


# ---- the command line ------------------------------------------------------------------------

def test_cli_export_and_verify(tmp_path, capsys, fresh):
    assert cli_main(["golden", "verify", str(fresh), "--isa", "portable", "--quiet"]) == 0
    assert "0 failures: OK" in capsys.readouterr().out
    directory = _copy(fresh, tmp_path)
    (directory / MANIFEST).write_text("[]")
    assert cli_main(["golden", "verify", str(directory), "--reference-only"]) == 1
    assert "not a tmac-golden manifest" in capsys.readouterr().out
    assert cli_main(["golden", "export", str(directory)]) == 2          # not empty, no --force
    assert "not empty" in capsys.readouterr().err
