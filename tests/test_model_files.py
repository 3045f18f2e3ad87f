"""Hostile GGUF files: truncated at every section boundary, flipped bytes, counts, sizes and
offsets that point outside the file, wrong magic and version. Each gives a clear ValueError
(CorruptModelError or UnsupportedModelError) and allocates no more than the file justifies."""

import struct
import tracemalloc

import numpy as np
import pytest

pytest.importorskip("gguf", reason="the 'model' extra (gguf) is not installed")

from tmac.model import loader, tiny  # noqa: E402


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    path = tiny.write_tiny_llama(tmp_path_factory.mktemp("gguf") / "tiny.gguf")
    import gguf

    reader = gguf.GGUFReader(str(path))
    boundaries = {0, 3, 4, 8, 16, 24, reader.data_offset}
    boundaries |= {int(f.offset) for f in reader.fields.values()}
    boundaries |= {int(t.data_offset) for t in reader.tensors}
    boundaries |= {int(t.data_offset) + int(t.n_bytes) // 2 for t in reader.tensors}
    first = reader.tensors[0].field
    name_len = int(first.parts[0][0])
    dims_offset = int(first.offset) + 8 + name_len + 4
    return path, path.read_bytes(), sorted(boundaries), dims_offset


def load_bytes(tmp_path, blob):
    path = tmp_path / "hostile.gguf"
    path.write_bytes(blob)
    tracemalloc.start()
    try:
        loader.load(path)
        return None, tracemalloc.get_traced_memory()[1]
    except ValueError as error:                   # CorruptModelError, UnsupportedModelError
        return error, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_intact_file_loads(tiny_file, tmp_path):
    _, data, _, _ = tiny_file
    error, _ = load_bytes(tmp_path, data)
    assert error is None


def test_truncation_at_every_section_boundary(tiny_file, tmp_path):
    _, data, boundaries, _ = tiny_file
    for cut in boundaries + [len(data) - 1]:
        if cut >= len(data):
            continue
        error, peak = load_bytes(tmp_path, data[:cut])
        assert isinstance(error, loader.CorruptModelError), (cut, error)
        assert "hostile.gguf" in str(error)
        assert peak < 64 * len(data) + (1 << 20), (cut, peak)


@pytest.mark.parametrize("offset, value, fmt, words", [
    (0, b"GGUX", None, "not a GGUF file"),
    (4, 1, "<I", "version 1"),
    (4, 99, "<I", "version 99"),
    (8, 1 << 40, "<Q", "damaged"),            # tensor count far beyond the file
    (16, 1 << 40, "<Q", "damaged"),           # metadata count far beyond the file
])
def test_wrong_magic_version_and_counts(tiny_file, tmp_path, offset, value, fmt, words):
    _, data, _, _ = tiny_file
    blob = bytearray(data)
    patch = value if fmt is None else struct.pack(fmt, value)
    blob[offset:offset + len(patch)] = patch
    error, peak = load_bytes(tmp_path, bytes(blob))
    assert isinstance(error, loader.CorruptModelError) and words in str(error)
    assert peak < 64 * len(data) + (1 << 20)


@pytest.mark.parametrize("dim", [1 << 40, 1 << 62, 0])
def test_absurd_tensor_size_or_data_outside_the_file(tiny_file, tmp_path, dim):
    _, data, _, dims_offset = tiny_file
    blob = bytearray(data)
    blob[dims_offset:dims_offset + 8] = struct.pack("<Q", dim)
    error, peak = load_bytes(tmp_path, bytes(blob))
    assert isinstance(error, ValueError)
    assert peak < 64 * len(data) + (1 << 20)


def test_flipped_bytes_give_clear_errors_or_a_valid_model(tiny_file, tmp_path):
    _, data, boundaries, _ = tiny_file
    rng = np.random.default_rng(0)
    header_end = boundaries[-1]
    outcomes = set()
    for _ in range(60):
        blob = bytearray(data)
        for position in rng.integers(0, header_end, size=2):
            blob[position] ^= 1 << int(rng.integers(0, 8))
        error, peak = load_bytes(tmp_path, bytes(blob))
        assert error is None or isinstance(error, ValueError)
        assert peak < 64 * len(data) + (1 << 20)
        outcomes.add(type(error).__name__)
    assert "CorruptModelError" in outcomes


def test_non_finite_weights_are_refused(tiny_file, tmp_path):
    import gguf

    path, data, _, _ = tiny_file
    reader = gguf.GGUFReader(str(path))
    f32 = next(t for t in reader.tensors if t.tensor_type.name == "F32")
    blob = bytearray(data)
    start = int(f32.data_offset)
    blob[start:start + 4] = struct.pack("<f", float("nan"))
    error, _ = load_bytes(tmp_path, bytes(blob))
    assert isinstance(error, loader.CorruptModelError) and "NaN" in str(error)
