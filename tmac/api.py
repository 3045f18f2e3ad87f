"""The public API: ``quantize`` and ``matmul``. Validation first, then one dispatch point."""

import numpy as np

from tmac import validation
from tmac.formats import FORMATS, QuantizedWeight, weight
from tmac.reference.lut_matmul import LUT_MODES
from tmac.registry import OPS

BACKENDS_AUTO = "auto"
QUANTIZE_BYTES_PER_WEIGHT = 32     # working set of the reference quantizers' range search


def quantize(w, bits=None, group_size=128, scheme="asym", fit=None):
    """Quantize a float weight matrix for table-lookup multiplication.

    w           (M, K) float array (float16/32/64; computed in float32), finite.
    bits        code width, one of the format's widths (1..8 for asym, sym, affine); None: 4, or
                the format's only width (ternary 2, q8_0 8, ...). Ignored by scheme="ternary".
    group_size  consecutive K elements sharing a scale and zero: a multiple of 4 dividing K, or
                None / "row" for one group per row. Ignored by "ternary" (one scale per tensor).
    scheme      a format of the format table ``tmac.formats.FORMATS``: "asym" (GPTQ/AWQ:
                integer zero per group), "sym" (zero 2^(bits-1)), "ternary" (BitNet b1.58
                absmean, codes {1, 2, 3}), or the 4-bit floats "m0e4" (Transformer-Lite,
                w = a * (1 + q/16) + b) and "e2m1" (OCP FP4); these need bits=4
                (see tmac.formats.fp4 and docs/fp4.md).
    fit         how the parameters are fitted, for formats that offer a choice (``fits`` in the
                format table): "affine" takes "lsq" (default: least squares from the range),
                "minmax" (round to nearest on the range) or "hqq" (half-quadratic optimisation
                of an lp error, no data; tmac.reference.affine); "m0e4" takes "lsq" or
                "minmax". None: the format's default. Other formats have one method and take
                only None. The result is an ordinary weight of the format whatever the fit.

    Returns an immutable QuantizedWeight. Raises TypeError/ValueError naming the bad argument.
    """
    w = validation.float_array("w", w, ndims=(2,))
    validation.no_overflow("w", w, 2, "a group's scale, (max - min) / steps")
    fmt = FORMATS[validation.choice("scheme", scheme, tuple(FORMATS))]
    m, k = w.shape
    validation.check_memory("w", w.size * QUANTIZE_BYTES_PER_WEIGHT)
    bits, group_size = fmt.resolve(bits, group_size, k)
    fit = fmt.resolve_fit(fit)
    if fit is None:
        return fmt.quantize(w, bits, group_size)
    return fmt.quantize(w, bits, group_size, fit=fit)


def matmul(qw, x, *, backend=BACKENDS_AUTO, lut="int8", act_group_size=None, threads=None):
    """y = x @ W.T with W the quantized matrix, by table lookup.

    qw              a QuantizedWeight of shape (M, K).
    x               (..., K) float array, finite: (K,) -> (M,), (N, K) -> (N, M), and any
                    leading batch axes, (B, S, K) -> (B, S, M); float32 result. Leading axes
                    are flattened to (B * S, K), multiplied, and reshaped back: each row's
                    result is bit for bit the one that row gives alone. A numpy array, or an
                    object with ``__array__`` or ``__dlpack__``, read without a copy when it
                    is C-contiguous float32.
    backend         "auto" (the kernels on the best ISA path of this CPU, or $TMAC_ISA),
                    "reference" (the numpy spec), or an ISA path listed by
                    ``tmac.registry.OPS["lut_matmul"].backends`` ("avx512", "avx2", "portable").
    lut             "int8" (quantized tables, T-MAC's default) or "float32" (exact tables).
    act_group_size  activations sharing one int8 table scale: a multiple of 4 nesting with
                    the weight group, "row", or None (= the weight group size).
    threads         worker threads for kernel backends (None: Numba's current setting).

    scheme="e2m1" weights are not affine in their codes and have no LUT path: they are
    dequantized then multiplied (``tmac.formats.fp4``); ``lut`` and ``act_group_size`` do not apply.

    The operators are this function with its default options: ``x @ qw.T`` is
    ``matmul(qw, x)``, and ``qw @ x`` is ``matmul(qw, x.T).T`` (see ``QuantizedWeight``).
    """
    if not isinstance(qw, QuantizedWeight):
        raise TypeError(f"qw must be a QuantizedWeight (from tmac.quantize), got {type(qw).__name__}")
    x2d, out_shape = _activations(x, qw.shape)
    validation.check_memory("x", x2d.shape[0] * qw.shape[0] * 4, "output")
    lut = validation.choice("lut", lut, LUT_MODES)
    act = validation.resolve_act_group_size(act_group_size, qw.group_size, qw.shape[1])
    threads = _threads(threads)
    op = qw.format.matmul_op
    if OPS[op].takes_tables:
        y = _implementation(op, backend)(qw, x2d, act, lut, threads)
    else:                               # no LUT path (e2m1): lut and act_group_size do not apply
        y = _implementation(op, backend)(qw, x2d, threads)
    return y.reshape(out_shape)


def dequant_matmul(qw, x, *, backend=BACKENDS_AUTO, threads=None):
    """y = x @ dequantize(W).T: the dequantize-then-multiply baseline, same shapes as ``matmul``
    (x (..., K) -> (..., M), leading axes flattened and restored)."""
    if not isinstance(qw, QuantizedWeight):
        raise TypeError(f"qw must be a QuantizedWeight (from tmac.quantize), got {type(qw).__name__}")
    x2d, out_shape = _activations(x, qw.shape)
    implementation = _implementation(qw.format.dequant_op, backend)
    y = implementation(qw, x2d, _threads(threads))
    return y.reshape(out_shape)


def weight_times(qw, x):
    """``qw @ x``, numpy's W @ x for the (M, K) matrix W: x (K,) -> (M,), (K, N) -> (M, N),
    (..., K, N) -> (..., M, N), float32, C-contiguous.

    Exactly ``matmul(qw, x)`` for a vector and ``matmul(qw, x.T).T`` for a matrix (each column
    of x is one activation vector; ``matmul`` computes each independently, so the transposes
    move values and change no bit). Default options; call ``matmul`` for the others.
    """
    x = validation.float_array("x", x, ndims=None)
    m, k = qw.shape
    axis = 0 if x.ndim == 1 else -2
    if x.shape[axis] != k:
        expected = f"({k},) or ({k}, N)"
        what = "elements" if x.ndim == 1 else "rows"
        raise ValueError(f"x has K={x.shape[axis]} {what} (shape {x.shape}), the weight ({m}, {k}) "
                         f"expects K={k}: qw @ x takes x of shape {expected}")
    if x.ndim == 1:
        return matmul(qw, x)
    y = matmul(qw, np.swapaxes(x, -1, -2))              # (..., N, M)
    return np.ascontiguousarray(np.swapaxes(y, -1, -2))


def _activations(x, shape):
    """x (..., K) -> ((prod(...), K) float32 C-contiguous (a view when x is already one),
    the output shape (..., M))."""
    m, k = shape
    x = validation.float_array("x", x, ndims=None)
    if x.shape[-1] != k:
        what = "elements" if x.ndim == 1 else "columns"
        raise ValueError(f"x has K={x.shape[-1]} {what} (shape {x.shape}), the weight ({m}, {k}) "
                         f"expects K={k}: x must have shape (..., {k})")
    validation.no_overflow("x", x, k, "the lookup tables' and the blocks' sums")
    return x.reshape(-1, k), x.shape[:-1] + (m,)


def _threads(threads):
    if threads is None:
        return None
    threads = validation.integer("threads", threads)
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    return threads


def _implementation(op_name, backend):
    """The one dispatch point: "auto" runs the kernels on the best path for this CPU
    (or $TMAC_ISA), "reference" the numpy spec, an ISA name that path's kernels."""
    op = OPS[op_name]
    if backend not in (BACKENDS_AUTO, "reference"):     # "reference" needs no Numba at all
        validation.choice("backend", backend, op.backends)
    return op.implementation(backend)


weight._PRODUCTS.update(matmul=matmul, weight_times=weight_times)     # the operators of qw and qw.T
