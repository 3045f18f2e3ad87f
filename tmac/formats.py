"""QuantizedWeight: a quantized (M, K) weight matrix, immutable, with a readable display."""

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tmac.reference.quantize import dequantize as _dequantize


def _frozen(a):
    """A read-only view, so nobody edits the codes behind a packed copy's back."""
    view = a.view()
    view.flags.writeable = False
    return view


@dataclass(frozen=True, repr=False, eq=False)
class QuantizedWeight:
    """A b-bit quantized weight matrix: ``w[m, k] ~ (codes[m, k] - zeros[m, g]) * scales[m, g]``.

    codes   (M, K) uint8 in [0, 2^bits)
    scales  (M, K // group_size) float32
    zeros   (M, K // group_size) float32
    bits    1..4 (ternary weights are 2-bit codes {1, 2, 3})
    group_size  consecutive K elements sharing a scale (== K for one group per row)
    scheme  "asym", "sym", "ternary", or the FP4 schemes "m0e4" / "e2m1" (``tmac.fp4``)
    packed  the codes in the kernel layout (``tmac.layout``), or None where no kernel needs it
    params  "m0e4" only: the native pair (a, b) of (M, K // group_size) float32 arrays,
            w = a * (1 + q/16) + b; scales/zeros then hold its affine form for the LUT path.
            For "e2m1" the codes are E2M1 codes, w = value(code) * scale, and zeros are unused.

    Build one with ``tmac.quantize``; the arrays are read-only.
    """

    codes: np.ndarray
    scales: np.ndarray
    zeros: np.ndarray
    bits: int
    group_size: int
    scheme: str
    packed: Any = field(default=None)
    params: Any = field(default=None)

    def __post_init__(self):
        _check_fields(self.codes, self.scales, self.zeros, self.bits, self.group_size)
        from tmac import fp4

        params = fp4.check_params(self.scheme, self.params, self.scales)
        if params is not None:
            object.__setattr__(self, "params", tuple(_frozen(p) for p in params))
        for name in ("codes", "scales", "zeros"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        if self.packed is None:
            from tmac import layout

            object.__setattr__(self, "packed", layout.pack(self.codes, self.bits, self.scales,
                                                           self.zeros))

    @property
    def shape(self):
        """(M, K) of the original weight matrix."""
        return self.codes.shape

    @property
    def n_groups(self):
        """Groups per row, K // group_size."""
        return self.scales.shape[1]

    @property
    def nbytes(self):
        """Storage: bit-packed codes, float32 scales, and float32 zeros where they vary (asym)."""
        code_bytes = -(-self.codes.size * self.bits // 8)
        zero_bytes = self.zeros.nbytes if self.scheme in ("asym", "m0e4") else 0   # m0e4: a and b
        return code_bytes + self.scales.nbytes + zero_bytes

    @property
    def compression(self):
        """How many times smaller than the float32 matrix."""
        return 4 * self.codes.size / self.nbytes

    @property
    def bits_per_weight(self):
        """Effective bits per weight, scales and zeros included."""
        return 8 * self.nbytes / self.codes.size

    def dequantize(self):
        """The float32 (M, K) matrix these codes stand for (``reference.quantize.dequantize``;
        for FP4 schemes the format's own definition, ``tmac.fp4.dequantize``)."""
        if self.scheme in ("m0e4", "e2m1"):
            from tmac import fp4

            return fp4.dequantize(self)
        return _dequantize(self.codes, self.scales, self.zeros)

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


def _check_fields(codes, scales, zeros, bits, group_size):
    """Refuse a QuantizedWeight whose parts do not fit together (it would feed a kernel garbage)."""
    for name, a, dtype in (("codes", codes, np.uint8), ("scales", scales, np.float32),
                           ("zeros", zeros, np.float32)):
        if not isinstance(a, np.ndarray) or a.dtype != dtype or a.ndim != 2:
            raise TypeError(f"{name} must be a 2-D {np.dtype(dtype).name} numpy array, got "
                            f"{getattr(a, 'dtype', type(a).__name__)} {getattr(a, 'shape', '')}")
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 4:
        raise ValueError(f"bits must be an int in 1..4, got {bits!r}")
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
