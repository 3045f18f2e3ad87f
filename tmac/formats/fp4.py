"""FP4 weights: Transformer-Lite's M0E4 and OCP E2M1 (docs/fp4.md), and their dequant ops.

    qw = tmac.quantize(w, scheme="m0e4", group_size=64)    # or scheme="e2m1"
    y = tmac.matmul(qw, x)

m0e4  affine in its code, w = (a/16) q + (a + b), so it is a uniform 4-bit weight with a float
      zero: QuantizedWeight carries scales = a/16 and zeros = -(a + b) / (a/16) (see
      ``tmac.reference.m0e4.affine_params``) and ``tmac.matmul`` runs the ordinary LUT path,
      equal to the reference LUT path bit for bit. The native (a, b) ride along in
      ``qw.params``; ``qw.dequantize()`` and ``tmac.dequant_matmul`` use the bit trick.
e2m1  not affine in its code (+-{0, .5, 1, 1.5, 2, 3, 4, 6}), so no bit-plane identity exists:
      ``tmac.matmul`` and ``tmac.dequant_matmul`` both dequantize-then-multiply
      (``tmac.reference.e2m1.dequant_matmul``); ``lut`` and ``act_group_size`` do not apply.
      QuantizedWeight carries the per-group scales and zeros of 0 (unused).

The ops declared here (``m0e4_``, ``int4_`` and ``e2m1_dequant_matmul``) run the portable
Numba kernels of ``tmac.kernels.fp4``; ``int4_dequant_matmul`` is their loop with an
int-to-float conversion, on the uniform integer formats (the baseline M0E4 is compared with).
"""
from __future__ import annotations

import weakref

import numpy as np

from tmac.formats.base import Format, Op, declare_op
from tmac.formats.weight import QuantizedWeight
from tmac.reference import dequant_matmul as _ref_dequant
from tmac.reference import e2m1 as _e2m1
from tmac.reference import m0e4 as _m0e4


class _FP4(Format):
    widths = (4,)

    def bits_error(self, bits):
        return f"bits must be 4 for scheme {self.name!r} (a 4-bit format), got {bits}"

    def label(self, bits, group_size, k=None):
        group = "row" if group_size is None or group_size == k else f"g{group_size}"
        return f"{self.name} {group}"


class M0E4(_FP4):
    name = "m0e4"
    summary = "Transformer-Lite FP4: w = a * (1 + q/16) + b, decoded by two bit operations"
    ops = ("lut_matmul", "dequant_matmul", "m0e4_dequant_matmul")
    dequant_op = "m0e4_dequant_matmul"
    param_names = ("a", "b")
    fits = ("lsq", "minmax")               # tmac.reference.m0e4's fits, the default first
    golden_tensors = {
        "m0e4.a": "(M, K // group_size) float32 M0E4 scale a: w = a * (1 + q/16) + b",
        "m0e4.b": "(M, K // group_size) float32 M0E4 offset b",
        "m0e4.fp16_bits": "(M, K) uint16 fp16 bit patterns 0x3C00 | (q << 6) = 1 + q/16",
        "m0e4.values": "(M, K) float32 1 + q/16, the fp16 patterns widened",
        "m0e4.w": "(M, K) float32 (values * a) + b, two roundings (the bit-trick path)",
    }

    def quantize(self, w, bits, group_size, fit="lsq"):
        codes, a, b = _m0e4.quantize(w, group_size, fit)
        return self.from_params(codes, a, b, group_size)

    def from_params(self, codes, a, b, group_size):
        """A QuantizedWeight from M0E4 codes and native (a, b)."""
        scales, zeros = _m0e4.affine_params(a, b)
        return QuantizedWeight(codes, scales, zeros, 4, group_size, self.name, params=(a, b))

    def dequantize(self, qw):
        return _m0e4.dequantize(qw.codes, *qw.params)

    def check_params(self, qw):
        params = super().check_params(qw)
        if not (params[0] > 0).all():
            raise ValueError("params a must be > 0")
        return params

    def random(self, m, k, bits, group_size, rng):
        g = k // group_size
        codes = rng.integers(0, 16, (m, k)).astype(np.uint8)
        a = (rng.random((m, g)) + 0.5).astype(np.float32)
        b = (rng.standard_normal((m, g)) * 0.1).astype(np.float32)
        return self.from_params(codes, a, b, group_size)

    def golden_stages(self, params, w, x):
        codes, a, b = _m0e4.quantize(w, params["group_size"], fit="lsq")
        scales, zeros = _m0e4.affine_params(a, b)
        stages = {"quantize.codes": codes, "quantize.scales": scales, "quantize.zeros": zeros,
                  "m0e4.a": a, "m0e4.b": b, "m0e4.fp16_bits": _m0e4.encode_fp16_bits(codes),
                  "m0e4.values": _m0e4.decode(codes), "m0e4.w": _m0e4.dequantize(codes, a, b),
                  "check.output.m0e4_dequant_matmul": _m0e4.dequant_matmul(codes, a, b, x)}
        return stages, (codes, scales, zeros, 4)

    def golden_weight(self, params, tensors):
        f32 = lambda name: np.ascontiguousarray(tensors[name], np.float32)   # noqa: E731
        codes = np.ascontiguousarray(tensors["quantize.codes"], np.uint8)
        scales = f32("quantize.scales")
        return QuantizedWeight(codes, scales, f32("quantize.zeros"), 4,
                               codes.shape[1] // scales.shape[1], self.name,
                               params=(f32("m0e4.a"), f32("m0e4.b")))


class E2M1(_FP4):
    name = "e2m1"
    summary = "OCP FP4 (MXFP4/NVFP4 element): +-{0, .5, 1, 1.5, 2, 3, 4, 6} times a group scale"
    ops = ("e2m1_dequant_matmul",)
    matmul_op = dequant_op = "e2m1_dequant_matmul"
    stores_zeros = False
    golden_tensors = {
        "e2m1.scales": "(M, K // group_size) float32 E2M1 scale per group",
        "e2m1.values": "(M, K) float32 E2M1 code values (code 8 is -0.0)",
        "e2m1.w": "(M, K) float32 values * scale, one rounding",
    }

    def quantize(self, w, bits, group_size, rule="absmax"):
        codes, scales = _e2m1.quantize(w, group_size, rule)
        return QuantizedWeight(codes, scales, np.zeros_like(scales), 4, group_size, self.name)

    def dequantize(self, qw):
        return _e2m1.dequantize(qw.codes, qw.scales)

    def random(self, m, k, bits, group_size, rng):
        g = k // group_size
        codes = rng.integers(0, 16, (m, k)).astype(np.uint8)
        scales = (rng.random((m, g)) + 0.5).astype(np.float32)
        return QuantizedWeight(codes, scales, np.zeros_like(scales), 4, group_size, self.name)

    def golden_stages(self, params, w, x):
        codes, scales = _e2m1.quantize(w, params["group_size"], rule="absmax")
        stages = {"quantize.codes": codes, "e2m1.scales": scales, "e2m1.values": _e2m1.decode(codes),
                  "e2m1.w": _e2m1.dequantize(codes, scales),
                  "check.output.e2m1_dequant_matmul": _e2m1.dequant_matmul(codes, scales, x)}
        return stages, None

    def golden_weight(self, params, tensors):
        codes = np.ascontiguousarray(tensors["quantize.codes"], np.uint8)
        scales = np.ascontiguousarray(tensors["e2m1.scales"], np.float32)
        return QuantizedWeight(codes, scales, np.zeros_like(scales), 4,
                               codes.shape[1] // scales.shape[1], self.name)


# ---- the FP4 dequant ops: (qw, x, threads) -> (N, M) float32 ------------------------------------

_LAYOUTS = weakref.WeakKeyDictionary()     # QuantizedWeight -> {op: arrays in the fp4 layout}


def kernel_layout(qw, op_name, params):
    """(packed codes, *packed params) in tmac.kernels.fp4's layout, built once per qw and op."""
    cached = _LAYOUTS.setdefault(qw, {})
    if op_name not in cached:
        from tmac.kernels import fp4

        cached[op_name] = (fp4.pack(qw.codes),) + tuple(fp4.pack_params(p) for p in params)
    return cached[op_name]


def _fp4_op(name, kernel_name, params, reference, summary, max_bits=4):
    """Declare op ``name``: reference(qw, x) and the portable kernel ``tmac.kernels.fp4.<kernel_name>``
    reading the codes and ``params(qw)``."""
    def factory(isa=None):
        def run(qw, x, threads=None):
            from tmac.kernels import fp4, num_threads

            arrays = kernel_layout(qw, name, params(qw))
            with num_threads(threads):
                return getattr(fp4, kernel_name)(*arrays, x, qw.shape[0])
        return run

    declare_op(Op(name, lambda qw, x, threads=None: reference(qw, x), factory, ("dequant",), summary,
                  max_bits=max_bits))


_fp4_op("m0e4_dequant_matmul", "m0e4_matmul", lambda qw: qw.params,
        lambda qw, x: _m0e4.dequant_matmul(qw.codes, *qw.params, x),
        "M0E4 weights: bit-trick dequantization (no int-to-float), then multiply")
_fp4_op("int4_dequant_matmul", "int4_matmul", lambda qw: (qw.scales, qw.zeros),
        lambda qw, x: _ref_dequant.dequant_matmul(qw.codes, qw.scales, qw.zeros, x),
        "uniform codes < 16: the M0E4 kernel's loop with an int-to-float conversion")
_fp4_op("e2m1_dequant_matmul", "e2m1_matmul", lambda qw: (qw.scales,),
        lambda qw, x: _e2m1.dequant_matmul(qw.codes, qw.scales, x),
        "OCP E2M1 weights: table decode times scale, then multiply")
