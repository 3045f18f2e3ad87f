"""tmac.reference.ggml against gguf-py, the independent oracle: dequantization bit for bit,
encode/decode exact inverses, the reference quantizers byte for byte, and the real SmolLM2 file."""
import numpy as np
import pytest

gguf = pytest.importorskip("gguf", reason="the 'model' extra (gguf) is not installed")

from tmac.model import fetch  # noqa: E402
from tmac.reference import ggml  # noqa: E402

QT = gguf.GGMLQuantizationType
NAMES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K",
         "Q5_K", "Q6_K", "TQ1_0", "TQ2_0"]
QUANT = [n for n in NAMES if n not in ("F32", "F16", "BF16")]
GGUF_QUANTIZES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "TQ1_0", "TQ2_0"]
K_QUANTS = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]

# byte offsets of the float16 fields of each block (from llama.cpp's block structs)
F16_FIELDS = {"Q8_0": [0], "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2],
              "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
              "TQ1_0": [52], "TQ2_0": [64]}
EXPECTED = {  # bits, group_size, form, zero, two_level
    "F32": (None, None, "float", None, False), "F16": (None, None, "float", None, False),
    "BF16": (None, None, "float", None, False), "Q8_0": (8, 32, "symmetric", 128, False),
    "Q4_0": (4, 32, "symmetric", 8, False), "Q4_1": (4, 32, "affine", None, False),
    "Q5_0": (5, 32, "symmetric", 16, False), "Q5_1": (5, 32, "affine", None, False),
    "Q2_K": (2, 16, "affine", None, True), "Q3_K": (3, 16, "symmetric", 4, True),
    "Q4_K": (4, 32, "affine", None, True), "Q5_K": (5, 32, "affine", None, True),
    "Q6_K": (6, 16, "symmetric", 32, True), "TQ1_0": (2, 256, "symmetric", 1, False),
    "TQ2_0": (2, 256, "symmetric", 1, False)}


def bits(a):
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def assert_same_floats(mine, theirs):
    assert mine.dtype == np.float32 and mine.shape == theirs.shape
    np.testing.assert_array_equal(bits(mine), bits(theirs))


def gguf_dequantize(name, raw):
    return gguf.quants.dequantize(raw, QT[name]).reshape(raw.shape[0], -1)


def random_f16(rng, n, reasonable):
    """Finite float16 numbers: magnitudes 2^-20 .. 2^2 with either sign, or any finite bits."""
    if reasonable:
        v = rng.choice([-1, 1], n) * 2.0 ** rng.uniform(-20, 2, n)
        return v.astype(np.float16)
    h = rng.integers(0, 1 << 16, n, dtype=np.uint16)
    h = np.where((h & 0x7C00) == 0x7C00, h & 0x83FF, h)     # exponent 31 (Inf/NaN) -> 0
    return h.view(np.float16)


def weights(rng, n_blocks, block_size):
    """Normal weights with special blocks: all zero, large, tiny, one outlier, equal values."""
    w = rng.standard_normal((n_blocks, block_size)).astype(np.float32)
    w[0] = 0
    w[1] *= 1e4
    w[2] *= 1e-6
    w[3, 5] = 50
    w[4] = 0.25
    w[5, ::3] = 0
    return w


def gguf_blocks(name, rng):
    bt = ggml.get(name)
    raws = []
    for n_rows, n_cols in [(8, 256), (8, 512), (16, 1024)]:
        w = weights(rng, n_rows * n_cols // bt.block_size, bt.block_size).reshape(n_rows, n_cols)
        raws.append(gguf.quants.quantize(w, QT[name]).reshape(-1, bt.type_size))
    return np.concatenate(raws)


def random_decoded(name, rng, n, reasonable=True):
    bt = ggml.get(name)
    top = 2 if name == "TQ1_0" else (1 << bt.bits) - 1
    codes = rng.integers(0, top + 1, (n, bt.block_size), dtype=np.uint8)
    f = {"d": random_f16(rng, n, reasonable)}
    if name in ("Q4_1", "Q5_1"):
        f["m"] = random_f16(rng, n, reasonable)
    if bt.two_level:
        n_sub = bt.block_size // bt.group_size
        if bt.form == "affine":
            s_max = 15 if name == "Q2_K" else 63
            f["dmin"] = random_f16(rng, n, reasonable)
            f["sc"] = rng.integers(0, s_max + 1, (n, n_sub), dtype=np.uint8)
            f["mn"] = rng.integers(0, s_max + 1, (n, n_sub), dtype=np.uint8)
        else:
            r = 32 if name == "Q3_K" else 128
            f["sc"] = rng.integers(-r, r, (n, n_sub), dtype=np.int8)
    return ggml.Decoded(name, codes, **f)


def random_bytes(name, rng, n, reasonable=False):
    bt = ggml.get(name)
    raw = rng.integers(0, 256, (n, bt.type_size), dtype=np.uint8)
    for off in F16_FIELDS[name]:
        raw[:, off:off + 2] = random_f16(rng, n, reasonable).reshape(-1, 1).view(np.uint8)
    return raw


def synthetic_blocks(name, seed=0):
    """Every kind of test block for a quantized type (uint8 (n, type_size))."""
    rng = np.random.default_rng(seed)
    bt = ggml.get(name)
    raws = [bt.encode(random_decoded(name, rng, 64, reasonable=True)),
            bt.encode(random_decoded(name, rng, 64, reasonable=False)),
            random_bytes(name, rng, 64, reasonable=False),
            random_bytes(name, rng, 64, reasonable=True)]
    if name in GGUF_QUANTIZES:
        raws.append(gguf_blocks(name, rng))
    return np.concatenate(raws)


def float_blocks(name, seed=0):
    rng = np.random.default_rng(seed)
    bt = ggml.get(name)
    raw = rng.integers(0, 256, (4096, bt.type_size), dtype=np.uint8)     # every kind of bits
    w = weights(rng, 8, 64).reshape(-1)
    extra = np.ascontiguousarray(gguf.quants.quantize(w, QT[name])).view(np.uint8)
    return np.concatenate([raw, extra.reshape(-1, bt.type_size)])


# ---------------------------------------------------------------------------------------------
# Registry and attributes
# ---------------------------------------------------------------------------------------------

def test_block_types_registry_and_attributes():
    assert list(ggml.BLOCK_TYPES) == NAMES
    for name in NAMES:
        bt = ggml.get(name)
        assert bt is ggml.BLOCK_TYPES[name] and bt.name == name
        assert (bt.block_size, bt.type_size) == gguf.GGML_QUANT_SIZES[QT[name]]
        assert (bt.bits, bt.group_size, bt.form, bt.zero, bt.two_level) == EXPECTED[name]
    assert ggml.get(QT.Q4_K) is ggml.BLOCK_TYPES["Q4_K"]


@pytest.mark.parametrize("qt", [t for t in QT if t.name not in NAMES], ids=lambda t: t.name)
def test_unsupported_types_are_named(qt):
    with pytest.raises(ValueError, match=rf"tensor type {qt.name} is not supported \(tmac reads "
                                         r"F32, F16, BF16, Q8_0"):
        ggml.get(qt.name)


# ---------------------------------------------------------------------------------------------
# Dequantization bit for bit, encode/decode inverses
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", QUANT)
def test_dequantize_equals_gguf_bit_for_bit(name):
    bt = ggml.get(name)
    raw = synthetic_blocks(name)
    assert_same_floats(bt.dequantize(raw), gguf_dequantize(name, raw))
    assert_same_floats(bt.dequantize(raw.reshape(-1)), gguf_dequantize(name, raw))


@pytest.mark.parametrize("name", ["F32", "F16", "BF16"])
def test_float_types_equal_gguf_bit_for_bit(name):
    bt = ggml.get(name)
    raw = float_blocks(name)
    assert_same_floats(bt.dequantize(raw), gguf_dequantize(name, raw))
    dec = bt.decode(raw)
    assert dec.values.dtype == np.float32 and dec.values.shape == (raw.shape[0],)
    assert dec.codes.shape == (raw.shape[0], 0) and dec.d is None and dec.sc is None
    np.testing.assert_array_equal(bt.encode(dec), raw)
    with pytest.raises(ValueError, match="float type"):
        dec.group_params()


@pytest.mark.parametrize("name", ["F32", "F16", "BF16"])
def test_float_quantize_equals_gguf(name):
    rng = np.random.default_rng(1)
    w = np.concatenate([weights(rng, 8, 64).reshape(-1),
                        np.array([np.nan, np.inf, -np.inf, 1e6, 65519, 65520, 1e-8, -0.0],
                                 np.float32),
                        rng.integers(0, 1 << 32, 2048, dtype=np.uint32).view(np.float32)])
    with np.errstate(over="ignore", invalid="ignore"):
        theirs = np.ascontiguousarray(gguf.quants.quantize(w, QT[name])).view(np.uint8)
    np.testing.assert_array_equal(ggml.get(name).quantize(w).reshape(-1), theirs)


@pytest.mark.parametrize("name", QUANT)
def test_encode_decode_inverse(name):
    bt = ggml.get(name)
    raw = synthetic_blocks(name, seed=1)
    dec = bt.decode(raw)
    again = bt.decode(bt.encode(dec))
    for f in ("codes", "d", "m", "dmin", "sc", "mn"):
        a, b = getattr(dec, f), getattr(again, f)
        assert (a is None) == (b is None)
        if a is not None:
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))
    if name == "TQ1_0":
        # trits packed in base 3: only canonical bytes (those llama.cpp writes) come back
        canonical = np.concatenate([raw[:128], raw[256:]])      # encoded and gguf-quantized
        np.testing.assert_array_equal(bt.encode(bt.decode(canonical)), canonical)
    else:
        np.testing.assert_array_equal(bt.encode(dec), raw)


@pytest.mark.parametrize("name", QUANT)
def test_decoded_fields_shapes_dtypes(name):
    bt = ggml.get(name)
    raw = synthetic_blocks(name, seed=2)
    n = raw.shape[0]
    dec = bt.decode(raw)
    assert dec.codes.shape == (n, bt.block_size) and dec.codes.dtype == np.uint8
    top = 2 if name == "TQ1_0" else (1 << bt.bits) - 1
    assert dec.codes.max() <= top
    assert dec.d.shape == (n,) and dec.d.dtype == np.float16 and dec.values is None
    assert (dec.m is not None) == (name in ("Q4_1", "Q5_1"))
    assert (dec.dmin is not None) == (name in ("Q2_K", "Q4_K", "Q5_K"))
    assert (dec.mn is not None) == (name in ("Q2_K", "Q4_K", "Q5_K"))
    assert (dec.sc is not None) == bt.two_level
    for f in ("m", "dmin"):
        if getattr(dec, f) is not None:
            assert getattr(dec, f).dtype == np.float16 and getattr(dec, f).shape == (n,)
    if bt.two_level:
        n_sub = bt.block_size // bt.group_size
        assert dec.sc.shape == (n, n_sub)
        lo, hi, dtype = {"Q2_K": (0, 15, np.uint8), "Q4_K": (0, 63, np.uint8),
                         "Q5_K": (0, 63, np.uint8), "Q3_K": (-32, 31, np.int8),
                         "Q6_K": (-128, 127, np.int8)}[name]
        assert dec.sc.dtype == dtype and lo <= dec.sc.min() and dec.sc.max() <= hi
        if dec.mn is not None:
            assert dec.mn.dtype == np.uint8 and dec.mn.shape == (n, n_sub) and dec.mn.max() <= hi


def test_codes_against_independent_reads():
    """Fields read straight from the bytes (or by gguf's own helper)."""
    rng = np.random.default_rng(3)
    raw = random_bytes("Q8_0", rng, 32)
    np.testing.assert_array_equal(ggml.get("Q8_0").decode(raw).codes,
                                  raw[:, 2:].view(np.int8).astype(np.int16) + 128)
    raw = random_bytes("Q4_0", rng, 32)
    codes = ggml.get("Q4_0").decode(raw).codes
    np.testing.assert_array_equal(codes[:, :16], raw[:, 2:] & 15)
    np.testing.assert_array_equal(codes[:, 16:], raw[:, 2:] >> 4)
    for name in ("Q4_K", "Q5_K"):
        raw = random_bytes(name, rng, 32)
        dec = ggml.get(name).decode(raw)
        sc, mn = gguf.quants.Q4_K.get_scale_min(raw[:, 4:16])
        np.testing.assert_array_equal(dec.sc, sc)
        np.testing.assert_array_equal(dec.mn, mn)
    raw = random_bytes("Q6_K", rng, 32)
    np.testing.assert_array_equal(ggml.get("Q6_K").decode(raw).sc, raw[:, 192:208].view(np.int8))
    raw = random_bytes("Q2_K", rng, 32)
    dec = ggml.get("Q2_K").decode(raw)
    np.testing.assert_array_equal(dec.sc, raw[:, :16] & 15)
    np.testing.assert_array_equal(dec.mn, raw[:, :16] >> 4)


@pytest.mark.parametrize("name", QUANT)
def test_group_params_and_dequantize_formula(name):
    bt = ggml.get(name)
    dec = bt.decode(synthetic_blocks(name, seed=4))
    n, n_sub = dec.codes.shape[0], bt.block_size // bt.group_size
    d = dec.d.astype(np.float32)[:, None]
    scale = d * dec.sc.astype(np.float32) if bt.two_level else d
    scale_got, second = dec.group_params()
    assert scale_got.dtype == np.float32 and scale_got.shape == (n, n_sub)
    assert_same_floats(scale_got, scale)
    c = dec.codes.astype(np.float32).reshape(n, n_sub, bt.group_size)
    if bt.form == "symmetric":
        assert isinstance(second, int) and second == bt.zero
        w = (c - np.float32(bt.zero)) * scale[..., None]
    else:
        if bt.two_level:
            offset = -(dec.dmin.astype(np.float32)[:, None] * dec.mn.astype(np.float32))
        else:
            offset = dec.m.astype(np.float32)[:, None]
        assert second.dtype == np.float32 and second.shape == (n, n_sub)
        assert_same_floats(second, offset)
        w = c * scale[..., None] + offset[..., None]
    assert_same_floats(bt.dequantize(bt.encode(dec)), w.reshape(n, -1))


# ---------------------------------------------------------------------------------------------
# Quantizers
# ---------------------------------------------------------------------------------------------

def tie_blocks(block_size):
    """Blocks whose scaled values land exactly on halves (roundf vs rint, trunc(x + 0.5))."""
    ramp = (np.arange(block_size, dtype=np.float32) - block_size // 2) / 2
    b = np.stack([ramp, -ramp, np.where(np.arange(block_size) % 2, 0.5, -0.5)]).astype(np.float32)
    b[1, 0] = b[2, 0] = 127.0
    return b


@pytest.mark.parametrize("name", GGUF_QUANTIZES)
def test_quantize_equals_gguf_bytes(name):
    bt = ggml.get(name)
    rng = np.random.default_rng(5)
    for w in [weights(rng, 24, bt.block_size), tie_blocks(bt.block_size),
              rng.standard_normal((7, 3 * 256)).astype(np.float32)]:
        theirs = gguf.quants.quantize(w, QT[name]).reshape(-1, bt.type_size)
        np.testing.assert_array_equal(bt.quantize(w), theirs)
        np.testing.assert_array_equal(bt.quantize(w.reshape(-1)), theirs)


REL_RMSE = {"Q2_K": 0.45, "Q3_K": 0.25, "Q4_K": 0.12, "Q5_K": 0.06, "Q6_K": 0.03}


@pytest.mark.parametrize("name", K_QUANTS)
def test_k_quantize_is_close(name):
    bt = ggml.get(name)
    rng = np.random.default_rng(6)
    w = rng.standard_normal((64, 256)).astype(np.float32) * np.float32(0.02)
    w[0] += 0.5                          # a block away from zero
    w[1] = 0                             # an all-zero block
    raw = bt.quantize(w)
    assert raw.shape == (64, bt.type_size) and raw.dtype == np.uint8
    back = bt.dequantize(raw)
    assert_same_floats(back, gguf_dequantize(name, raw))
    np.testing.assert_array_equal(back[1], 0)
    err = np.sqrt(np.mean((back - w) ** 2, axis=1)) / np.sqrt(np.mean(w ** 2, axis=1) + 1e-30)
    assert err[1] == 0
    assert err.max() < REL_RMSE[name], err.max()
    np.testing.assert_array_equal(bt.encode(bt.decode(raw)), raw)


def test_quantize_rejects_bad_input():
    with pytest.raises(ValueError, match="not a whole number of 32-weight blocks"):
        ggml.get("Q4_0").quantize(np.zeros(40, np.float32))
    with pytest.raises(ValueError, match="NaN or Inf"):
        ggml.get("Q4_K").quantize(np.full(256, np.nan, np.float32))


def test_encode_rejects_out_of_range_fields():
    rng = np.random.default_rng(7)
    dec = random_decoded("Q4_K", rng, 2)
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 15\]"):
        ggml.get("Q4_K").encode(ggml.Decoded("Q4_K", dec.codes + 16, d=dec.d, dmin=dec.dmin,
                                             sc=dec.sc, mn=dec.mn))
    with pytest.raises(ValueError, match=r"sc must lie in \[0, 63\]"):
        ggml.get("Q4_K").encode(ggml.Decoded("Q4_K", dec.codes, d=dec.d, dmin=dec.dmin,
                                             sc=dec.sc | 64, mn=dec.mn))
    tq = random_decoded("TQ1_0", rng, 2)
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 2\]"):
        ggml.get("TQ1_0").encode(ggml.Decoded("TQ1_0", tq.codes | 3, d=tq.d))


# ---------------------------------------------------------------------------------------------
# Whole tensors
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_decode_matrix_shapes_and_inverse(name):
    bt = ggml.get(name)
    rng = np.random.default_rng(8)
    m, k = 3, 2 * 256
    w = rng.standard_normal((m, k)).astype(np.float32)
    raw = bt.quantize(w).reshape(m, -1)
    dec = ggml.decode_matrix(name, raw, (m, k))
    if bt.form == "float":
        assert dec.values.shape == (m, k) and dec.codes.shape == (m, 0)
        theirs = gguf_dequantize(name, raw.reshape(-1, bt.type_size)).reshape(m, k)
    else:
        assert dec.codes.shape == (m, k) and dec.d.shape == (m, k // bt.block_size)
        for f in ("sc", "mn"):
            if getattr(dec, f) is not None:
                assert getattr(dec, f).shape == (m, k // bt.group_size)
        assert dec.group_params()[0].shape == (m, k // bt.group_size)
        theirs = gguf.quants.dequantize(raw, QT[name])
    assert_same_floats(dec.dequantize(), theirs)
    back = ggml.encode_matrix(name, dec)
    assert back.shape == (m, k // bt.block_size * bt.type_size) and back.dtype == np.uint8
    np.testing.assert_array_equal(back, raw)
    fields = {f: getattr(dec, f) for f in ("codes", "d", "m", "dmin", "sc", "mn", "values")}
    rebuilt = ggml.Decoded.from_fields(name, **fields)
    np.testing.assert_array_equal(ggml.encode_matrix(name, rebuilt), raw)


def test_decode_matrix_errors():
    raw = np.zeros(3 * 2 * 144, np.uint8)
    with pytest.raises(ValueError, match=r"K = 500 is not a multiple of the block size 256"):
        ggml.decode_matrix("Q4_K", raw, (3, 500))
    with pytest.raises(ValueError, match=r"needs 864 bytes \(6 blocks of 144\), got 863"):
        ggml.decode_matrix("Q4_K", raw[:-1], (3, 512))
    with pytest.raises(ValueError, match="tensor type IQ2_XS is not supported"):
        ggml.decode_matrix("IQ2_XS", raw, (3, 512))
    with pytest.raises(ValueError, match="not a whole number of 18-byte blocks"):
        ggml.get("Q4_0").decode(np.zeros(20, np.uint8))


def test_check_finite():
    rng = np.random.default_rng(9)
    bt = ggml.get("Q4_1")
    raw = bt.quantize(rng.standard_normal((4, 64)).astype(np.float32)).reshape(4, -1)
    dec = ggml.decode_matrix("Q4_1", raw, (4, 64))
    ggml.check_finite(dec, "blk.0.ffn_up.weight")              # passes
    for field, bad in [("d", np.nan), ("m", np.inf), ("d", -np.inf)]:
        a = getattr(dec, field).copy()
        a[2, 1] = bad
        broken = ggml.Decoded("Q4_1", dec.codes, **{**{"d": dec.d, "m": dec.m}, field: a})
        with pytest.raises(ValueError, match=rf"blk\.0\.ffn_up\.weight: .*{field}.*NaN or Inf"):
            ggml.check_finite(broken, "blk.0.ffn_up.weight")
    k = ggml.get("Q6_K").decode(random_bytes("Q6_K", rng, 2))
    with pytest.raises(ValueError, match="where-it-is"):
        ggml.check_finite(ggml.Decoded("Q6_K", k.codes, d=np.array([1, np.inf], np.float16),
                                       sc=k.sc), "where-it-is")


@pytest.mark.skipif(not fetch.is_fetched("smollm2"),
                    reason="SmolLM2 not fetched (run: tmac fetch smollm2)")
def test_smollm2_every_tensor_equals_gguf():
    reader = gguf.GGUFReader(fetch.cached_path("smollm2"))
    seen = set()
    for t in reader.tensors:
        name = t.tensor_type.name
        seen.add(name)
        shape = tuple(int(s) for s in reversed(t.shape))
        dec = ggml.decode_matrix(name, t.data, shape)
        ggml.check_finite(dec, t.name)
        assert_same_floats(dec.dequantize(), gguf.quants.dequantize(t.data, t.tensor_type))
        np.testing.assert_array_equal(ggml.encode_matrix(name, dec).reshape(-1),
                                      t.data.view(np.uint8).reshape(-1))
    assert {"Q4_1", "Q8_0", "F32"} <= seen


@pytest.mark.parametrize("name", QUANT)
def test_every_finite_float16_scale(name):
    """Each float16 field takes every finite value (subnormals, extremes) once, with random
    other bytes and the sub-scales at their extremes: still gguf's floats bit for bit."""
    bt = ggml.get(name)
    rng = np.random.default_rng(10)
    h = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    h = h[(h & 0x7C00) != 0x7C00]
    raw = rng.integers(0, 256, (h.size, bt.type_size), dtype=np.uint8)
    for i, off in enumerate(F16_FIELDS[name]):
        raw[:, off:off + 2] = np.roll(h, 977 * i).reshape(-1, 1).view(np.uint8)
    if name == "Q6_K":
        raw[:, 192:208] = rng.choice(np.array([-128, 127, -127, 1], np.int8), (h.size, 16)).view(
            np.uint8)
    assert_same_floats(bt.dequantize(raw), gguf_dequantize(name, raw))
