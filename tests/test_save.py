"""tmac.save / tmac.load: every format of the table at every width round-trips bit for bit at its
packed size, the file holds what docs/golden-format.md says (checked against the original weight,
not through tmac's reader), and corrupt files are refused with one line naming the file."""

import os
from pathlib import Path

import numpy as np
import pytest

import tmac
from tmac.formats import FORMATS, QuantizedWeight
from tmac.golden import container

CASES = [(name, bits) for name, fmt in FORMATS.items() for bits in fmt.widths]
M = 5                 # not a multiple of the 64-row tile; M * K is not a multiple of 8


def k_of(name):
    """36 (not a multiple of the 16-column unit), or one block of a block type."""
    return FORMATS[name].k_multiple if FORMATS[name].k_multiple > 1 else 36


def group_of(name):
    return 12 if FORMATS[name].k_multiple == 1 else None


def make(name, bits, m=M, k=None, group_size="default", seed=0):
    k = k or k_of(name)
    w = (np.random.default_rng(seed).standard_normal((m, k)) * 0.05).astype(np.float32)
    return tmac.quantize(w, bits=bits, scheme=name,
                         group_size=group_of(name) if group_size == "default" else group_size)


@pytest.fixture(scope="module")
def weights():
    return {(name, bits): make(name, bits) for name, bits in CASES}


def same_bits(a, b):
    """Equal dtype, shape and bytes (so -0.0 != +0.0 and every float16 pattern counts)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def parts(value):
    return value if isinstance(value, tuple) else (value,)


def assert_identical(got, want):
    assert isinstance(got, QuantizedWeight)
    assert (got.scheme, got.bits, got.group_size, got.shape, got.nbytes) == \
        (want.scheme, want.bits, want.group_size, want.shape, want.nbytes)
    for field in ("codes", "scales", "zeros"):
        assert same_bits(getattr(got, field), getattr(want, field)), field
    assert (got.params is None) == (want.params is None)
    for a, b in zip(got.params or (), want.params or ()):
        assert same_bits(a, b)
    assert (got.packed is None) == (want.packed is None)
    if want.packed is not None:
        g, w = got.packed, want.packed
        assert (g.m, g.k, g.bits, g.form) == (w.m, w.k, w.bits, w.form)
        assert same_bits(g.data, w.data)
        for name in ("scales_t", "zeros_t"):
            pg, pw = parts(getattr(g, name)), parts(getattr(w, name))
            assert len(pg) == len(pw) and all(same_bits(x, y) for x, y in zip(pg, pw)), name


def planes_of(codes, bits):
    """The layout's codes tensor, written out from its definition (not tmac's packer): plane i,
    code j (row-major) at bit 7 - j % 8 of byte j // 8, zero padding."""
    flat = codes.reshape(-1).astype(np.int64)
    nbytes = -(-flat.size // 8)
    out = np.zeros((bits, nbytes), np.uint8)
    j = np.arange(flat.size)
    for i in range(bits):
        np.add.at(out[i], j // 8, (((flat >> i) & 1) << (7 - j % 8)).astype(np.uint8))
    return out


def widen(stored):
    a = np.asarray(stored)
    return (a.view(np.float16) if a.dtype == np.uint16 else a).astype(np.float32)


def is_native(qw):
    return hasattr(qw.format, "from_blocks") and qw.packed.form != "zero_point"


# ---- round trips -------------------------------------------------------------------------------

@pytest.mark.parametrize("name, bits", CASES)
def test_every_format_round_trips_bit_for_bit(weights, tmp_path, name, bits):
    qw = weights[name, bits]
    path = tmp_path / f"{name}{bits}.safetensors"
    tmac.save(path, qw)
    assert_identical(tmac.load(path), qw)
    assert_identical(tmac.load(str(path)), qw)


@pytest.mark.parametrize("name, bits", CASES)
def test_the_file_holds_the_documented_layout(weights, tmp_path, name, bits):
    """Read with the container alone and compared with the original weight's own fields."""
    qw, path = weights[name, bits], tmp_path / "w.safetensors"
    tmac.save(path, qw)
    tensors, meta = container.read(path)
    m, k = qw.shape
    assert meta == {"tmac.format": "tmac-weight", "tmac.version": "1",
                    "tmac.generator": f"tmac {tmac.__version__}", "scheme": name,
                    "bits": str(bits), "group_size": str(qw.group_size), "shape": f"{m},{k}",
                    "layout": "ggml" if is_native(qw) else "planes"}
    if is_native(qw):
        assert list(tensors) == ["ggml.blocks"]
        block = qw.format.block
        assert same_bits(tensors["ggml.blocks"], qw.format.blocks(qw))
        assert tensors["ggml.blocks"].shape == (m, k // block.block_size * block.type_size)
        return
    params = ["scales", "zeros"] + [f"params.{p}" for p in qw.format.param_names]
    assert list(tensors) == ["codes"] + params
    assert same_bits(tensors["codes"], planes_of(np.asarray(qw.codes), bits))
    for name_, want in zip(params, (qw.scales, qw.zeros) + (qw.params or ())):
        stored = tensors[name_]
        assert container.TAGS[stored.dtype] in ("F32", "U16", "U8")
        assert same_bits(np.broadcast_to(widen(stored), want.shape), want), name_
        if stored.shape == ():
            assert (np.asarray(want) == want.flat[0]).all()


def test_the_safetensors_library_reads_the_file(weights, tmp_path):
    safetensors = pytest.importorskip("safetensors", reason="the 'golden' extra (safetensors) is not installed")
    from safetensors.numpy import load_file

    qw = weights["m0e4", 4]
    tmac.save(tmp_path / "w", qw)
    with safetensors.safe_open(tmp_path / "w", "np") as f:
        assert f.metadata()["scheme"] == "m0e4" and f.metadata()["tmac.format"] == "tmac-weight"
    tensors = load_file(tmp_path / "w")
    assert same_bits(tensors["codes"], planes_of(np.asarray(qw.codes), 4))
    assert same_bits(tensors["params.a"], qw.params[0]) and same_bits(tensors["params.b"], qw.params[1])


def test_unknown_metadata_keys_are_ignored(weights, tmp_path):
    tmac.save(tmp_path / "w", weights["asym", 2])
    noted = rewrite(tmp_path / "w", tmp_path / "noted", meta={"note": "layer 3 q_proj"})
    assert_identical(tmac.load(noted), weights["asym", 2])


def test_block_types_store_the_bytes_of_the_file(tmp_path):
    """A weight made from llama.cpp's bytes is saved as exactly those bytes."""
    rng = np.random.default_rng(3)
    for name in ("q4_k", "q8_0", "tq1_0"):
        fmt = FORMATS[name]
        w = (rng.standard_normal((3, 2 * fmt.k_multiple)) * 0.05).astype(np.float32)
        raw = fmt.block.quantize(w.reshape(-1)).reshape(3, -1)
        qw = fmt.from_blocks(raw, w.shape)
        tmac.save(tmp_path / "w", qw)
        tensors, _ = container.read(tmp_path / "w")
        assert same_bits(tensors["ggml.blocks"], raw)
        assert_identical(tmac.load(tmp_path / "w"), qw)


@pytest.mark.parametrize("qw", [
    make("asym", 3, m=1, k=7, group_size=7),          # one group, K not a multiple of 4
    make("asym", 8, m=70, k=40, group_size=4),
    make("sym", 1, m=2, k=16, group_size=None),
    FORMATS["m0e4"].random(3, 24, 4, 8, np.random.default_rng(1)),
    FORMATS["affine"].random(66, 20, 5, 4, np.random.default_rng(2)),
    FORMATS["e2m1"].random(4, 8, 4, 8, np.random.default_rng(4)),
], ids=["row_k7", "asym8_g4", "sym1_row", "m0e4_random", "affine_random", "e2m1_random"])
def test_other_shapes_round_trip(tmp_path, qw):
    tmac.save(tmp_path / "w", qw)
    assert_identical(tmac.load(tmp_path / "w"), qw)


def test_negative_zero_and_constant_parameters_keep_their_bits(tmp_path):
    codes = np.array([[0, 1, 2, 3]] * 3, np.uint8)
    scales = np.array([[-0.0], [0.5], [0.25]], np.float32)
    for zeros in (np.full((3, 1), -0.0, np.float32), np.array([[-0.0], [0.0], [1.5]], np.float32)):
        qw = QuantizedWeight(codes, scales, zeros, 2, 4, "asym")
        tmac.save(tmp_path / "w", qw)
        assert_identical(tmac.load(tmp_path / "w"), qw)


def test_a_block_type_weight_built_by_hand_is_saved_as_planes(tmp_path):
    """A q4_0 weight not made from blocks (zero-point parameters) keeps its own parameters."""
    rng = np.random.default_rng(5)
    codes = rng.integers(0, 16, (3, 32)).astype(np.uint8)
    scales = rng.random((3, 1)).astype(np.float32)
    qw = QuantizedWeight(codes, scales, np.full((3, 1), 8.0, np.float32), 4, 32, "q4_0")
    tmac.save(tmp_path / "w", qw)
    assert container.read(tmp_path / "w")[1]["layout"] == "planes"
    assert_identical(tmac.load(tmp_path / "w"), qw)


MATMUL_CASES = [("asym", 2), ("sym", 4), ("affine", 3), ("m0e4", 4), ("e2m1", 4), ("q4_0", 4),
                ("q4_1", 4), ("q6_k", 6), ("q4_k", 4)]       # one per parameter form


@pytest.mark.parametrize("name, bits", MATMUL_CASES)
def test_matmul_of_the_loaded_weight_is_bitwise_the_original(weights, tmp_path, name, bits):
    qw = weights[name, bits]
    x = np.random.default_rng(7).standard_normal((2, qw.shape[1])).astype(np.float32)
    tmac.save(tmp_path / "w", qw)
    assert same_bits(tmac.matmul(tmac.load(tmp_path / "w"), x), tmac.matmul(qw, x))


@pytest.mark.parametrize("name, bits, group_size", [
    ("asym", 1, 32), ("asym", 2, 32), ("asym", 4, 32), ("sym", 4, 32), ("affine", 4, 32),
    ("m0e4", 4, 32), ("e2m1", 4, 32), ("q4_k", 4, None), ("q4_0", 4, None), ("q6_k", 6, None)])
def test_the_file_is_the_packed_size(tmp_path, name, bits, group_size):
    qw = make(name, bits, m=64, k=512, group_size=group_size)
    tmac.save(tmp_path / "w", qw)
    size = os.path.getsize(tmp_path / "w")
    with open(tmp_path / "w", "rb") as f:
        header = 8 + int.from_bytes(f.read(8), "little")
    assert size <= qw.nbytes * 1.05 + header, (size, qw.nbytes, header)
    assert header <= 1024


def test_save_replaces_a_file_atomically_and_leaves_nothing_else(weights, tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"old")
    tmac.save(path, weights["asym", 2])
    assert_identical(tmac.load(path), weights["asym", 2])
    assert os.listdir(tmp_path) == ["w.safetensors"]


# ---- bad arguments ----------------------------------------------------------------------------

@pytest.mark.parametrize("value", [np.zeros((4, 4), np.float32), None, "w", (1, 2)])
def test_save_refuses_what_is_not_a_quantized_weight(tmp_path, value):
    with pytest.raises(TypeError, match="qw must be a tmac.QuantizedWeight"):
        tmac.save(tmp_path / "w", value)
    assert not (tmp_path / "w").exists()


def test_bad_paths(weights, tmp_path):
    with pytest.raises(TypeError, match="path"):
        tmac.save(3, weights["asym", 2])
    with pytest.raises(TypeError, match="path"):
        tmac.load(None)
    with pytest.raises(FileNotFoundError):
        tmac.load(tmp_path / "missing.safetensors")


# ---- corrupt files ------------------------------------------------------------------------------

def rewrite(src, dst, tensors=None, meta=None, drop=()):
    """A copy of the file at ``src`` with tensors and metadata entries replaced or dropped."""
    old_tensors, old_meta = container.read(src)
    new_tensors = {k: v for k, v in {**old_tensors, **(tensors or {})}.items() if k not in drop}
    new_meta = {k: v for k, v in {**old_meta, **(meta or {})}.items()
                if k not in drop and v is not None}
    dst.write_bytes(container.encode(new_tensors, new_meta))
    return dst


@pytest.fixture
def saved(weights, tmp_path):
    """name -> path of a good file: a planes weight with params, a planes one, a native one."""
    out = {}
    for name, bits in (("asym", 2), ("m0e4", 4), ("q4_k", 4), ("e2m1", 4)):
        out[name] = tmp_path / f"{name}.safetensors"
        tmac.save(out[name], weights[name, bits])
    return out


G = 36 // 12
CORRUPT = [  # (source, what changes, the words the message must hold)
    ("asym", dict(meta={"tmac.format": "tmac-golden"}), "not a tmac weight file"),
    ("asym", dict(drop=("tmac.format",)), "tmac.format is missing"),
    ("asym", dict(meta={"tmac.version": "2"}), "reads version 1"),
    ("asym", dict(drop=("tmac.version",)), "tmac.version is missing"),
    ("asym", dict(drop=("bits",)), "'bits' is missing"),
    ("asym", dict(meta={"bits": "two"}), "bits must be a decimal integer"),
    ("asym", dict(meta={"bits": "9"}), "bits 9 is not a width"),
    ("asym", dict(meta={"bits": "9" * 5000}), "bits must be a decimal integer"),
    ("asym", dict(meta={"shape": "5," + "9" * 5000}), "shape must be 'M,K'"),
    ("asym", dict(meta={"bits": "3"}), "2 bit planes but bits is 3"),
    ("e2m1", dict(meta={"bits": "3"}), "bits 3 is not a width of scheme 'e2m1'"),
    ("asym", dict(meta={"shape": "5x36"}), "shape must be 'M,K'"),
    ("asym", dict(meta={"shape": "0,36"}), "shape must be 'M,K'"),
    ("asym", dict(meta={"shape": "5,37"}), "does not divide K=37"),
    ("asym", dict(meta={"group_size": "0"}), "group_size 0 does not divide"),
    ("asym", dict(meta={"scheme": "q9_z"}), "scheme 'q9_z' is not a format"),
    ("asym", dict(meta={"layout": "kernel"}), "layout 'kernel' is not one of"),
    ("asym", dict(meta={"layout": "ggml"}), "scheme 'asym' is not one"),
    ("asym", dict(meta={"bits": "1"}), "2 bit planes but bits is 1 (codes out of range"),
    ("asym", dict(drop=("zeros",)), "tensor 'zeros' is missing"),
    ("m0e4", dict(drop=("params.b",)), "tensor 'params.b' is missing"),
    ("asym", dict(tensors={"extra": np.zeros(3, np.uint8)}), "unexpected tensor 'extra'"),
    ("asym", dict(tensors={"scales": np.ones((M, G + 1), np.float32)}),
     "tensor 'scales' is F32 [5, 4], expected F32 or U16 or U8 [5, 3] or []"),
    ("asym", dict(tensors={"scales": np.ones((M, G), np.int32)}), "tensor 'scales' is I32"),
    ("asym", dict(tensors={"codes": np.zeros((2, 23), np.uint16)}), "tensor 'codes' is U16"),
    ("asym", dict(tensors={"codes": np.zeros((2, 22), np.uint8)}), "tensor 'codes' is U8 [2, 22]"),
    ("asym", dict(tensors={"codes": np.full((2, 23), 0xFF, np.uint8)}), "bits past the last code"),
    ("asym", dict(tensors={"scales": np.full((M, G), np.nan, np.float32)}), "scales must be finite"),
    ("asym", dict(tensors={"zeros": np.full((), 0x7C00, np.uint16)}), "zeros must be finite"),
    ("m0e4", dict(tensors={"params.a": np.full((M, G), -1.0, np.float32)}), "params a must be > 0"),
    ("q4_k", dict(tensors={"ggml.blocks": np.zeros((M, 143), np.uint8)}),
     "tensor 'ggml.blocks' is U8 [5, 143], expected U8 [5, 144]"),
    ("q4_k", dict(meta={"bits": "5"}), "bits 5 is not a width of scheme 'q4_k' (4)"),
    ("q4_k", dict(meta={"group_size": "16"}), "do not fit Q4_K"),
    ("q4_k", dict(meta={"shape": "5,128", "group_size": "32"}), "do not fit Q4_K"),
    ("q4_k", dict(tensors={"ggml.blocks": np.full((M, 144), 0xFF, np.uint8)}),
     "Q4_K block parameter d is NaN or Inf"),
]


@pytest.mark.parametrize("source, change, words", CORRUPT, ids=[c[2][:40] for c in CORRUPT])
def test_corrupt_files_are_refused_with_one_line_naming_the_file(saved, tmp_path, source, change,
                                                                 words):
    bad = rewrite(saved[source], tmp_path / "bad.safetensors", **change)
    with pytest.raises(ValueError) as error:
        tmac.load(bad)
    message = str(error.value)
    assert message.startswith(f"{bad}: ") and "\n" not in message, message
    assert words in message, message


@pytest.mark.parametrize("cut", [0, 5, 8, 12, 100, -1, -40])
def test_truncated_files_are_refused(saved, tmp_path, cut):
    data = saved["asym"].read_bytes()
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(data[:cut])
    with pytest.raises(ValueError, match="truncated|runs past|past the end") as error:
        tmac.load(bad)
    assert str(error.value).startswith(f"{bad}: ") and "\n" not in str(error.value)


def test_a_golden_case_file_is_not_a_weight():
    golden = sorted((Path(__file__).parent / "golden").glob("*.safetensors"))[0]
    with pytest.raises(ValueError, match="tmac.format is missing"):
        tmac.load(golden)


@pytest.mark.parametrize("source", ["asym", "q4_k"])
def test_flipped_bytes_load_a_valid_weight_or_are_refused(saved, tmp_path, source):
    """Whatever one flipped byte does, load gives a ValueError or a weight the kernels take."""
    data = bytearray(saved[source].read_bytes())
    rng = np.random.default_rng(11)
    x = np.ones((1, int(container.read(saved[source])[1]["shape"].split(",")[1])), np.float32)
    bad = tmp_path / "flip.safetensors"
    for position in rng.choice(len(data), 48, replace=False):
        flipped = bytearray(data)
        flipped[position] ^= 1 << int(rng.integers(8))
        bad.write_bytes(bytes(flipped))
        try:
            qw = tmac.load(bad)
        except ValueError as error:
            assert str(error).startswith(f"{bad}: ") and "\n" not in str(error)
            continue
        y = tmac.matmul(qw, x)                     # no crash (values may overflow)
        assert y.shape == (1, qw.shape[0]) and y.dtype == np.float32
