"""The safetensors container, written and read by hand (no dependency), defensively.

Layout of a file (the safetensors format, https://github.com/huggingface/safetensors)::

    bytes 0..7        n, the header length: unsigned 64-bit little-endian
    bytes 8..8+n      the header: UTF-8 JSON object, padded with spaces to a multiple of 8
    bytes 8+n..end    the data region: raw little-endian row-major tensor buffers

The header maps each tensor name to ``{"dtype": "U8", "shape": [2, 3], "data_offsets": [b, e]}``
(offsets relative to the data region, end exclusive) and may hold ``"__metadata__"``, a flat
object of string to string. tmac writes tensors in insertion order, back to back, from offset 0.

The reader trusts nothing: it checks the file size before reading the header, refuses headers
over ``MAX_HEADER_BYTES``, unknown dtypes, negative or non-integer shapes, offsets that do not
match the shape, overlap, leave gaps or run past the end, and it never allocates more than the
file's own size. Every problem raises ``GoldenFormatError`` naming the file and what is wrong.
"""
from __future__ import annotations

import json
import math
import os
import struct

import numpy as np

# safetensors dtype tag -> numpy dtype (little-endian). FP4/FP8 never get a tag of their own:
# packed data is U8 and fp16 bit patterns are U16.
DTYPES = {
    "U8": np.dtype("u1"),
    "I8": np.dtype("i1"),
    "U16": np.dtype("<u2"),
    "I16": np.dtype("<i2"),
    "U32": np.dtype("<u4"),
    "I32": np.dtype("<i4"),
    "F32": np.dtype("<f4"),
}
TAGS = {dtype: tag for tag, dtype in DTYPES.items()}
MAX_HEADER_BYTES = 1 << 20          # 1 MiB: a golden case header is a few KiB
MAX_FILE_BYTES = 256 << 20          # no golden case comes near this
METADATA_KEY = "__metadata__"


class GoldenFormatError(ValueError):
    """A golden file (container or manifest) is malformed; the message says where and how."""


def encode(tensors: dict, metadata: dict | None = None) -> bytes:
    """The bytes of a safetensors file holding ``tensors`` (name -> array) in the given order."""
    header, buffers, offset = {}, [], 0
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError("safetensors metadata must map str to str")
        header[METADATA_KEY] = dict(metadata)
    for name, array in tensors.items():
        array = np.asarray(array)
        dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
        if dtype not in TAGS:
            raise TypeError(f"tensor {name!r}: dtype {array.dtype} has no golden container tag")
        data = np.ascontiguousarray(array, dtype=dtype).tobytes()
        header[name] = {"dtype": TAGS[dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        buffers.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    text += b" " * (-len(text) % 8)          # data region starts 8-aligned
    return struct.pack("<Q", len(text)) + text + b"".join(buffers)


def _fail(path, message):
    raise GoldenFormatError(f"{path}: {message}")


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate key {next(k for k in keys if keys.count(k) > 1)!r}")
    return dict(pairs)


def _nonnegative_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def parse_header(path, file_size: int, header_bytes: bytes) -> tuple[dict, dict]:
    """Validate a header against the file size; returns (entries in data order, metadata)."""
    try:
        header = json.loads(header_bytes.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as error:
        _fail(path, f"header is not valid UTF-8 JSON ({error})")
    if not isinstance(header, dict):
        _fail(path, "header must be a JSON object")
    metadata = header.pop(METADATA_KEY, {})
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        _fail(path, f"{METADATA_KEY} must be an object of string to string")
    data_size = file_size - 8 - len(header_bytes)
    entries = []
    for name, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            _fail(path, f"tensor {name!r}: entry must have exactly dtype, shape and data_offsets")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in DTYPES:
            _fail(path, f"tensor {name!r}: unknown dtype {dtype!r} (known: {', '.join(DTYPES)})")
        if not isinstance(shape, list) or len(shape) > 8 or not all(map(_nonnegative_int, shape)):
            _fail(path, f"tensor {name!r}: shape must be a list of at most 8 non-negative "
                        f"integers, got {shape!r}")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(map(_nonnegative_int, offsets)) or offsets[0] > offsets[1]):
            _fail(path, f"tensor {name!r}: data_offsets must be [begin, end] with "
                        f"0 <= begin <= end, got {offsets!r}")
        nbytes = math.prod(shape) * DTYPES[dtype].itemsize          # Python int: cannot overflow
        if offsets[1] - offsets[0] != nbytes:
            _fail(path, f"tensor {name!r}: data_offsets {offsets} span {offsets[1] - offsets[0]} "
                        f"bytes but {dtype} {shape} needs {nbytes}")
        if offsets[1] > data_size:
            _fail(path, f"tensor {name!r}: data_offsets {offsets} run past the end of the data "
                        f"region ({data_size} bytes); the file is truncated or corrupt")
        entries.append((name, dtype, tuple(shape), offsets[0], offsets[1]))
    entries.sort(key=lambda e: (e[3], e[4]))
    position = 0
    for name, _, _, begin, end in entries:
        if begin != position:
            what = "overlaps the previous tensor" if begin < position else "leaves a gap"
            _fail(path, f"tensor {name!r}: data_offsets begin at {begin}, expected {position} "
                        f"({what})")
        position = end
    if position != data_size:
        _fail(path, f"tensors cover {position} bytes of a {data_size}-byte data region "
                    "(trailing bytes or truncated file)")
    return {e[0]: e[1:] for e in entries}, metadata


def read(path, max_file_bytes: int = MAX_FILE_BYTES) -> tuple[dict, dict]:
    """Read a golden safetensors file: (name -> read-only array, metadata). Validates first."""
    path = os.fspath(path)
    try:
        file_size = os.path.getsize(path)
    except OSError as error:
        raise GoldenFormatError(f"{path}: cannot read ({error.strerror})") from None
    if file_size > max_file_bytes:
        _fail(path, f"file has {file_size} bytes, more than the limit of {max_file_bytes}")
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            _fail(path, f"truncated: {file_size} bytes, too short for the 8-byte header length")
        (header_len,) = struct.unpack("<Q", head)
        if header_len > MAX_HEADER_BYTES:
            _fail(path, f"header length {header_len} exceeds the limit of {MAX_HEADER_BYTES} bytes")
        if header_len > file_size - 8:
            _fail(path, f"header length {header_len} runs past the end of the file "
                        f"({file_size} bytes): truncated or corrupt")
        entries, metadata = parse_header(path, file_size, f.read(header_len))
        data = f.read()                               # exactly file_size - 8 - header_len bytes
    if len(data) != file_size - 8 - header_len:
        _fail(path, "file changed size while being read")
    tensors = {}
    for name, (dtype, shape, begin, end) in entries.items():
        if end == begin:
            tensors[name] = np.empty(shape, DTYPES[dtype])
            continue
        tensors[name] = np.frombuffer(data, DTYPES[dtype], count=(end - begin) // DTYPES[dtype].itemsize,
                                      offset=begin).reshape(shape)
    return tensors, metadata


def write(path, tensors: dict, metadata: dict | None = None) -> bytes:
    """Write a safetensors file; returns the bytes written."""
    blob = encode(tensors, metadata)
    with open(path, "wb") as f:
        f.write(blob)
    return blob
