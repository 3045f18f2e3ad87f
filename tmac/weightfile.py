"""Quantized weights on disk at their packed size: ``tmac.save(path, qw)``, ``tmac.load(path)``.

A saved weight is one safetensors file (the golden container, ``tmac.golden.container``: any
safetensors reader can read it) in a versioned layout, docs/golden-format.md §11 "Saved weights":

    __metadata__  tmac.format = "tmac-weight", tmac.version = "1", tmac.generator,
                  scheme, bits, group_size, shape = "M,K", layout = "planes" or "ggml"
    layout "planes" (every format):
      codes       U8 (bits, ceil(M*K / 8))   bit plane i holds bit i of every code, in row-major
                                             order, 8 per byte, first code in the high bit
                                             (``np.packbits``); bits past the last code are 0
      scales      (M, K // group_size) or [] (the same value in every group), each as
      zeros       F32, U16 (float16 bit patterns) or U8 (integers 0..255): the narrowest dtype
      params.<p>  that holds the values exactly; ``params.a``, ``params.b`` for m0e4
    layout "ggml" (llama.cpp block types, as built by ``from_blocks``):
      ggml.blocks U8 (M, K // block_size * type_size), the tensor's blocks as in a GGUF file

Loading trusts nothing: the container's checks (truncation, offsets, dtypes), then the
metadata, the tensor set, every shape and dtype against the metadata, the padding bits, and
finally the QuantizedWeight's own checks (finite parameters, widths, group sizes). Every
problem is one ``WeightFileError`` (a ValueError) naming the file and what is wrong, so a bad
file never reaches a kernel.
"""
from __future__ import annotations

import functools
import os
import re
import secrets

import numpy as np

from tmac.bitplanes import narrowest, pack_codes, unpack_codes
from tmac.formats import FORMATS, QuantizedWeight
from tmac.golden import container

FORMAT = "tmac-weight"
VERSION = "1"
SUPPORTED_VERSIONS = ("1",)
LAYOUTS = ("planes", "ggml")
_PARAM_DTYPES = ("F32", "U16", "U8")
_MAX_FILE_BYTES = 1 << 62           # a weight may be large; the reader never allocates beyond it


class WeightFileError(ValueError):
    """A saved weight file is malformed; the message names the file and the problem."""


def save(path, qw) -> None:
    """Write ``qw`` (a ``tmac.QuantizedWeight``) to ``path`` at its packed size.

    The file is safetensors with tmac's versioned weight layout (docs/golden-format.md §11, "Saved
    weights"): the codes as b bit planes and the format's parameters in the narrowest dtype that
    holds them exactly, or, for llama.cpp block types, the raw GGML blocks. ``tmac.load(path)``
    gives back a weight equal field for field, bit for bit. The write is atomic: an existing
    file is replaced only once the new one is complete.
    """
    path = _path(path)
    tensors, metadata = encode(qw)
    metadata = {"tmac.format": FORMAT, "tmac.version": VERSION, "tmac.generator": _generator(),
                **metadata}
    write_atomic(path, container.encode(tensors, metadata))


def write_atomic(path, blob: bytes) -> None:
    """Write ``blob`` to ``path``, replacing an existing file only once the new one is whole."""
    directory, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f".{name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as f:                 # the umask's mode, like any new file
            f.write(blob)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def encode(qw) -> tuple[dict, dict]:
    """(tensors, metadata) of ``qw`` in the saved layout, the metadata without the file's
    ``tmac.format`` and ``tmac.version`` (a model file holds many weights: tmac.model.modelfile)."""
    if not isinstance(qw, QuantizedWeight):
        raise TypeError(f"qw must be a tmac.QuantizedWeight, got {type(qw).__name__}")
    m, k = qw.shape
    layout = "ggml" if _native(qw) else "planes"
    metadata = {"scheme": qw.scheme, "bits": str(qw.bits), "group_size": str(qw.group_size),
                "shape": f"{m},{k}", "layout": layout}
    if layout == "ggml":
        return {"ggml.blocks": qw.format.blocks(qw)}, metadata
    tensors = {"codes": pack_codes(qw.codes.reshape(1, m * k), qw.bits)[:, 0]}
    names = ("scales", "zeros") + tuple(f"params.{p}" for p in qw.format.param_names)
    values = (qw.scales, qw.zeros) + (qw.params or ())
    tensors.update((name, _parameter(a)) for name, a in zip(names, values))
    return tensors, metadata


def load(path) -> QuantizedWeight:
    """The ``tmac.QuantizedWeight`` saved in ``path`` by ``tmac.save``, exactly as it was.

    Refuses a file that is truncated, corrupt, of another format or version, or whose tensors
    do not fit its metadata, with a one-line ``ValueError`` naming the file and the problem
    (``tmac.weightfile.WeightFileError``). A missing file raises ``FileNotFoundError``.
    """
    path = _path(path)
    os.stat(path)                                   # FileNotFoundError as open() gives it
    try:
        tensors, meta = container.read(path, max_file_bytes=_MAX_FILE_BYTES)
    except container.GoldenFormatError as error:
        raise WeightFileError(str(error)) from None

    def fail(message):
        raise WeightFileError(f"{path}: {message}")

    kind = meta.get("tmac.format")
    if kind != FORMAT:
        fail(f"not a tmac weight file: metadata tmac.format is "
             f"{'missing' if kind is None else repr(kind)}, expected {FORMAT!r}")
    version = meta.get("tmac.version")
    if version not in SUPPORTED_VERSIONS:
        what = "is missing" if version is None else f"{version!r} is not supported"
        fail(f"tmac.version {what} (this tmac reads version {', '.join(SUPPORTED_VERSIONS)})")
    return decode(path, tensors, meta)


def decode(path, tensors, meta) -> QuantizedWeight:
    """Inverse of ``encode``: the weight of ``tensors`` and ``meta``, every check of ``load``
    made (a ``WeightFileError`` naming ``path``, the file or the part of one, on a problem)."""
    def fail(message):
        raise WeightFileError(f"{path}: {message}")

    for key in ("scheme", "bits", "group_size", "shape", "layout"):
        if key not in meta:
            fail(f"metadata key {key!r} is missing")
    scheme, layout = meta["scheme"], meta["layout"]
    if scheme not in FORMATS:
        fail(f"scheme {scheme!r} is not a format of this tmac (known: {', '.join(FORMATS)})")
    fmt = FORMATS[scheme]
    bits, group_size = (_decimal(path, key, meta[key]) for key in ("bits", "group_size"))
    shape = re.fullmatch(r"([1-9][0-9]{0,17}),([1-9][0-9]{0,17})", meta["shape"])
    if shape is None:
        fail(f"metadata shape must be 'M,K' (two positive integers), got {meta['shape']!r}")
    m, k = int(shape[1]), int(shape[2])
    if bits not in fmt.widths:
        fail(f"bits {bits} is not a width of scheme {scheme!r} "
             f"({', '.join(map(str, fmt.widths))})")
    if group_size == 0 or k % group_size:
        fail(f"group_size {group_size} does not divide K={k}")
    if layout not in LAYOUTS:
        fail(f"layout {layout!r} is not one of {', '.join(LAYOUTS)}")

    if layout == "ggml":
        if not callable(getattr(fmt, "from_blocks", None)):
            fail(f"layout 'ggml' needs a llama.cpp block type, and scheme {scheme!r} is not one")
        block = fmt.block
        if (bits, group_size) != (block.bits, block.group_size) or k % block.block_size:
            fail(f"bits {bits}, group_size {group_size}, K={k} do not fit {block.name} "
                 f"({block.bits}-bit codes, groups of {block.group_size}, blocks of "
                 f"{block.block_size})")
        _check_tensors(path, tensors, {"ggml.blocks": (("U8",),
                                                       (m, k // block.block_size * block.type_size))})
        try:
            return fmt.from_blocks(tensors["ggml.blocks"], (m, k), where=path)
        except ValueError as error:
            raise WeightFileError(str(error)) from None

    n_groups = k // group_size
    planes = -(-m * k // 8)
    params = ("scales", "zeros") + tuple(f"params.{p}" for p in fmt.param_names)
    expected = {"codes": (("U8",), (bits, planes)),
                **{name: (_PARAM_DTYPES, (m, n_groups)) for name in params}}
    codes = tensors.get("codes")
    if codes is not None and codes.ndim == 2 and codes.shape[1] == planes \
            and codes.shape[0] != bits:
        fail(f"tensor 'codes' has {codes.shape[0]} bit planes but bits is {bits}"
             + (" (codes out of range for bits)" if codes.shape[0] > bits else ""))
    _check_tensors(path, tensors, expected, scalars=params)
    used = m * k % 8
    if used and (codes[:, -1] & (0xFF >> used)).any():
        fail(f"tensor 'codes': the {8 - used} bits past the last code must be 0")
    codes = unpack_codes(codes[:, None, :], m * k).reshape(m, k)
    scales, zeros, *extra = (_widen(tensors[name], (m, n_groups)) for name in params)
    try:
        return QuantizedWeight(codes, scales, zeros, bits, group_size, scheme,
                               params=tuple(extra) or None)
    except (TypeError, ValueError) as error:
        raise WeightFileError(f"{path}: {error}") from None


# ---- helpers ---------------------------------------------------------------------------------

def _path(path):
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    return os.fspath(path)


def _generator():
    from tmac.version import __version__

    return f"tmac {__version__}"


@functools.lru_cache(maxsize=None)
def _native_form(scheme):
    """The kernel parameter form of a block type's weights as ``from_blocks`` builds them."""
    fmt = FORMATS[scheme]
    block = fmt.block
    return fmt.from_blocks(np.zeros((1, block.type_size), np.uint8), (1, block.block_size)).packed.form


def _native(qw):
    """Whether ``qw`` is a llama.cpp block type's weight as ``from_blocks`` builds it (its raw
    blocks are then its packed form); a block-type weight built otherwise is saved as planes."""
    fmt = qw.format
    if not callable(getattr(fmt, "from_blocks", None)) or qw.packed is None:
        return False
    block = fmt.block
    return ((qw.bits, qw.group_size) == (block.bits, block.group_size)
            and qw.shape[1] % block.block_size == 0 and qw.packed.form == _native_form(qw.scheme))


def _parameter(a):
    """A (M, G) float32 parameter array as stored: a scalar when every group holds the same
    float32 (bit for bit), in the narrowest exact dtype, float16 as its uint16 bit patterns."""
    a = np.ascontiguousarray(a, np.float32)
    flat = a.reshape(-1).view(np.uint32)
    if (flat == flat[0]).all():
        a = a.reshape(-1)[:1].reshape(())
    stored = narrowest(a)
    return stored.view(np.uint16) if stored.dtype == np.float16 else stored


def _widen(stored, shape):
    """Inverse of _parameter: a stored parameter -> (M, G) float32, exactly."""
    a = stored.view(np.float16) if stored.dtype == np.uint16 else stored
    return np.ascontiguousarray(np.broadcast_to(a.astype(np.float32), shape))


def _decimal(path, key, value):
    if not re.fullmatch(r"0|[1-9][0-9]{0,17}", value):       # < 10^18: no giant ints
        raise WeightFileError(f"{path}: metadata {key} must be a decimal integer, got {value!r}")
    return int(value)


def _check_tensors(path, tensors, expected, scalars=()):
    """Exactly the ``expected`` tensors (name -> (allowed tags, shape)); ``scalars`` may also be
    shape []."""
    for name in expected:
        if name not in tensors:
            raise WeightFileError(f"{path}: tensor {name!r} is missing")
    for name in tensors:
        if name not in expected:
            raise WeightFileError(f"{path}: unexpected tensor {name!r} (expected "
                                  f"{', '.join(expected)})")
    for name, (tags, shape) in expected.items():
        a = tensors[name]
        tag = container.TAGS[a.dtype]
        shapes = (shape, ()) if name in scalars else (shape,)
        if tag not in tags or a.shape not in shapes:
            want = " or ".join(tags) + " " + " or ".join(str(list(s)) for s in shapes)
            raise WeightFileError(f"{path}: tensor {name!r} is {tag} {list(a.shape)}, "
                                  f"expected {want}")
