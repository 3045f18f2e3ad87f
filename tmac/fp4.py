"""FP4 weights in tmac: Transformer-Lite's M0E4 and OCP E2M1, wired into QuantizedWeight and the ops.

    qw = tmac.quantize(w, scheme="m0e4", group_size=64)    # or scheme="e2m1"
    y = tmac.matmul(qw, x)

How each scheme is multiplied (docs/fp4.md):

m0e4  affine in its code, w = (a/16) q + (a + b), so it is a uniform 4-bit weight with a float
      zero: QuantizedWeight carries scales = a/16 and zeros = -(a + b) / (a/16) (see
      ``tmac.reference.m0e4.affine_params``) and ``tmac.matmul`` runs the ordinary LUT path,
      equal to the reference LUT path bit for bit. The native (a, b) ride along in
      ``qw.params``; ``qw.dequantize()`` and ``tmac.dequant_matmul`` use the bit trick.
e2m1  not affine in its code (+-{0, .5, 1, 1.5, 2, 3, 4, 6}), so no bit-plane identity exists:
      ``tmac.matmul`` and ``tmac.dequant_matmul`` both dequantize-then-multiply
      (``tmac.reference.e2m1.dequant_matmul``); ``lut`` and ``act_group_size`` do not apply.
      QuantizedWeight carries the per-group scales and zeros of 0 (unused).
"""

import weakref

import numpy as np

from tmac.reference import e2m1 as _e2m1
from tmac.reference import m0e4 as _m0e4

SCHEMES = ("m0e4", "e2m1")
# scheme -> registry op that runs ``tmac.dequant_matmul`` (and ``tmac.matmul`` where no LUT path)
DEQUANT_OPS = {"m0e4": "m0e4_dequant_matmul", "e2m1": "e2m1_dequant_matmul"}
LUT_SCHEMES = ("m0e4",)                  # FP4 schemes that run through the LUT path


def quantize(w, group_size, scheme, fit="lsq", rule="absmax"):
    """A QuantizedWeight for an FP4 scheme. w (M, K) float32, already validated by tmac.api."""
    from tmac.formats import QuantizedWeight

    if scheme == "m0e4":
        codes, a, b = _m0e4.quantize(w, group_size, fit)
        scales, zeros = _m0e4.affine_params(a, b)
        return QuantizedWeight(codes, scales, zeros, 4, group_size, "m0e4", params=(a, b))
    if scheme == "e2m1":
        codes, scales = _e2m1.quantize(w, group_size, rule)
        return QuantizedWeight(codes, scales, np.zeros_like(scales), 4, group_size, "e2m1")
    raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")


def dequantize(qw):
    """The float32 (M, K) weights of an FP4 QuantizedWeight, by the format's own definition."""
    if qw.scheme == "m0e4":
        return _m0e4.dequantize(qw.codes, *qw.params)
    return _e2m1.dequantize(qw.codes, qw.scales)


def check_params(scheme, params, scales):
    """QuantizedWeight.params must be (a, b) float32 arrays shaped like scales for "m0e4", else None."""
    if scheme != "m0e4":
        if params is not None:
            raise ValueError(f"params must be None for scheme {scheme!r}")
        return None
    if not (isinstance(params, tuple) and len(params) == 2):
        raise TypeError("params must be the pair (a, b) for scheme 'm0e4'")
    for name, p in zip("ab", params):
        if not isinstance(p, np.ndarray) or p.dtype != np.float32 or p.shape != scales.shape:
            raise TypeError(f"params {name} must be a float32 array of shape {scales.shape}")
        if not np.isfinite(p).all():
            raise ValueError(f"params {name} must be finite")
    if not (params[0] > 0).all():
        raise ValueError("params a must be > 0")
    return params


# ---- registry implementations: (qw, x, threads) -> (N, M) float32 -------------------------------

def reference_m0e4(qw, x, threads=None):
    return _m0e4.dequant_matmul(qw.codes, *qw.params, x)


def reference_e2m1(qw, x, threads=None):
    return _e2m1.dequant_matmul(qw.codes, qw.scales, x)


def reference_int4(qw, x, threads=None):
    from tmac.reference import dequant_matmul

    return dequant_matmul.dequant_matmul(qw.codes, qw.scales, qw.zeros, x)


_LAYOUTS = weakref.WeakKeyDictionary()     # QuantizedWeight -> its arrays in the fp4 kernel layout


def kernel_layout(qw):
    """(packed codes, first params, second params) in tmac.kernels.fp4's layout, built once per qw."""
    cached = _LAYOUTS.get(qw)
    if cached is None:
        from tmac.kernels import fp4

        if qw.scheme == "m0e4":
            first, second = qw.params
        elif qw.scheme == "e2m1":
            first, second = qw.scales, None
        else:
            first, second = qw.scales, qw.zeros
        cached = (fp4.pack(qw.codes), fp4.pack_params(first),
                  None if second is None else fp4.pack_params(second))
        _LAYOUTS[qw] = cached
    return cached


def _kernel(name):
    def factory(isa=None):
        def run(qw, x, threads=None):
            from tmac.kernels import fp4, num_threads

            packed, first, second = kernel_layout(qw)
            with num_threads(threads):
                if name == "m0e4":
                    return fp4.m0e4_matmul(packed, first, second, x, qw.shape[0])
                if name == "e2m1":
                    return fp4.e2m1_matmul(packed, first, x, qw.shape[0])
                return fp4.int4_matmul(packed, first, second, x, qw.shape[0])
        return run
    return factory


kernel_m0e4 = _kernel("m0e4")
kernel_e2m1 = _kernel("e2m1")
kernel_int4 = _kernel("int4")
