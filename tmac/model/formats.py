"""Model weight formats, named the same everywhere (CLI, docs, bench, tests), from the format table.

    native       every tensor in its file's own type, nothing requantized (the default for a GGUF
                 model: llama.cpp's Q4_1, Q8_0, Q4_K, ... on the lookup kernels, tmac.formats.ggml)
    f32          weights dequantized from the GGUF to float32, multiplied by numpy (BLAS)
    w8..w1       the default requantizing format: affine groups (w = scale * code + offset,
                 float16 parameters; llama.cpp's Q4_1 form) of ``group_size`` inputs at 8..1
                 bits; ``sym=True`` takes the symmetric integer format instead
    <name><bits> any format of ``tmac.formats.FORMATS`` with several widths, e.g. asym4, sym3
    <name>       a format with one width, e.g. ternary, m0e4, e2m1

K of SmolLM2 is 576 (attention, gate/up) or 1536 (down): the default group size 32 divides
both, and at 32 the affine format reproduces the file's Q4_1 matrices exactly.

The output head (SmolLM2's tied 49152 x 576 embedding, a fifth of the weights, stored as Q8_0)
has a format of its own, ``head``: w8 by default (its 4-bit requantization alone cost +3 % of
perplexity); "same" gives it the body's format. ``head_format`` says which.

``fit`` is how the requantized weights are fitted (``tmac.quantize(fit=...)``): for w1..w8,
"lsq" (the default), "minmax" or "hqq"; a format without a choice has None. A fit given to
``parse`` must be one the body's format offers; the head takes it when its format offers it
too, else its own default.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tmac.formats import FORMATS as WEIGHT_FORMATS

DEFAULT_SCHEME = "affine"       # what w1..w8 mean
SYMMETRIC_SCHEME = "sym"        # what w1..w8 mean with sym=True
DEFAULT_GROUP_SIZE = 32
DEFAULT_HEAD = "w8"
# Fits of a whole model rather than of one matrix: they need the model's own inputs (GPTQ fits
# each layer on its calibration inputs, tmac.model.gptq), so only w1..w8 (affine) offer them.
MODEL_FITS = ("gptq",)


def _names():
    """Every model format name, from the format table."""
    names = ["native", "f32"]
    for fmt in WEIGHT_FORMATS.values():
        if fmt.name == DEFAULT_SCHEME:
            names += [f"w{b}" for b in sorted(fmt.widths, reverse=True)]
    for fmt in WEIGHT_FORMATS.values():
        if len(fmt.widths) > 1:
            names += [f"{fmt.name}{b}" for b in sorted(fmt.widths, reverse=True)]
        elif fmt.name != DEFAULT_SCHEME and fmt.requantizes:
            names.append(fmt.name)
    return tuple(names)


FORMATS = _names()


@dataclass(frozen=True)
class ModelFormat:
    name: str
    bits: int | None          # None for f32
    group_size: int | None    # None for f32 and formats with one scale per tensor (ternary)
    scheme: str | None        # a format of tmac.formats.FORMATS; None for f32
    head: "ModelFormat | None" = None   # the output head's format; None: this one
    fit: str | None = None    # tmac.quantize's fit ("lsq", "hqq", ...); None: the scheme's default
    mix: float | None = None  # a mix of widths under this bits-per-weight budget (tmac.model.mix)

    @property
    def is_float(self) -> bool:
        return self.name == "f32"

    @property
    def is_native(self) -> bool:
        """Every tensor in its file's own type (nothing requantized)."""
        return self.name == "native"

    @property
    def label(self) -> str:
        if self.mix is not None:
            fit = f", {self.fit}" if self.fit else ""
            return (f"mix {self.mix:g} bpw (widths per matrix, g{self.group_size}{fit}, "
                    f"head included)")
        if self.scheme is None or self.group_size is None:
            body = self.name
        else:
            implied = (DEFAULT_SCHEME if self.name.startswith("w") and self.name[1:].isdigit()
                       else self.scheme)
            other = f", {self.scheme}" if self.scheme != implied else ""
            if self.fit is not None and self.fit != WEIGHT_FORMATS[self.scheme].resolve_fit(None):
                other += f", {self.fit}"
            body = f"{self.name} (g{self.group_size}{other})"
        if self.head is not None and self.head != self.body():
            return f"{body}, head {self.head.label}"
        return body

    def body(self) -> "ModelFormat":
        """This format without its head choice."""
        return ModelFormat(self.name, self.bits, self.group_size, self.scheme, fit=self.fit)

    def quantize(self, w):
        """(M, K) float32 -> QuantizedWeight in this format (never called for f32)."""
        import tmac

        return tmac.quantize(w, bits=self.bits, group_size=self.group_size, scheme=self.scheme,
                             fit=self.fit)


def parse(name: str, group_size: int | None = None, sym: bool = False,
          head: str | None = DEFAULT_HEAD, fit: str | None = None) -> ModelFormat:
    """A format name (+ options) -> ModelFormat; ValueError naming the valid choices.

    ``head``: the output head's format name ("same": the body's), with the same group size.
    ``fit``: how to fit the weights (None: the format's default, "lsq" for w1..w8); the head
    takes it too when its format offers it."""
    body = _parse_body(name, group_size, sym, fit=fit)
    if body.scheme is None or head is None or head == "same":
        return body
    head_fmt = _parse_body(head, group_size, sym, what="head format")
    if head_fmt.scheme is not None and fit in WEIGHT_FORMATS[head_fmt.scheme].fits:
        head_fmt = _parse_body(head, group_size, sym, what="head format", fit=fit)
    return ModelFormat(body.name, body.bits, body.group_size, body.scheme, head=head_fmt,
                       fit=body.fit)


def _parse_body(name, group_size, sym, what="format", fit=None):
    if name not in FORMATS:
        raise ValueError(f"unknown {what} {name!r}; choose one of {', '.join(FORMATS)}")
    group_size = DEFAULT_GROUP_SIZE if group_size is None else int(group_size)
    if name in ("f32", "native"):
        if fit is not None:
            raise ValueError(f"fit does not apply to {what} {name!r} (nothing is requantized); "
                             f"got {fit!r}")
        return ModelFormat(name, None, None, None)
    if name in WEIGHT_FORMATS:                            # a format with one width
        fmt = WEIGHT_FORMATS[name]
        return ModelFormat(name, fmt.widths[0], group_size if fmt.grouped else None, name,
                           fit=fmt.resolve_fit(fit))
    scheme = name.rstrip("0123456789")
    bits = int(name[len(scheme):])
    if scheme == "w":
        scheme = SYMMETRIC_SCHEME if sym else DEFAULT_SCHEME
    if fit in MODEL_FITS:
        if scheme != DEFAULT_SCHEME:
            raise ValueError(f"fit {fit!r} applies to w1..w8 (affine groups), not to {what} "
                             f"{name!r}{' with --sym' if sym else ''}")
        return ModelFormat(name, bits, group_size, scheme, fit=fit)
    return ModelFormat(name, bits, group_size, scheme, fit=WEIGHT_FORMATS[scheme].resolve_fit(fit))


def fit_choices():
    """Every fit some model format offers (``--fit``), from the format table."""
    return tuple(dict.fromkeys([f for fmt in WEIGHT_FORMATS.values() for f in fmt.fits]
                               + list(MODEL_FITS)))


def head_format(fmt: ModelFormat) -> ModelFormat:
    """Format of the output head: ``fmt.head``, or the body's format when it has none."""
    return fmt.body() if fmt.head is None else fmt.head


def stack_rows(parts):
    """QuantizedWeights of equal K, bits, group size and scheme -> one with their rows stacked.

    Quantization is per row (per group within a row; ternary's per-tensor scale is stored per
    row), so stacking after quantizing gives each part exactly its own codes: Q, K and V (and
    gate and up) then share one table build and one kernel call.
    """
    first = parts[0]
    for p in parts[1:]:
        if (p.shape[1], p.bits, p.group_size, p.scheme) != (first.shape[1], first.bits,
                                                           first.group_size, first.scheme):
            raise ValueError(f"stack_rows: parts must share K, bits, group size and scheme; got "
                             f"{first!r} and {p!r}")
    return first.format.stack(parts)
