"""QuantizedWeight: a quantized (M, K) weight matrix of any format, immutable, with a display."""

import numpy as np

from tmac import validation
from tmac.formats.base import get

# The products behind ``@``: tmac.api's ``weight_times`` and ``matmul``, registered by tmac.api
# when it is imported (it is a layer above the formats, and ``import tmac`` imports it first).
_PRODUCTS = {}


def _frozen(a):
    """A read-only view, so nobody edits the codes behind a packed copy's back."""
    view = a.view()
    view.flags.writeable = False
    return view


class QuantizedWeight:
    """A quantized weight matrix: ``w[m, k] ~ (codes[m, k] - zeros[m, g]) * scales[m, g]``
    (or, for the affine form, ``scales[m, g] * codes[m, k] + zeros[m, g]``).

    codes   (M, K) uint8 in [0, 2^bits)
    scales  (M, K // group_size) float32
    zeros   (M, K // group_size) float32: the zero points, or for the affine form
            (w = scale * code + offset) the offsets
    bits    code width, one of the format's widths (ternary weights are 2-bit codes {1, 2, 3})
    group_size  consecutive K elements sharing a scale (== K for one group per row)
    scheme  the format's name in the format table (``tmac.formats.FORMATS``): "asym", "sym",
            "ternary", "affine", or the FP4 formats "m0e4" / "e2m1"
    packed  the codes and group parameters in the kernel layout (``tmac.layout.PackedCodes``)
            for formats with a LUT path
    params  the format's native parameters where it has them (``format.param_names``), each
            (M, K // group_size) float32: "m0e4" carries (a, b), w = a * (1 + q/16) + b, and
            its scales/zeros hold the affine form for the LUT path. For "e2m1" the codes are
            E2M1 codes, w = value(code) * scale, and zeros are unused.

    Stored at its real size: a format with a LUT path keeps only ``packed`` (b bits per code,
    the parameters in their storage dtype: float16 for the affine form, uint8 integer zeros),
    and ``codes``, ``scales``, ``zeros`` are unpacked from it on access (exactly; read-only
    arrays, computed anew each time: hold on to them if you need them often).
    Build one with ``tmac.quantize``; it is immutable.

    It multiplies like numpy's (M, K) matrix W, by ``tmac.matmul`` with its default options
    (backend "auto", lut "int8"; call ``tmac.matmul`` for others), float32 results:

        qw @ x      x (K,) -> (M,), (K, N) -> (M, N), (..., K, N) -> (..., M, N)
                    == tmac.matmul(qw, x.T).T bit for bit (each column of x is one activation
                    vector; the transposes move values and change no bit)
        x @ qw.T    x (..., K) -> (..., M)          == tmac.matmul(qw, x)

    ``qw.T`` is a lazy view (``TransposedWeight``: no copy, it holds ``qw``) good for ``x @ qw.T``
    and ``.T`` (``qw`` again) only. ``x @ qw`` (a product with W's transpose) has no kernel and
    raises TypeError; ``qw @ obj`` for a non-array returns NotImplemented (Python's TypeError).
    x may be a numpy array or an object with ``__array__`` or ``__dlpack__``.
    """

    __array_ufunc__ = None      # numpy's ``x @ qw.T`` then defers to our reflected methods

    __slots__ = ("_codes", "_scales", "_zeros", "bits", "group_size", "scheme", "packed",
                 "params", "_shape", "__weakref__")

    def __init__(self, codes, scales, zeros, bits, group_size, scheme, packed=None, params=None):
        fmt = get(scheme)
        _check_fields(codes, scales, zeros, bits, group_size, fmt)
        set_ = object.__setattr__
        for name, value in (("bits", bits), ("group_size", group_size), ("scheme", scheme),
                            ("params", params), ("_shape", codes.shape), ("_codes", _frozen(codes)),
                            ("_scales", _frozen(scales)), ("_zeros", _frozen(zeros))):
            set_(self, name, value)
        params = fmt.check_params(self)
        set_(self, "params", None if params is None else tuple(_frozen(p) for p in params))
        if packed is None and fmt.has_lut_path:
            from tmac import layout

            packed = layout.pack(codes, bits, scales, zeros, form=fmt.form)
        set_(self, "packed", packed)
        if packed is not None and packed.scales_t is not None:    # held once, in the layout
            for name in ("_codes", "_scales", "_zeros"):
                set_(self, name, None)

    def __setattr__(self, name, value):
        raise AttributeError(f"QuantizedWeight is immutable (tried to set {name!r})")

    def __matmul__(self, x):
        """``qw @ x``: W @ x, see the class docstring."""
        if isinstance(x, (QuantizedWeight, TransposedWeight)) or not validation.is_array_like(x):
            return NotImplemented
        return _PRODUCTS["weight_times"](self, x)

    def __rmatmul__(self, x):
        if isinstance(x, (QuantizedWeight, TransposedWeight)) or not validation.is_array_like(x):
            return NotImplemented
        m, k = self.shape
        raise TypeError(f"x @ qw multiplies by W's transpose (x (..., {m}) -> (..., {k})), which "
                        f"tmac has no kernel for; write x @ qw.T for x (..., {k}) -> (..., {m}) "
                        "(= tmac.matmul(qw, x)), or qw @ x")

    @property
    def T(self):
        """The (K, M) transpose as a lazy view for ``x @ qw.T`` (``TransposedWeight``)."""
        return TransposedWeight(self)

    @property
    def codes(self):
        """(M, K) uint8 codes (unpacked from the kernel layout)."""
        if self._codes is not None:
            return self._codes
        from tmac import layout

        return _frozen(layout.unpack(self.packed))

    @property
    def scales(self):
        """(M, K // group_size) float32 scales."""
        return self._scales if self._scales is not None else self._params()[0]

    @property
    def zeros(self):
        """(M, K // group_size) float32 zero points (affine form: offsets)."""
        return self._zeros if self._zeros is not None else self._params()[1]

    def _params(self):
        from tmac import layout

        return tuple(_frozen(a) for a in layout.params_from(self.packed))

    @property
    def format(self):
        """The format's entry in the format table (``tmac.formats.FORMATS``)."""
        return get(self.scheme)

    @property
    def shape(self):
        """(M, K) of the original weight matrix."""
        return self._shape

    @property
    def n_groups(self):
        """Groups per row, K // group_size."""
        return self._shape[1] // self.group_size

    @property
    def nbytes(self):
        """Storage: bit-packed codes and the format's parameters."""
        return self.format.nbytes(self)

    @property
    def compression(self):
        """How many times smaller than the float32 matrix."""
        return 4 * self._shape[0] * self._shape[1] / self.nbytes

    @property
    def bits_per_weight(self):
        """Effective bits per weight, scales and zeros included."""
        return 8 * self.nbytes / (self._shape[0] * self._shape[1])

    def dequantize(self):
        """The float32 (M, K) matrix these codes stand for, by the format's own definition
        (``reference.quantize.dequantize`` for the uniform formats, the bit trick for m0e4)."""
        return self.format.dequantize(self)

    def _summary(self):
        m, k = self.shape
        group = "row" if self.group_size == k else str(self.group_size)
        return [("shape", f"{m} x {k}"), ("scheme", self.scheme), ("bits", str(self.bits)),
                ("group size", group), ("groups per row", str(self.n_groups)),
                ("storage", _human_bytes(self.nbytes)),
                ("bits per weight", f"{self.bits_per_weight:.3f}"),
                ("vs float32", f"{self.compression:.1f}x smaller")]

    def __repr__(self):
        m, k = self.shape
        return (f"QuantizedWeight(shape=({m}, {k}), bits={self.bits}, group_size={self.group_size}, "
                f"scheme={self.scheme!r}, {_human_bytes(self.nbytes)}, "
                f"{self.compression:.1f}x smaller than float32)")

    def __rich__(self):
        from rich.table import Table

        table = Table(title="QuantizedWeight", show_header=False)
        for key, value in self._summary():
            table.add_row(key, value)
        return table

    def _repr_html_(self):
        rows = "".join(f"<tr><th style='text-align:left'>{k}</th><td>{v}</td></tr>"
                       for k, v in self._summary())
        return f"<table><caption>QuantizedWeight</caption>{rows}</table>"


class TransposedWeight:
    """``qw.T``: the (K, M) transpose of a QuantizedWeight, lazily (no copy; it holds ``weight``).

    Supports exactly two things: ``x @ qw.T`` for x (..., K) -> (..., M), which is
    ``tmac.matmul(qw, x)``, and ``.T``, which gives ``qw`` back. Anything else (indexing,
    arithmetic, ``np.asarray``, ``qw.T @ x``) raises TypeError saying so.
    """

    __array_ufunc__ = None      # ndarray @ qw.T returns NotImplemented, so __rmatmul__ runs
    __slots__ = ("weight",)

    def __init__(self, weight):
        object.__setattr__(self, "weight", weight)

    def __setattr__(self, name, value):
        raise AttributeError(f"qw.T is immutable (tried to set {name!r})")

    @property
    def shape(self):
        """(K, M)."""
        m, k = self.weight.shape
        return (k, m)

    @property
    def T(self):
        """The QuantizedWeight itself."""
        return self.weight

    def __rmatmul__(self, x):
        """``x @ qw.T`` = ``tmac.matmul(qw, x)``: x (..., K) -> (..., M) float32."""
        if isinstance(x, (QuantizedWeight, TransposedWeight)) or not validation.is_array_like(x):
            return NotImplemented
        return _PRODUCTS["matmul"](self.weight, x)

    def __matmul__(self, x):
        if isinstance(x, (QuantizedWeight, TransposedWeight)) or not validation.is_array_like(x):
            return NotImplemented
        raise self._unsupported("qw.T @ x (a product with W's transpose, which has no kernel)")

    def _unsupported(self, what):
        k, m = self.shape
        return TypeError(f"{what} is not supported: qw.T is a lazy view of a quantized ({m}, {k}) "
                         f"matrix that supports only x @ qw.T (x (..., {k}) -> (..., {m})) and "
                         ".T; for the float matrix use qw.dequantize().T")

    def __repr__(self):
        return f"{self.weight!r}.T"


def _refuse(what):
    def method(self, *args, **kwargs):
        raise self._unsupported(what)
    method.__name__ = what
    return method


for _name, _what in [("__array__", "np.asarray(qw.T)"), ("__getitem__", "indexing qw.T"),
                     ("__iter__", "iterating over qw.T"), ("__neg__", "-qw.T"),
                     ("__pos__", "+qw.T"), ("__abs__", "abs(qw.T)")]:
    setattr(TransposedWeight, _name, _refuse(_what))
for _name, _symbol in [("add", "+"), ("sub", "-"), ("mul", "*"), ("truediv", "/"),
                       ("floordiv", "//"), ("mod", "%"), ("pow", "**")]:
    setattr(TransposedWeight, f"__{_name}__", _refuse(f"qw.T {_symbol} ..."))
    setattr(TransposedWeight, f"__r{_name}__", _refuse(f"... {_symbol} qw.T"))


def _check_fields(codes, scales, zeros, bits, group_size, fmt):
    """Refuse a QuantizedWeight whose parts do not fit together (it would feed a kernel garbage)."""
    for name, a, dtype in (("codes", codes, np.uint8), ("scales", scales, np.float32),
                           ("zeros", zeros, np.float32)):
        if not isinstance(a, np.ndarray) or a.dtype != dtype or a.ndim != 2:
            raise TypeError(f"{name} must be a 2-D {np.dtype(dtype).name} numpy array, got "
                            f"{getattr(a, 'dtype', type(a).__name__)} {getattr(a, 'shape', '')}")
    if isinstance(bits, bool) or not isinstance(bits, int) or bits not in fmt.widths:
        raise ValueError(f"bits must be an int in {fmt.widths[0]}..{fmt.widths[-1]} for scheme "
                         f"{fmt.name!r}, got {bits!r}")
    m, k = codes.shape
    if codes.size == 0:
        raise ValueError(f"codes must not be empty, got shape {codes.shape}")
    if codes.max() >= 1 << bits:
        raise ValueError(f"codes must be < 2^bits = {1 << bits}, found {codes.max()}")
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size <= 0 \
            or k % group_size:
        raise ValueError(f"group_size must be a positive int dividing K={k}, got {group_size!r}")
    if group_size != k and group_size % 4:
        raise ValueError(f"group_size must be a multiple of 4 or the whole row, got {group_size}")
    expected = (m, k // group_size)
    for name, a in (("scales", scales), ("zeros", zeros)):
        if a.shape != expected:
            raise ValueError(f"{name} must have shape {expected} (M, K // group_size), got {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError(f"{name} must be finite")


def _human_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
