"""A quantized model saved once and opened by every model command: ``tmac quantize ... -o OUT``.

Fitting a model can take minutes (GPTQ: calibration, then layer after layer); the file keeps
the result at its packed size, self-contained: tokenizer, configuration and every tensor, no
GGUF needed beside it. It is one safetensors file (``tmac.golden.container``) in a versioned
layout, docs/golden-format.md §12 "Saved models":

    __metadata__   tmac.format = "tmac-model", tmac.version = "1", tmac.generator,
                   format   the ModelFormat as JSON (its label in every report)
                   source   the GGUF file's name it was made from, fit notes (free text)
                   quality  JSON: perplexity of the model and of float32 on a shipped text,
                            measured when it was saved (``tmac generate`` warns when poor)
                   plan     (a mix only) JSON: each matrix's width, the measured costs
                   matrices JSON {name: a saved weight's metadata (tmac.weightfile.encode)}
    gguf.metadata  U8     the source GGUF's metadata as UTF-8 JSON (vocabulary, merges, config)
    embed          the embedding: a saved weight when a format holds it exactly (llama.cpp's
                   Q8_0 embedding requantized to Q8_0 gives its own blocks back), else F32
    output_norm    F32 (D,);  attn_norm, ffn_norm  F32 (layers, D)
    qkv_bias       F32 (layers, D + 2 KV) where the architecture has Q/K/V biases (qwen2)
    <name>/<t>     tensor <t> of matrix <name> ("head", "<layer>.qkv|o|gate_up|down") in the
                   saved-weight layout (tmac.weightfile: bit planes, or raw GGML blocks)

Every matrix is checked as ``tmac.load`` checks a weight file, so a damaged file is one
``ModelFileError`` naming the file and the problem, never a crash in a kernel.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from tmac import weightfile
from tmac.golden import container
from tmac.model.formats import ModelFormat
from tmac.model.embedding import BlockEmbedding, as_runtime_table
from tmac.model.runtime import LINEARS, PreparedModel

FORMAT = "tmac-model"
VERSION = "1"
_MAX_FILE_BYTES = 1 << 62
NOTES = ("quality", "plan")       # what the file says of itself (PreparedModel.notes)


class ModelFileError(ValueError):
    """A saved model file is malformed; the message names the file and the problem."""


def is_model_file(path) -> bool:
    """Whether ``path`` is a file that starts like a tmac model file (not a GGUF)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8 + 256)
    except OSError:
        return False
    return len(head) > 8 and head[8:9] == b"{" and FORMAT.encode() in head


def save(path, model: PreparedModel, gguf_metadata: dict, source: str = "") -> None:
    """Write ``model`` with the tokenizer and configuration of ``gguf_metadata`` to ``path``;
    ``model.notes`` (its measured quality, a mix's plan) is kept as JSON."""
    tensors, matrices = {}, {}
    mats = {"head": model.head, **{f"{i}.{k}": layer[k] for i, layer in enumerate(model.layers)
                                   for k in LINEARS}}
    for name, qw in mats.items():
        if isinstance(qw, np.ndarray) or isinstance(qw, list):
            raise ValueError(f"model: matrix {name} is not one quantized weight; only a "
                             f"quantized format can be saved (not f32)")
        parts, matrices[name] = weightfile.encode(qw)
        tensors.update((f"{name}/{t}", a) for t, a in parts.items())
    embed = _compact(model.embed)
    if embed is None:
        tensors["embed"] = np.ascontiguousarray(model.embed, np.float32)
    else:
        parts, matrices["embed"] = weightfile.encode(embed)
        tensors.update((f"embed/{t}", a) for t, a in parts.items())
    tensors["output_norm"] = np.asarray(model.output_norm, np.float32)
    tensors["attn_norm"] = np.stack([l["attn_norm"] for l in model.layers]).astype(np.float32)
    tensors["ffn_norm"] = np.stack([l["ffn_norm"] for l in model.layers]).astype(np.float32)
    if model.config.qkv_bias:
        tensors["qkv_bias"] = np.stack([l["qkv_bias"] for l in model.layers]).astype(np.float32)
    text = json.dumps(gguf_metadata, default=_plain).encode()
    tensors["gguf.metadata"] = np.frombuffer(text, np.uint8)
    meta = {"tmac.format": FORMAT, "tmac.version": VERSION,
            "tmac.generator": weightfile._generator(), "format": json.dumps(asdict(model.format)),
            "source": source, "matrices": json.dumps(matrices, sort_keys=True)}
    for key in NOTES:
        if key in model.notes:
            meta[key] = json.dumps(model.notes[key], sort_keys=True)
    weightfile.write_atomic(path, container.encode(tensors, meta))


def load(path):
    """(gguf metadata dict, PreparedModel) of a file written by ``save``."""
    from tmac.model.loader import CorruptModelError, config_from_metadata

    path = str(path)
    try:
        tensors, meta = container.read(path, max_file_bytes=_MAX_FILE_BYTES)
    except container.GoldenFormatError as error:
        raise ModelFileError(str(error)) from None

    def fail(message):
        raise ModelFileError(f"{path}: {message}")

    if meta.get("tmac.format") != FORMAT:
        fail(f"not a tmac model file (metadata tmac.format is {meta.get('tmac.format')!r})")
    if meta.get("tmac.version") != VERSION:
        fail(f"tmac.version {meta.get('tmac.version')!r} is not supported (this tmac reads "
             f"version {VERSION})")
    try:
        fmt = _format(json.loads(meta["format"]))
        matrices = json.loads(meta["matrices"])
        gguf_metadata = json.loads(bytes(tensors["gguf.metadata"]).decode())
        config = config_from_metadata(gguf_metadata)
    except (KeyError, TypeError, ValueError, CorruptModelError) as error:
        fail(f"metadata or configuration unreadable: {error}")

    def weight(name, shape):
        if name not in matrices:
            fail(f"matrix {name!r} is missing")
        prefix = f"{name}/"
        parts = {t[len(prefix):]: a for t, a in tensors.items() if t.startswith(prefix)}
        qw = weightfile.decode(f"{path}: matrix {name}", parts, matrices[name])
        if qw.shape != shape:
            fail(f"matrix {name} has shape {qw.shape}, expected {shape}")
        return qw

    def floats(name, shape):
        a = tensors.get(name)
        if a is None or a.dtype != np.float32 or a.shape != shape:
            fail(f"tensor {name!r} must be F32 {list(shape)}")
        if not np.all(np.isfinite(a)):
            fail(f"tensor {name!r} is not finite")
        return a

    c = config
    q_rows = c.dim + 2 * c.n_kv_heads * c.head_dim
    shapes = {"qkv": (q_rows, c.dim), "o": (c.dim, c.n_heads * c.head_dim),
              "gate_up": (2 * c.ffn_dim, c.dim), "down": (c.dim, c.ffn_dim)}
    vocab = (c.vocab_size, c.dim)
    embed = _embedding(weight("embed", vocab)) if "embed" in matrices else floats("embed", vocab)
    attn_norm = floats("attn_norm", (c.n_layers, c.dim))
    ffn_norm = floats("ffn_norm", (c.n_layers, c.dim))
    if c.qkv_bias:
        qkv_bias = floats("qkv_bias", (c.n_layers, q_rows))
    layers = []
    for i in range(c.n_layers):
        layer = {k: weight(f"{i}.{k}", shapes[k]) for k in LINEARS}
        layer["attn_norm"], layer["ffn_norm"] = attn_norm[i], ffn_norm[i]
        layer["qkv_bias"] = qkv_bias[i] if c.qkv_bias else np.zeros(0, np.float32)
        layers.append(layer)
    notes = {}
    for key in NOTES:
        if key in meta:
            try:
                notes[key] = json.loads(meta[key])
            except ValueError:
                fail(f"metadata {key} is not JSON")
    model = PreparedModel(config, fmt, as_runtime_table(embed),
                          floats("output_norm", (c.dim,)), weight("head", vocab), layers, notes)
    return gguf_metadata, model


def _compact(embed):
    """The embedding as a Q8_0 weight when that holds it bit for bit (a GGUF's Q8_0 embedding
    does), a table left in its blocks as those blocks, else None."""
    import tmac
    from tmac.formats import FORMATS

    if isinstance(embed, BlockEmbedding):
        return FORMATS[embed.kind.lower()].from_blocks(embed.raw, embed.shape)
    if embed.shape[1] % 32:
        return None
    qw = tmac.quantize(np.asarray(embed, np.float32), scheme="q8_0", group_size=32)
    exact = np.array_equal(qw.dequantize().view(np.uint32),
                           np.ascontiguousarray(embed, np.float32).view(np.uint32))
    return qw if exact else None


def _embedding(qw):
    """A saved embedding weight as the runtime keeps it: its blocks when it is a GGML block
    type too large as float32 (tmac.model.loader.EMBED_FLOAT_LIMIT), else float32."""
    from tmac.model import loader

    m, k = qw.shape
    if getattr(qw.format, "type_name", None) and m * k * 4 > loader.EMBED_FLOAT_LIMIT:
        return BlockEmbedding(qw.format.type_name, qw.format.blocks(qw).reshape(m, -1), (m, k))
    return qw.dequantize()


def _format(d):
    head = d.get("head")
    return ModelFormat(**{**d, "head": None if head is None else ModelFormat(**head)})


def _plain(value):
    return value.tolist() if hasattr(value, "tolist") else str(value)
