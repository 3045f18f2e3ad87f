"""Read a llama- or qwen2-architecture GGUF file: configuration, tensors, tokenizer metadata.

The ``gguf`` package parses the file; the tensors' blocks are read by tmac's own specification
of llama.cpp's block types (tmac.reference.ggml: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1,
Q2_K..Q6_K, TQ1_0, TQ2_0), equal to gguf's dequantization bit for bit. ``load`` dequantizes
every weight to float32 (what a requantizing format starts from); ``load(native=True)`` keeps
each linear weight in its file's own type (a QuantizedWeight of tmac.formats.ggml, the same
bytes). Any other type (IQ*, ...) or architecture raises ``UnsupportedModelError`` naming it;
truncated data, NaN/Inf scales or a dimension the block does not divide raise
``CorruptModelError`` naming the tensor.

Orientation: a GGUF matrix with ggml shape [K, M] is read as a numpy (M, K) array, so a linear
layer is ``y = x @ W.T`` exactly as ``tmac.matmul`` computes it.

What differs between the architectures is a small table (ARCHITECTURES), the rules llama.cpp
applies to each (src/llama-model.cpp's graph builders and rope types, docs/model.md):

    llama   RoPE on adjacent pairs (x[2i], x[2i+1]): llama.cpp's converter permutes the rows of
            Q and K of Hugging Face checkpoints so that this holds; no biases
    qwen2   NEOX RoPE (x[i] paired with x[i + n/2]; the converter leaves Q and K as trained);
            biases on Q, K and V (``attn_q.bias`` ...); a separate output head

Every tensor in the file must be one the architecture uses: an unknown one (a q/k norm, a bias
we do not apply) is an UnsupportedModelError, never silently ignored. A token embedding stored
in a block type whose float32 copy would exceed EMBED_FLOAT_LIMIT stays in its blocks
(tmac.model.embedding), rows decoded as they are looked up.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

import numpy as np

from tmac.extras import MissingExtra, hint
from tmac.reference.ggml import BLOCK_TYPES

@dataclass(frozen=True)
class Architecture:
    """What a GGUF ``general.architecture`` means for the forward pass."""

    rope_neox: bool         # RoPE pairs (x[i], x[i + n/2]) instead of (x[2i], x[2i+1])
    qkv_bias: bool          # Q, K and V have bias vectors


ARCHITECTURES = {"llama": Architecture(rope_neox=False, qkv_bias=False),
                 "qwen2": Architecture(rope_neox=True, qkv_bias=True)}
SUPPORTED_ARCHITECTURES = tuple(ARCHITECTURES)
SUPPORTED_TYPES = tuple(BLOCK_TYPES)
FLOAT_TYPES = ("F32", "F16", "BF16")
MAX_DIMENSION = 1 << 24        # larger than any dimension of a real llama model

# per-layer tensors: our name -> GGUF name (without the "blk.{i}." prefix)
LAYER_TENSORS = {
    "attn_norm": "attn_norm.weight", "wq": "attn_q.weight", "wk": "attn_k.weight",
    "wv": "attn_v.weight", "wo": "attn_output.weight", "ffn_norm": "ffn_norm.weight",
    "w_gate": "ffn_gate.weight", "w_up": "ffn_up.weight", "w_down": "ffn_down.weight",
}


NORMS = ("attn_norm", "ffn_norm")
BIAS_TENSORS = {"bq": "attn_q.bias", "bk": "attn_k.bias", "bv": "attn_v.bias"}
# float32 bytes above which a block-typed token embedding stays in its blocks (a 151936 x 896
# embedding is 545 MB of float32, 155 MB as Q8_0); SmolLM2's 113 MB stays a float32 table
EMBED_FLOAT_LIMIT = 256 << 20


class UnsupportedModelError(ValueError):
    """The GGUF file uses an architecture or tensor type tmac does not run."""


class CorruptModelError(ValueError):
    """The file is not a well-formed GGUF file (truncated, damaged, or inconsistent)."""


GGUF_MAGIC = b"GGUF"
GGUF_VERSIONS = (2, 3)
# what the gguf package raises on malformed input, besides ValueError
_PARSE_ERRORS = (ValueError, IndexError, KeyError, TypeError, OverflowError, UnicodeDecodeError,
                 AssertionError, struct.error)


def require_extra():
    """MissingExtra (one line: how to add it) unless gguf, tokenizers and jinja2 import."""
    _require_gguf()
    for module in ("tokenizers", "jinja2"):
        try:
            __import__(module)
        except ImportError:
            raise MissingExtra(hint("model", "running a model")) from None


def _require_gguf():
    try:
        import gguf
    except ImportError:
        raise MissingExtra(hint("model", "reading GGUF files")) from None
    return gguf


@dataclass(frozen=True)
class LlamaConfig:
    """Hyperparameters from the GGUF metadata (``llama.*`` keys)."""

    n_layers: int
    dim: int
    ffn_dim: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int
    context_length: int
    rope_base: float
    rope_dim: int
    norm_eps: float
    name: str = "llama"
    architecture: str = "llama"

    @property
    def rope_neox(self) -> bool:
        return ARCHITECTURES[self.architecture].rope_neox

    @property
    def qkv_bias(self) -> bool:
        return ARCHITECTURES[self.architecture].qkv_bias

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim

    @property
    def group(self) -> int:
        """Query heads per KV head (grouped-query attention)."""
        return self.n_heads // self.n_kv_heads


@dataclass
class LlamaWeights:
    """Float32 weights: ``embed`` (vocab, dim; a float32 array, or a large block-typed one as a
    tmac.model.embedding.BlockEmbedding), ``output`` (vocab, dim, tied if the file has none),
    ``output_norm`` (dim,), and ``layers``: one dict per layer keyed as LAYER_TENSORS, with
    the biases "bq", "bk", "bv" (float32 vectors) where the architecture has them."""

    config: LlamaConfig
    embed: np.ndarray
    output: np.ndarray
    output_norm: np.ndarray
    layers: list
    tied: bool
    source_types: dict = field(default_factory=dict)   # GGUF name -> type name


@dataclass
class GGUFModel:
    path: str
    config: LlamaConfig
    weights: LlamaWeights
    metadata: dict          # every scalar/string/array field, tokenizer arrays included


def open_reader(path):
    """A gguf.GGUFReader of ``path`` whose fields are read through a plain ndarray view of the
    file's memory map (still no copy): gguf reads every token and merge string through
    np.memmap slicing, whose per-slice overhead made parsing Qwen2's 151k tokens and merges take
    12-15 s; through plain views it takes ~5 s. Falls back to the plain reader if gguf's internal
    ``_get`` changes shape."""
    gguf = _require_gguf()
    if not callable(getattr(gguf.GGUFReader, "_get", None)):
        return gguf.GGUFReader(str(path))

    class PlainViewReader(gguf.GGUFReader):
        def _get(self, offset, dtype, count=1, override_order=None):
            plain = self.__dict__.get("_plain_data")
            if plain is None or plain.size != self.data.size:
                plain = self.__dict__["_plain_data"] = self.data.view(np.ndarray)
            count = int(count)
            itemsize = np.dtype(dtype).itemsize
            arr = plain[offset:offset + itemsize * count].view(dtype=dtype)[:count]
            order = self.byte_order if override_order is None else override_order
            return arr.view(arr.dtype.newbyteorder(order))

    return PlainViewReader(str(path))


def read_metadata(reader) -> dict:
    """GGUF key-value fields as Python values (strings, numbers, lists)."""
    out = {}
    for key, f in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        try:
            out[key] = f.contents()
        except Exception:                               # pragma: no cover - exotic field types
            continue
    return out


def config_from_metadata(meta: dict) -> LlamaConfig:
    arch = meta.get("general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise UnsupportedModelError(f"unsupported architecture {arch!r}: tmac runs "
                                    f"{', '.join(SUPPORTED_ARCHITECTURES)}")

    def get(key, default=None):
        value = meta.get(f"{arch}.{key}", default)
        if value is None:
            raise UnsupportedModelError(f"GGUF metadata lacks {arch}.{key}")
        return value

    check_known_keys(meta, arch)
    dim, n_heads = int(get("embedding_length")), int(get("attention.head_count"))
    tokens = meta.get("tokenizer.ggml.tokens")
    vocab = int(meta.get(f"{arch}.vocab_size", len(tokens) if tokens is not None else 0))
    if n_heads <= 0:
        raise CorruptModelError(f"{arch}.attention.head_count must be positive, got {n_heads}")
    config = LlamaConfig(
        n_layers=int(get("block_count")), dim=dim, ffn_dim=int(get("feed_forward_length")),
        n_heads=n_heads, n_kv_heads=int(get("attention.head_count_kv", n_heads)),
        vocab_size=vocab, context_length=int(get("context_length", 2048)),
        rope_base=float(get("rope.freq_base", 10000.0)),
        rope_dim=int(get("rope.dimension_count", dim // n_heads)),
        norm_eps=float(get("attention.layer_norm_rms_epsilon", 1e-5)),
        name=str(meta.get("general.name", arch)), architecture=arch)
    check_config(config)
    return config


# metadata that changes the forward pass in a way tmac does not implement: refused, not ignored
UNSUPPORTED_KEYS = ("rope.scaling.type", "rope.scaling.factor", "attention.sliding_window",
                    "attention.key_length", "attention.value_length", "expert_count")


def check_known_keys(meta: dict, arch: str):
    """UnsupportedModelError for a key that asks for what tmac does not compute (RoPE scaling,
    sliding windows, a head size other than dim / heads, experts). Keys set to their neutral
    value (scaling "none" or factor 1, a key length of dim / heads) pass."""
    heads = meta.get(f"{arch}.attention.head_count")
    dim = meta.get(f"{arch}.embedding_length")
    neutral = {"rope.scaling.type": ("none",), "rope.scaling.factor": (1.0, 0.0),
               "expert_count": (0, 1)}
    if heads and dim:
        neutral["attention.key_length"] = neutral["attention.value_length"] = (dim // heads,)
    for key in UNSUPPORTED_KEYS:
        value = meta.get(f"{arch}.{key}")
        if value is not None and value not in neutral.get(key, ()):
            raise UnsupportedModelError(f"{arch}.{key} = {value!r}: tmac does not implement it")


def check_config(c: LlamaConfig):
    """Refuse hyperparameters that no llama model has: they would crash or mislead the forward."""
    sizes = {"block_count": c.n_layers, "embedding_length": c.dim, "feed_forward_length": c.ffn_dim,
             "attention.head_count": c.n_heads, "attention.head_count_kv": c.n_kv_heads,
             "vocab_size": c.vocab_size, "context_length": c.context_length,
             "rope.dimension_count": c.rope_dim}
    for key, value in sizes.items():
        if not 0 < value <= MAX_DIMENSION:
            raise CorruptModelError(f"{c.name}: {key} = {value} is outside 1..{MAX_DIMENSION}")
    if c.dim % c.n_heads or c.n_heads % c.n_kv_heads:
        raise CorruptModelError(f"{c.name}: embedding_length {c.dim}, head_count {c.n_heads} and "
                                f"head_count_kv {c.n_kv_heads} do not divide evenly")
    if c.rope_dim > c.head_dim or c.rope_dim % 2:
        raise CorruptModelError(f"{c.name}: rope.dimension_count {c.rope_dim} must be even and at "
                                f"most the head size {c.head_dim}")
    if not (np.isfinite(c.rope_base) and c.rope_base > 0 and np.isfinite(c.norm_eps) and c.norm_eps >= 0):
        raise CorruptModelError(f"{c.name}: rope.freq_base {c.rope_base} and layer_norm_rms_epsilon "
                                f"{c.norm_eps} must be finite, positive")


def raw_blocks(tensor) -> np.ndarray:
    """A ReaderTensor's bytes as uint8 (however the gguf reader typed them)."""
    return np.ascontiguousarray(np.asarray(tensor.data)).view(np.uint8).reshape(-1)


def tensor_shape(tensor) -> tuple:
    """numpy orientation of a ReaderTensor: ggml [K, M] -> (M, K)."""
    return tuple(int(d) for d in reversed(tensor.shape))


def dequantize_tensor(tensor) -> np.ndarray:
    """A ReaderTensor -> float32 array in numpy orientation (rows = ggml's last dimension), by
    tmac.reference.ggml (bit for bit gguf's dequantization)."""
    from tmac.reference import ggml

    kind = tensor.tensor_type.name
    if kind not in SUPPORTED_TYPES:
        raise UnsupportedModelError(f"tensor {tensor.name} has unsupported type {kind}; "
                                    f"tmac reads {', '.join(SUPPORTED_TYPES)}")
    shape = tensor_shape(tensor)
    k = shape[-1] if shape else 1
    rows = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
    try:
        decoded = ggml.decode_matrix(kind, raw_blocks(tensor), (rows, k))
        ggml.check_finite(decoded, tensor.name)
    except ValueError as e:
        raise CorruptModelError(f"tensor {tensor.name} ({kind}): {e}") from None
    block = ggml.get(kind)
    raw = ggml.encode_matrix(kind, decoded)
    return np.ascontiguousarray(block.dequantize(raw).reshape(shape))


def native_tensor(tensor):
    """A ReaderTensor in its file's own type: a QuantizedWeight (tmac.formats.ggml) for a block
    type, a float32 array for F32/F16/BF16."""
    from tmac.formats import FORMATS

    kind = tensor.tensor_type.name
    if kind in FLOAT_TYPES:
        return dequantize_tensor(tensor)
    if kind not in SUPPORTED_TYPES:
        raise UnsupportedModelError(f"tensor {tensor.name} has unsupported type {kind}; "
                                    f"tmac reads {', '.join(SUPPORTED_TYPES)}")
    try:
        return FORMATS[kind.lower()].from_blocks(raw_blocks(tensor), tensor_shape(tensor),
                                                 where=f"tensor {tensor.name} ({kind})")
    except ValueError as e:
        raise CorruptModelError(str(e)) from None


def check_header(path):
    """Magic and version, before the gguf package maps the file: a clear error for non-GGUF files."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
    if size < 24 or head[:4] != GGUF_MAGIC:
        raise CorruptModelError(f"{path} is not a GGUF file (magic {head[:4]!r}, {size} bytes)")
    version = struct.unpack("<I", head[4:8])[0]
    if version not in GGUF_VERSIONS:
        raise CorruptModelError(f"{path}: GGUF version {version} is not supported "
                                f"(tmac reads {GGUF_VERSIONS})")


def load(path, native: bool = False) -> GGUFModel:
    """Read ``path``: metadata, config, and every weight dequantized to float32 (``native``: the
    linear weights in their file's own types, the embedding dequantized for the lookup).

    Raises UnsupportedModelError for an architecture or tensor type tmac does not run, and
    CorruptModelError (a ValueError) for a file that is truncated, damaged or inconsistent.
    """
    check_header(path)
    try:
        return _load(path, native)
    except (UnsupportedModelError, CorruptModelError):
        raise
    except _PARSE_ERRORS as error:
        raise CorruptModelError(f"{path} is damaged or truncated: {type(error).__name__}: "
                                f"{str(error)[:200]}") from error


def _load(path, native=False) -> GGUFModel:
    reader = open_reader(path)
    meta = read_metadata(reader)
    config = config_from_metadata(meta)
    tensors = {t.name: t for t in reader.tensors}
    types = {name: t.tensor_type.name for name, t in tensors.items()}
    bad = sorted(f"{name} ({kind})" for name, kind in types.items() if kind not in SUPPORTED_TYPES)
    if bad:
        raise UnsupportedModelError(f"unsupported tensor types (tmac reads {', '.join(SUPPORTED_TYPES)}): "
                                    + ", ".join(bad[:8]) + (" ..." if len(bad) > 8 else ""))

    def take(name, shape, as_stored=False):
        if name not in tensors:
            raise UnsupportedModelError(f"GGUF file lacks tensor {name}")
        if tensor_shape(tensors[name]) != shape:
            raise UnsupportedModelError(f"tensor {name} has shape {tensor_shape(tensors[name])}, "
                                        f"expected {shape}")
        array = native_tensor(tensors[name]) if as_stored else dequantize_tensor(tensors[name])
        if isinstance(array, np.ndarray) and not np.isfinite(array).all():
            raise CorruptModelError(f"tensor {name} holds NaN or Inf values")
        return array

    c = config
    shapes = {"attn_norm": (c.dim,), "wq": (c.dim, c.dim), "wk": (c.kv_dim, c.dim),
              "wv": (c.kv_dim, c.dim), "wo": (c.dim, c.dim), "ffn_norm": (c.dim,),
              "w_gate": (c.ffn_dim, c.dim), "w_up": (c.ffn_dim, c.dim), "w_down": (c.dim, c.ffn_dim),
              "bq": (c.dim,), "bk": (c.kv_dim,), "bv": (c.kv_dim,)}
    per_layer = layer_tensors(c)
    check_known_tensors(tensors, c, per_layer)
    layers = [{key: take(f"blk.{i}.{gname}", shapes[key], native and key in MATRICES)
               for key, gname in per_layer.items()} for i in range(c.n_layers)]
    tied = "output.weight" not in tensors
    embed = _embedding(tensors["token_embd.weight"], (c.vocab_size, c.dim), take)
    head_name = "token_embd.weight" if tied else "output.weight"
    output = take(head_name, (c.vocab_size, c.dim), native) if native or not tied else \
        np.asarray(embed, np.float32)
    weights = LlamaWeights(c, embed, output, take("output_norm.weight", (c.dim,)), layers, tied, types)
    return GGUFModel(str(path), config, weights, meta)


MATRICES = ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down")


def layer_tensors(c: LlamaConfig) -> dict:
    """Per-layer tensors of ``c``'s architecture: our name -> GGUF name without "blk.{i}."."""
    return {**LAYER_TENSORS, **(BIAS_TENSORS if c.qkv_bias else {})}


def check_known_tensors(tensors, c: LlamaConfig, per_layer: dict):
    """UnsupportedModelError naming the tensors the architecture does not use (run without
    them, the model would compute something else)."""
    known = {"token_embd.weight", "output.weight", "output_norm.weight"}
    known |= {f"blk.{i}.{name}" for i in range(c.n_layers) for name in per_layer.values()}
    unknown = sorted(set(tensors) - known)
    if unknown:
        raise UnsupportedModelError(
            f"tensors tmac does not apply in a {c.architecture} model: {', '.join(unknown[:6])}"
            + (" ..." if len(unknown) > 6 else ""))


def _embedding(tensor, shape, take):
    """The token embedding: float32, or its blocks (tmac.model.embedding.BlockEmbedding) when
    it has a block type and its float32 copy would exceed EMBED_FLOAT_LIMIT."""
    from tmac.model.embedding import BlockEmbedding

    kind = tensor.tensor_type.name
    if kind in FLOAT_TYPES or shape[0] * shape[1] * 4 <= EMBED_FLOAT_LIMIT:
        return take("token_embd.weight", shape)
    if tensor_shape(tensor) != shape:
        raise UnsupportedModelError(f"tensor token_embd.weight has shape {tensor_shape(tensor)}, "
                                    f"expected {shape}")
    try:
        return BlockEmbedding.from_raw(kind, raw_blocks(tensor), shape)
    except ValueError as e:
        raise CorruptModelError(f"tensor token_embd.weight ({kind}): {e}") from None
