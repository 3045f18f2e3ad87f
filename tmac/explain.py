"""``tmac.explain``: every step of the product ``tmac.matmul`` computes, for one output element.

The numbers come from ``tmac.reference`` (the same functions ``matmul(backend="reference")``
runs), gathered for one row so that a person can follow them. For a format with a LUT path:
activation groups and their tables, each plane's weight bits and table index, the looked-up
entries, the shift-accumulate, the scale and zero-point epilogue, and the final value beside
the dense product. For a format without one (e2m1): each weight decoded by the format's own
definition, its product with the activation and the running sum.
"""

import io
from dataclasses import dataclass

import numpy as np

from tmac import validation
from tmac.formats import QuantizedWeight
from tmac.reference import lut_matmul as ref
from tmac.reference import tables as ref_tables
from tmac.reference.lut_matmul import LUT_MODES


PLANE_WEIGHTS = ("1/2", "1", "2", "4", "8", "16", "32", "64")


@dataclass(frozen=True)
class Explanation:
    """One output element y[row], step by step. Arrays are for groups g = 0 .. G-1 of 4
    activations and planes i = 0 .. bits-1; ``block_*`` arrays have one entry per block."""

    row: int
    bits: int
    lut: str
    x_groups: np.ndarray        # (G, 4) float32 activations, K padded with zeros
    tables: np.ndarray          # (G, 16) float32 (lut="float32") or int8 (lut="int8")
    table_scales: np.ndarray    # (n_act_groups,) float32; ones for float32 tables
    codes: np.ndarray           # (G, 4) uint8 weight codes of this row
    indices: np.ndarray         # (bits, G) uint8: index of each group's table, per plane
    looked_up: np.ndarray       # (bits, G): tables[g, indices[i, g]]
    block_lut: np.ndarray       # (nblocks,) float32: shift-accumulated lookups, scaled
    block_xsum: np.ndarray      # (nblocks,) float32
    block_offset: np.ndarray    # (nblocks,) float32: (2^b - 1)/2 - zero, or the offset (affine)
    block_scale: np.ndarray     # (nblocks,) float32: weight scale
    block_value: np.ndarray     # (nblocks,) float32: what the block adds to y (its format's
                                #   epilogue: scale * (lut + offset * xsum), or affine
                                #   scale * (lut + c * xsum) + offset * xsum)
    value: float                # y[row], bitwise equal to tmac.matmul(..., backend="reference")
    dense: float                # float64 dot product of the dequantized row with x
    form: str = "zero_point"    # the epilogue form (tmac.formats.Format.form)

    def _tables_view(self, max_groups):
        from rich.markup import escape
        from rich.table import Table

        t = Table(title="1. activation groups of 4 and their 16-entry tables "
                        f"({'int8' if self.lut == 'int8' else 'float32'})")
        t.add_column("group")
        t.add_column("x0 x1 x2 x3")
        t.add_column(escape("T[0] .. T[15]   (T[j] = sum of +-x_t, + where bit t of j is set)"))
        for g in range(min(max_groups, len(self.x_groups))):
            t.add_row(str(g), " ".join(f"{v:.3g}" for v in self.x_groups[g]),
                      " ".join(f"{v:.3g}" for v in self.tables[g]))
        return t

    def _lookups_view(self, max_groups):
        from rich.table import Table

        t = Table(title="2. weight bits -> table index -> looked-up entry, per plane")
        t.add_column("group")
        t.add_column("codes")
        for i in range(self.bits):
            t.add_column(f"plane {i} bits (x0..x3)")
            t.add_column(f"index -> entry (x {PLANE_WEIGHTS[i]})")
        for g in range(min(max_groups, len(self.codes))):
            cells = [str(g), " ".join(str(c) for c in self.codes[g])]
            for i in range(self.bits):
                bits = "".join(str(c >> i & 1) for c in self.codes[g])
                cells += [bits, f"{self.indices[i, g]:2d} -> {self.looked_up[i, g]:.4g}"]
            t.add_row(*cells)
        return t

    def _blocks_view(self):
        from rich.table import Table

        rule = ("scale * (lut + c * sum x) + offset * sum x, c = (2^b - 1)/2" if self.form == "affine"
                else "scale * (lut + offset * sum x)")
        t = Table(title=f"3. per block: shift-accumulate, then {rule}")
        for column in ("block", "lut", "sum x", "offset", "scale", "block value", "running y"):
            t.add_column(column, justify="right")
        running = np.float32(0)
        for b in range(len(self.block_lut)):
            running = running + self.block_value[b]
            t.add_row(str(b), f"{self.block_lut[b]:.6g}", f"{self.block_xsum[b]:.6g}",
                      f"{self.block_offset[b]:g}", f"{self.block_scale[b]:.6g}",
                      f"{self.block_value[b]:.6g}", f"{running:.6g}")
        return t

    def summary(self):
        """The closing line: the value, the dense product and their difference."""
        return (f"y[{self.row}] = {self.value:.8g}   dense dequantized product = {self.dense:.8g}"
                f"   difference = {self.value - self.dense:.3g}")

    def __rich__(self, max_groups=4):
        from rich.console import Group
        from rich.text import Text

        shown = min(max_groups, len(self.x_groups))
        note = Text(f"(showing {shown} of {len(self.x_groups)} groups)", style="dim")
        return Group(self._tables_view(max_groups), self._lookups_view(max_groups), note,
                     self._blocks_view(), Text(self.summary(), style="bold"))

    def __repr__(self):
        return _text(self)

    def _repr_mimebundle_(self, include=None, exclude=None):
        return _bundle(self)

    def _repr_html_(self):
        return _html(self)


def _console():
    from rich.console import Console

    return Console(record=True, width=140, file=io.StringIO(), color_system=None)


def _text(renderable):
    """The rich rendering as plain text: what a terminal's repr shows."""
    console = _console()
    console.print(renderable)
    return console.export_text().rstrip("\n")


def _html(renderable):
    """A rich renderable as inline-styled HTML (recorded on a string buffer, nothing printed)."""
    console = _console()
    console.print(renderable)
    return console.export_html(inline_styles=True)


def _bundle(renderable):
    """One display for Jupyter: the HTML rendering, with the text one as its plain fallback
    (only one of them is shown, so the explanation appears once)."""
    return {"text/html": _html(renderable), "text/plain": _text(renderable)}


@dataclass(frozen=True)
class DequantExplanation:
    """One output element y[row] of a format without a LUT path: dequantize, then multiply.

    Arrays run over k = 0 .. K-1: the row's codes, its weights by the format's own
    definition, the activations, their float32 products, and the running float32 sum from 0.0
    in increasing k (the reference's order), whose last entry is the value."""

    row: int
    scheme: str
    codes: np.ndarray           # (K,) uint8
    weights: np.ndarray         # (K,) float32, the format's dequantization
    x: np.ndarray               # (K,) float32
    products: np.ndarray        # (K,) float32
    running: np.ndarray         # (K,) float32
    value: float                # y[row], bitwise equal to tmac.matmul(..., backend="reference")
    dense: float                # float64 dot product of the dequantized row with x

    def summary(self):
        return (f"y[{self.row}] = {self.value:.8g}   dense dequantized product = {self.dense:.8g}"
                f"   difference = {self.value - self.dense:.3g}")

    def __rich__(self, max_terms=8):
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        t = Table(title=f"{self.scheme}: no LUT path; each weight decoded, times x, summed in order")
        for column in ("k", "code", "weight", "x", "weight * x", "running sum"):
            t.add_column(column, justify="right")
        shown = min(max_terms, len(self.codes))
        for k in range(shown):
            t.add_row(str(k), str(self.codes[k]), f"{self.weights[k]:.6g}", f"{self.x[k]:.6g}",
                      f"{self.products[k]:.6g}", f"{self.running[k]:.6g}")
        note = Text(f"(showing {shown} of {len(self.codes)} terms)", style="dim")
        return Group(t, note, Text(self.summary(), style="bold"))

    def __repr__(self):
        return _text(self)

    def _repr_mimebundle_(self, include=None, exclude=None):
        return _bundle(self)

    def _repr_html_(self):
        return _html(self)


def explain(qw, x, row=0, *, lut="int8", act_group_size=None):
    """Explain y[row] of ``tmac.matmul(qw, x)`` for one activation vector x (K,).

    Returns an Explanation (a DequantExplanation for formats without a LUT path): a rich
    renderable in a terminal, HTML in Jupyter. Its ``value`` equals ``tmac.matmul``'s y[row].
    """
    if not isinstance(qw, QuantizedWeight):
        raise TypeError(f"qw must be a QuantizedWeight (from tmac.quantize), got {type(qw).__name__}")
    x = validation.float_array("x", x, ndims=(1,))
    m, k = qw.shape
    if x.shape[0] != k:
        raise ValueError(f"x must have K={k} elements to match qw, got shape {x.shape}")
    row = validation.integer("row", row)
    if not 0 <= row < m:
        raise ValueError(f"row must be in [0, {m}), got {row}")
    lut = validation.choice("lut", lut, LUT_MODES)
    act = validation.resolve_act_group_size(act_group_size, qw.group_size, k)
    if not qw.format.has_lut_path:
        return _explain_dequant(qw, x, row)

    codes, scales, zeros = qw.codes[row:row + 1], qw.scales[row:row + 1], qw.zeros[row:row + 1]
    blocks = ref.make_blocks(k, qw.group_size, act)
    xp = ref.pad_columns(x[None, :], blocks.k_padded)
    indices = ref.table_indices(codes, qw.bits, blocks.k_padded)            # (bits, 1, G)
    float_tables = ref_tables.build_tables_mirrored(xp)                       # (1, G, 16)
    if lut == "int8":
        shown_tables, table_scales = ref_tables.quantize_tables(float_tables, xp, act)
        block_lut = ref.lut_from_int8(ref.integer_sums(ref.plane_sums(shown_tables, indices, blocks)),
                                      table_scales, blocks)[0, 0]
    else:
        shown_tables, table_scales = float_tables, np.ones((1, 1), np.float32)
        block_lut = ref.lut_from_float(float_tables[0], indices, blocks)[0]
    xsum = ref.block_sums(xp, blocks)
    fmt = qw.format
    block_value = fmt.block_values(block_lut[None, None, :], xsum, scales, zeros, qw.bits, blocks)[0, 0]
    value = ref.sequential_sum(block_value)
    offset = zeros[0][blocks.weight_group] if fmt.form == "affine" else \
        (np.float32((2**qw.bits - 1) / 2) - zeros[0])[blocks.weight_group]
    dense = float(qw.dequantize()[row].astype(np.float64) @ x.astype(np.float64))
    return Explanation(
        row=row, bits=qw.bits, lut=lut, x_groups=ref_tables.quads(xp)[0], tables=shown_tables[0],
        table_scales=table_scales[0], codes=ref.pad_columns(codes, blocks.k_padded).reshape(-1, 4),
        indices=indices[:, 0, :], looked_up=ref.lookup(shown_tables[0], indices[:, 0, :]),
        block_lut=block_lut, block_xsum=xsum[0], block_offset=offset,
        block_scale=scales[0][blocks.weight_group], block_value=block_value, value=float(value),
        dense=dense, form=fmt.form)


def _explain_dequant(qw, x, row):
    weights = qw.dequantize()[row]
    products = (weights * x).astype(np.float32)
    running = np.empty_like(products)
    total = np.float32(0)
    for k, p in enumerate(products):
        total = np.float32(total + p)
        running[k] = total
    dense = float(weights.astype(np.float64) @ x.astype(np.float64))
    return DequantExplanation(row=row, scheme=qw.scheme, codes=qw.codes[row], weights=weights, x=x,
                              products=products, running=running, value=float(running[-1]),
                              dense=dense)
