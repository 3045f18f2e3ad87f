"""Every kernel equals tmac.reference element for element (ints ==, floats bitwise, 0 ULP).

Matrix: bits 1-4 and ternary, asym and sym, group sizes 32/64/128/row, act group sizes
32/64/row (and odd ones that split 16-column units), int8 and float32 tables, shapes that fit
no tile, the real-model shapes, N in {1, 3, 17}, 1 and 2 threads, every ISA path this CPU has.
Kernels take sizes as runtime arguments, so the whole matrix compiles each kernel once.
"""
import numpy as np
import pytest

from tmac import kernels
from tmac.kernels import dispatch
from tmac.kernels import lut as klut
from tmac.kernels import tables as ktables
from tmac.layout import pack
from tmac.reference import dequant_matmul as ref_dequant
from tmac.reference import lut_matmul as ref_lut
from tmac.reference import quantize as ref_quant
from tmac.reference import tables as ref_tables

ISAS = dispatch.available()
ROW = None  # whole-row group / act group

# (M, K, bits or "ternary", scheme, group_size, act_group_size, N)
CASES = [
    (1, 4, 1, "asym", ROW, ROW, 1),
    (5, 12, 2, "sym", ROW, 4, 3),
    (33, 100, 3, "asym", ROW, 32, 3),
    (70, 96, 4, "asym", 32, 64, 17),
    (64, 128, 1, "asym", 64, 32, 1),
    (40, 96, "ternary", "ternary", ROW, 36, 3),
    (130, 256, 4, "sym", 128, ROW, 3),
    (17, 200, 3, "asym", ROW, ROW, 17),
    (65, 192, 2, "asym", 64, 64, 1),
    (3, 44, 4, "asym", ROW, 12, 1),
]
REAL = [  # real-model shapes (SmolLM2-135M), N = 1
    (576, 576, 4, "asym", 64, 32, 1),
    (1536, 576, 2, "asym", 32, ROW, 1),
    (576, 1536, 3, "sym", 128, 64, 1),
    (192, 576, 1, "asym", ROW, ROW, 1),
    (49152, 576, "ternary", "ternary", ROW, 64, 1),
]


def _weights(m, k, bits, scheme, group_size, seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((m, k)).astype(np.float32)
    if bits == "ternary":
        codes, scales, zeros = ref_quant.quantize(w, 2, k, "ternary")
        return codes, scales, zeros, 2
    codes, scales, zeros = ref_quant.quantize(w, bits, group_size or k, scheme)
    return codes, scales, zeros, bits


def _case(case, seed=0):
    m, k, bits, scheme, group, act, n = case
    codes, scales, zeros, b = _weights(m, k, bits, scheme, group, seed)
    x = np.random.default_rng(seed + 1).standard_normal((n, k)).astype(np.float32)
    return codes, scales, zeros, b, x, act or k


def _same(a, b):
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(
        a.view(np.int32), b.view(np.int32))


def _ids(cases):
    return ["x".join(map(str, c[:2])) + f"-b{c[2]}-{c[3]}-w{c[4]}-a{c[5]}-n{c[6]}" for c in cases]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("lut", ["int8", "float32"])
@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_lut_matmul_equals_reference(case, lut, isa):
    codes, scales, zeros, bits, x, act = _case(case)
    want = ref_lut.lut_matmul(codes, scales, zeros, bits, x, act, lut)
    packed = pack(codes, bits, scales, zeros)
    for threads, tiles_per_task in ((1, None), (2, 1)):
        got = kernels.lut_matmul(packed, scales, zeros, bits, x, act, lut, isa=isa,
                                 threads=threads, tiles_per_task=tiles_per_task)
        assert _same(got, want), (threads, np.abs(got - want).max())


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("case", REAL, ids=_ids(REAL))
def test_real_model_shapes(case, isa):
    codes, scales, zeros, bits, x, act = _case(case, seed=5)
    packed = pack(codes, bits, scales, zeros)
    for lut in ("int8", "float32"):
        want = ref_lut.lut_matmul(codes, scales, zeros, bits, x, act, lut)
        assert _same(kernels.lut_matmul(packed, scales, zeros, bits, x, act, lut, isa=isa, threads=2), want)


def test_unpacked_codes_and_untransposed_scales_give_the_same_result():
    codes, scales, zeros, bits, x, act = _case(CASES[3])
    want = ref_lut.lut_matmul(codes, scales, zeros, bits, x, act, "int8")
    assert _same(kernels.lut_matmul(codes, scales, zeros, bits, x, act), want)
    assert _same(kernels.lut_matmul(pack(codes, bits), scales, zeros, bits, x, act), want)


@pytest.mark.parametrize("isa", ISAS)
def test_fractional_and_integer_zeros(isa):
    """Integer zeros are stored as uint8, fractional ones as float32; the kernels form the
    offsets from either and equal the reference."""
    codes, scales, zeros, bits, x, act = _case((130, 256, 4, "asym", 64, 64, 3))
    frac = zeros + np.float32(0.25)
    frac[0, 0] = np.float32(1.0 / 3.0)
    for z in (zeros, frac):
        packed = pack(codes, bits, scales, z)
        assert (packed.zeros_t.dtype == np.float32) == (z is frac)
        for lut in ("int8", "float32"):
            want = ref_lut.lut_matmul(codes, scales, z, bits, x, act, lut)
            assert _same(kernels.lut_matmul(packed, scales, z, bits, x, act, lut, isa=isa), want)


@pytest.mark.parametrize("case", CASES[:6] + REAL[:2], ids=_ids(CASES[:6] + REAL[:2]))
def test_dequant_matmul_equals_reference(case):
    codes, scales, zeros, bits, x, _ = _case(case)
    want = ref_dequant.dequant_matmul(codes, scales, zeros, x)
    assert _same(kernels.dequant_matmul(codes, scales, zeros, bits, x, threads=2), want)
    assert _same(kernels.dequant_matmul(pack(codes, bits), scales, zeros, bits, x, threads=1), want)


@pytest.mark.parametrize("isa", ISAS)
def test_integer_sums_at_their_extremes_stay_exact(isa):
    """Every table entry at +-127 (equal activations), every code at its largest (the others
    at 0 in a pattern), one block of 1536 columns: the largest sums any width 1..8 makes, where
    a narrow accumulator would overflow (AVX2 sums in int16 before int32)."""
    m, k = 64, 1536
    x = np.ones((2, k), np.float32)
    x[1, ::2] = -1
    for bits in range(1, 9):
        codes = np.full((m, k), (1 << bits) - 1, np.uint8)
        codes[1::2, ::3] = 0
        scales = np.ones((m, 1), np.float32)
        zeros = np.zeros((m, 1), np.float32)
        want = ref_lut.lut_matmul(codes, scales, zeros, bits, x, k)
        got = kernels.lut_matmul(pack(codes, bits), scales, zeros, bits, x, k, isa=isa)
        assert _same(got, want), bits


@pytest.mark.parametrize("k, act", [(4, 4), (100, 32), (576, 64), (44, 12), (96, 36), (4096, 4096),
                                    (200, 16), (1100, 64)])
def test_tables_scales_and_block_sums_equal_reference(k, act):
    x = np.random.default_rng(k).standard_normal((3, k)).astype(np.float32)
    x[0, :4] = [1.0, -1.0, 1.0, -1.0]       # exact cancellations: tables must hold +0.0
    p = klut.plan(k, 1, act)
    xp_ref = ref_lut.pad_columns(x, p.k_padded)
    groups = p.k_padded // 4
    qt, half, xsum = ktables.prepare_int8(x, p.k_units, p.act_group_size, p.n_act_groups,
                                          p.starts, p.stops, p.act_group)
    want_t = ref_tables.build_tables_mirrored(xp_ref)
    want_q, want_s = ref_tables.quantize_tables(want_t, xp_ref, act)
    assert np.array_equal(qt[:, :groups], want_q) and not qt[:, groups:].any()
    blocks = ref_lut.make_blocks(k, k, act)
    assert _same(half, want_s[:, blocks.act_group] * np.float32(0.5))
    assert _same(xsum, ref_lut.block_sums(xp_ref, blocks))
    t, xsum2 = ktables.prepare_f32(x, p.k_units, p.starts, p.stops)
    assert _same(t[:, :groups], want_t) and _same(xsum2, xsum)
    assert not t[:, groups:].view(np.int32).any()
    # the scalar (portable) table build gives the same bits as the vector one
    xp = ktables.pad(x, p.k_units)
    t2 = np.empty_like(t)
    ktables.build_tables_f32(xp, t2)
    assert _same(t2, t)


def test_results_do_not_depend_on_tiling_or_threads():
    codes, scales, zeros, bits, x, act = _case((300, 160, 3, "asym", 32, 32, 3))
    packed = pack(codes, bits, scales, zeros)
    isa = ISAS[0]
    base = kernels.lut_matmul(packed, scales, zeros, bits, x, act, isa=isa, threads=1)
    for threads, tpt in ((2, 1), (2, 2), (1, 3), (2, 5)):
        assert _same(kernels.lut_matmul(packed, scales, zeros, bits, x, act, isa=isa,
                                        threads=threads, tiles_per_task=tpt), base)
