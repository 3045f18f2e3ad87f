"""Smoke tests of every SIMD primitive against numpy, on the paths this CPU has.

Intrinsic IR depends on the LLVM version; these catch a changed signature or semantics early.
Each ISA's primitives are exercised from one jitted function to keep compile time low.
"""
import numpy as np
import pytest
from numba import njit

from tmac.kernels import dispatch
from tmac.kernels.simd import generic as s
from tmac.kernels.simd import x86

HAVE = dispatch.available()
rng = np.random.default_rng(0)


@njit(cache=True)
def _generic(b, f, i32, outb, outf, outi, outt, outq):
    vb = s.load512(b, 0)
    s.store512(outb, 0, s.vand(vb, s.load512(b, 64)))
    s.store512(outb, 64, s.vor(vb, s.load512(b, 64)))
    s.store512(outb, 128, s.vxor(vb, s.load512(b, 64)))
    s.store512(outb, 192, s.sub_i8(vb, s.load512(b, 64)))
    s.store512(outb, 256, s.srl_i16(vb, 4))
    s.store512(outb, 320, s.set1_i8_512(-3))
    s.store256(outb, 384, s.load256(b, 0))
    vf = s.load512(f, 0)
    s.store512(outf, 0, s.add_f32(vf, s.load512(f, 16)))
    s.store512(outf, 16, s.mul_f32(vf, s.load512(f, 16)))
    s.store512(outf, 32, s.cvt_i32_f32(s.load512(i32, 0)))
    s.store512(outf, 48, s.set1_f32_512(np.float32(1.5)))
    vi = s.load512(i32, 0)
    s.store512(outi, 0, s.add_i32(vi, s.load512(i32, 16)))
    s.store512(outi, 16, s.srl_i32(vi, 3))
    s.store512(outi, 32, s.sll_i32(vi, 3))
    s.store512(outi, 48, s.set1_i32_512(7))
    s.store512(outi, 64, s.zero512())
    s.store_tables4_f32(outt, 0, vf)
    s.store_tables4_int8(outq, 0, vf, s.set1_f32_512(np.float32(20.0)))
    like = s.zero512()
    s.store512(outt, 64, s.loadf(b, 16, like))         # uint8 -> their values
    s.store512(outt, 80, s.loadf(f, 0, like))          # float32: as they are
    s.store512(outf, 64, s.absum4(vf))
    s.store512(outf, 80, s.max_f32(vf, s.load512(f, 16)))
    outf[96] = s.hmax4_f32(vf)


@njit(cache=True)
def _halves(bits, out16, out8, out1):
    """loadf on uint16 (float16 bit patterns) at both widths, and the scalar half_to_float."""
    for i in range(0, bits.shape[0], 16):
        s.store512(out16, i, s.loadf(bits, i, s.zero512()))
        s.store256(out8, i, s.loadf(bits, i, s.zero256()))
        s.store256(out8, i + 8, s.loadf(bits, i + 8, s.zero256()))
    for i in range(bits.shape[0]):
        out1[i] = s.half_to_float(bits[i])


def widened_exactly(outs):
    """Every float16 pattern but NaN widens to numpy's float32 bit for bit; NaNs stay NaN
    (hardware conversion may quiet a signaling NaN)."""
    bits = np.arange(1 << 16, dtype=np.uint16)
    want = bits.view(np.float16).astype(np.float32)
    nan = np.isnan(want)
    return all(np.array_equal(o[~nan].view(np.uint32), want[~nan].view(np.uint32))
               and np.isnan(o[nan]).all() for o in outs)


def test_float16_widening_is_exact_for_every_bit_pattern():
    """All 65536 float16 patterns (zeros, subnormals, normals, infinities, NaNs), at both
    register widths and as a scalar."""
    bits = np.arange(1 << 16, dtype=np.uint16)
    outs = [np.zeros(1 << 16, np.float32) for _ in range(3)]
    _halves(bits, *outs)
    assert widened_exactly(outs)


def test_generic_primitives():
    b = rng.integers(0, 256, 128).astype(np.uint8)
    f = rng.standard_normal(32).astype(np.float32)
    i32 = rng.integers(-2**20, 2**20, 32).astype(np.int32)
    outb, outf = np.zeros(448, np.uint8), np.zeros(97, np.float32)
    outi, outt, outq = np.zeros(80, np.int32), np.zeros(96, np.float32), np.zeros(64, np.int8)
    _generic(b, f, i32, outb, outf, outi, outt, outq)
    x, y = b[:64], b[64:]
    assert np.array_equal(outb[:64], x & y) and np.array_equal(outb[64:128], x | y)
    assert np.array_equal(outb[128:192], x ^ y) and np.array_equal(outb[192:256], x - y)
    assert np.array_equal(outb[256:320], (x.view(np.uint16) >> 4).view(np.uint8))
    assert np.array_equal(outb[320:384].view(np.int8), np.full(64, -3, np.int8))
    assert np.array_equal(outb[384:416], x[:32])
    assert np.array_equal(outf[:16], f[:16] + f[16:]) and np.array_equal(outf[16:32], f[:16] * f[16:])
    assert np.array_equal(outf[32:48], i32[:16].astype(np.float32))
    assert np.all(outf[48:64] == 1.5)
    a = np.abs(f[:16]).reshape(4, 4)
    absum = ((a[:, 0] + a[:, 1]) + a[:, 2]) + a[:, 3]
    assert np.array_equal(outf[64:80], np.repeat(absum, 4))
    assert np.array_equal(outf[80:96], np.maximum(f[:16], f[16:32]))
    assert outf[96] == f[0:16:4].max()
    assert np.array_equal(outi[:16], i32[:16] + i32[16:])
    assert np.array_equal(outi[16:32], (i32[:16].view(np.uint32) >> 3).view(np.int32))
    assert np.array_equal(outi[32:48], i32[:16] << 3) and np.all(outi[48:64] == 7)
    assert not outi[64:].any()
    from tmac.reference import tables as rt
    want = rt.build_tables_mirrored(f[None, :16])[0].reshape(-1)
    assert np.array_equal(outt[:64].view(np.int32), want.view(np.int32))
    assert np.array_equal(outt[64:80], b[16:32].astype(np.float32))
    assert np.array_equal(outt[80:96].view(np.int32), f[:16].view(np.int32))
    want_q = np.clip(np.rint(rt.build_tables_mirrored(f[None, :16])[0] * np.float32(20)), -127, 127)
    assert np.array_equal(outq, want_q.astype(np.int8).reshape(-1))


@njit(cache=True)
def _avx512(idx, tab, acc, u8, s8, fidx, ftab, out8, out32, outf):
    s.store512(out8, 0, x86.permb512(s.load512(idx, 0), s.load512(tab, 0)))
    s.store512(out8, 64, x86.pshufb512(s.load512(tab, 0), s.load512(idx, 0)))
    s.store512(out32, 0, x86.dpbusd512(s.load512(acc, 0), s.load512(u8, 0), s.load512(s8, 0)))
    s.store512(outf, 0, x86.permps512(s.load512(fidx, 0), s.load512(ftab, 0)))


@pytest.mark.skipif("avx512" not in HAVE, reason="CPU lacks AVX-512 VBMI/VNNI")
def test_avx512_primitives():
    idx = rng.integers(0, 256, 64).astype(np.uint8)
    tab = rng.integers(-128, 128, 64).astype(np.int8)
    acc = rng.integers(-1000, 1000, 16).astype(np.int32)
    u8 = rng.integers(0, 256, 64).astype(np.uint8)
    s8 = rng.integers(-128, 128, 64).astype(np.int8)
    fidx = rng.integers(0, 2**31, 16).astype(np.int32)
    ftab = rng.standard_normal(16).astype(np.float32)
    out8, out32, outf = np.zeros(128, np.int8), np.zeros(16, np.int32), np.zeros(16, np.float32)
    _avx512(idx, tab, acc, u8, s8, fidx, ftab, out8, out32, outf)
    assert np.array_equal(out8[:64], tab[idx & 63])
    lane = np.arange(64) // 16 * 16
    assert np.array_equal(out8[64:], np.where(idx >= 128, 0, tab[lane + (idx & 15)]))
    assert np.array_equal(out32, acc + (u8.astype(np.int32) * s8).reshape(16, 4).sum(1))
    assert np.array_equal(outf, ftab[fidx & 15])


@njit(cache=True)
def _avx2(idx, tab, u8, s8, i16, fidx, ftab, out8, out16, out32, outf):
    s.store256(out8, 0, x86.pshufb256(s.load256(tab, 0), s.load256(idx, 0)))
    s.store256(out16, 0, x86.maddubs256(s.load256(u8, 0), s.load256(s8, 0)))
    s.store256(out32, 0, x86.maddwd256(s.load256(i16, 0), s.load256(i16, 16)))
    s.store256(outf, 0, x86.permps256(s.load256(fidx, 0), s.load256(ftab, 0)))
    s.store256(outf, 8, s.add_f32(s.load256(ftab, 0), s.set1_f32_256(np.float32(1.0))))
    s.store256(out32, 8, s.add_i32(s.set1_i32_256(5), s.zero256()))
    s.store256(out8, 32, s.set1_i8_256(9))


@pytest.mark.skipif("avx2" not in HAVE, reason="CPU lacks AVX2")
def test_avx2_primitives():
    idx = rng.integers(0, 256, 32).astype(np.uint8)
    tab = rng.integers(-128, 128, 32).astype(np.int8)
    u8 = rng.integers(0, 256, 32).astype(np.uint8)
    s8 = rng.integers(-128, 128, 32).astype(np.int8)
    i16 = rng.integers(-2**15, 2**15, 32).astype(np.int16)
    fidx = rng.integers(0, 2**31, 8).astype(np.int32)
    ftab = rng.standard_normal(8).astype(np.float32)
    out8, out16 = np.zeros(64, np.int8), np.zeros(16, np.int16)
    out32, outf = np.zeros(16, np.int32), np.zeros(16, np.float32)
    _avx2(idx, tab, u8, s8, i16, fidx, ftab, out8, out16, out32, outf)
    lane = np.arange(32) // 16 * 16
    assert np.array_equal(out8[:32], np.where(idx >= 128, 0, tab[lane + (idx & 15)]))
    pairs = (u8.astype(np.int32) * s8).reshape(16, 2).sum(1)
    assert np.array_equal(out16, np.clip(pairs, -2**15, 2**15 - 1))
    assert np.array_equal(out32[:8], (i16[:16].astype(np.int32) * i16[16:]).reshape(8, 2).sum(1))
    assert np.array_equal(outf[:8], ftab[fidx & 7]) and np.array_equal(outf[8:], ftab + np.float32(1))
    assert np.all(out32[8:] == 5) and np.all(out8[32:] == 9)


NO_F16C = """
import numpy as np, sys
sys.path.insert(0, sys.argv[1])
import test_simd
bits = np.arange(1 << 16, dtype=np.uint16)
outs = [np.zeros(1 << 16, np.float32) for _ in range(3)]
test_simd._halves(bits, *outs)
print(test_simd.widened_exactly(outs))
"""


def test_float16_widening_without_f16c_uses_integer_operations_exactly(tmp_path):
    """On a CPU without F16C (baseline x86-64) loadf widens float16 with integer operations
    only; the same 65536 patterns, bit for bit."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_CPU_NAME="x86-64", NUMBA_CPU_FEATURES="",
               NUMBA_CACHE_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", NO_F16C, os.path.dirname(__file__)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "True"


@njit(cache=True)
def _shuffles(a, b, out8, out32):
    va, vb = s.load256(a, 0), s.load256(b, 0)
    for j, v in enumerate((s.unpacklo_i8(va, vb), s.unpackhi_i8(va, vb), s.unpacklo_i64(va, vb),
                           s.unpackhi_i64(va, vb), s.lanes_lo(va, vb), s.lanes_hi(va, vb),
                           s.add_i16(va, vb), s.set1_i16_256(-2))):
        s.store256(out8, 32 * j, v)
    s.store256(out32, 0, s.widen_lo_i16(va))
    s.store256(out32, 8, s.widen_hi_i16(va))


def test_generic_v256_shuffles():
    """The in-lane unpacks, the lane moves and the int16 widenings, against numpy's own
    rearrangements (generic IR: every CPU)."""
    a = rng.integers(-128, 128, 32).astype(np.int8)
    b = rng.integers(-128, 128, 32).astype(np.int8)
    out8, out32 = np.zeros(256, np.int8), np.zeros(16, np.int32)
    _shuffles(a, b, out8, out32)
    got = out8.reshape(8, 32)

    def per_lane(x, size):
        return x.view({1: np.int8, 8: np.int64}[size]).reshape(2, -1)

    for j, half in ((0, 0), (1, 1)):                  # unpack{lo,hi} bytes, per 128-bit lane
        la, lb = per_lane(a, 1), per_lane(b, 1)
        want = np.stack([la[:, 8 * half:8 * half + 8], lb[:, 8 * half:8 * half + 8]], -1)
        assert np.array_equal(got[j], want.reshape(-1))
    qa, qb = per_lane(a, 8), per_lane(b, 8)
    assert np.array_equal(got[2].view(np.int64), np.stack([qa[:, 0], qb[:, 0]], -1).reshape(-1))
    assert np.array_equal(got[3].view(np.int64), np.stack([qa[:, 1], qb[:, 1]], -1).reshape(-1))
    assert np.array_equal(got[4], np.concatenate([a[:16], b[:16]]))
    assert np.array_equal(got[5], np.concatenate([a[16:], b[16:]]))
    assert np.array_equal(got[6].view(np.int16), a.view(np.int16) + b.view(np.int16))
    assert np.all(got[7].view(np.int16) == -2)
    assert np.array_equal(out32, a.view(np.int16).astype(np.int32))
