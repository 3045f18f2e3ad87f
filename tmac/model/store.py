"""Open a model for running: GGUF -> tokenizer + weights requantized to a format, with the
requantized weights cached on disk (``<cache>/prepared``), since quantizing 135M weights with
the asymmetric range search takes about half a minute and loading them back about a second.

The cache key covers the GGUF file (path, size, mtime), the format (name, bits, group size,
scheme, head format) and the source of tmac's quantizer, so a change to any of them makes a
new entry. Each matrix is stored at its real size: codes as b bit planes (np.packbits, b bits
per code), group parameters in the narrowest dtype that holds them exactly (uint8 integer
zeros, float16 affine parameters, else float32). Not the kernel layout, which is rebuilt on
load: a kernel layout change never meets a stale file. A "base" entry per
GGUF file keeps the metadata (vocabulary and merges included), the embedding and the norms, so
that opening a prepared format does not parse the GGUF again.

Opening an entry touches its mtime (the time of last use); with a size limit (``tmac cache
limit``, ``tmac.cache``) writing an entry evicts the least recently used ones.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tmac import cache
from tmac.bitplanes import narrowest, pack_codes, unpack_codes
from tmac.model import fetch, modelfile
from tmac.model.formats import ModelFormat, head_format
from tmac.model.embedding import BlockEmbedding, as_runtime_table
from tmac.model.runtime import LINEARS, PreparedModel, layer_vectors, prepare, prepare_native

BIASES = ("bq", "bk", "bv")

STORE_VERSION = 3


@dataclass
class OpenModel:
    path: Path
    tokenizer: object          # tmac.model.tokenizer.GGUFTokenizer
    model: PreparedModel
    gguf: object               # tmac.model.loader.GGUFModel, or None when served from the cache
    saved: bool = False        # a file written by ``tmac quantize`` (its own format)


def open_model(model: str, fmt: ModelFormat, *, use_cache: bool = True, progress=None,
               calibration=None) -> OpenModel:
    """``model`` is a GGUF path or a fetched model name ("smollm2").

    With the cache, a quantized format whose weights were prepared before is opened without
    parsing the GGUF at all: the metadata, tokenizer, embedding and norms come from a "base"
    entry (parsing the 49k-token vocabulary with gguf takes ~3 s, dequantizing ~1 s).

    ``calibration``: token ids (S, T) for fit "gptq" (default: the model's own samples,
    tmac.model.calibration); part of the cache key. A file saved by ``tmac quantize``
    (tmac.model.modelfile) opens as it was saved.
    """
    from tmac.model import loader
    from tmac.model.tokenizer import GGUFTokenizer

    path = fetch.resolve(model)
    if modelfile.is_model_file(path):
        return _open_model_file(path, fmt)
    if fmt.is_native:                       # nothing to requantize, nothing to cache
        g = loader.load(path, native=True)
        return OpenModel(path, GGUFTokenizer.from_metadata(g.metadata),
                         prepare_native(g.weights), g)
    cache_file = prepared_path(path, fmt, calibration) if use_cache and not fmt.is_float else None
    base_file = base_path(path) if cache_file is not None else None
    if cache_file is not None and cache_file.is_file() and base_file.is_file():
        try:
            meta, weights = load_base(base_file)
            prepared = load_prepared(cache_file, weights, fmt)
            cache.touch(cache_file, base_file)
            return OpenModel(path, GGUFTokenizer.from_metadata(meta), prepared, None)
        except (OSError, ValueError, KeyError):
            pass
    g = loader.load(path)
    tok = GGUFTokenizer.from_metadata(g.metadata)
    prepared = None
    if cache_file is not None and cache_file.is_file():
        try:
            prepared = load_prepared(cache_file, g.weights, fmt)
            cache.touch(cache_file)
        except (OSError, ValueError, KeyError):
            prepared = None
    written = prepared is None
    if prepared is None:
        ids = calibration
        if fmt.fit == "gptq" and ids is None:
            from tmac.model.calibration import self_generated

            ids = self_generated(path, progress=progress)
        prepared = prepare(g.weights, fmt, progress=progress, calibration=ids)
        if cache_file is not None:
            save_prepared(prepared, cache_file)
    if base_file is not None and not base_file.is_file():
        save_base(g, base_file)
        written = True
    if written and cache_file is not None:
        cache.evict(keep=(cache_file, base_file))       # least recently used, over the limit
    return OpenModel(path, tok, prepared, g)


def _open_model_file(path, fmt: ModelFormat) -> OpenModel:
    """A model saved by ``tmac quantize``: its own format; ``fmt`` must be native (the
    commands' default, "whatever the file holds") or that same format."""
    from tmac.model.tokenizer import GGUFTokenizer

    meta, prepared = modelfile.load(path)
    if not fmt.is_native and fmt != prepared.format:
        raise ValueError(f"--format: {path} holds {prepared.format.label}, saved by tmac "
                         f"quantize; leave --format out (or give that format)")
    return OpenModel(Path(path), GGUFTokenizer.from_metadata(meta), prepared, None, saved=True)


def _quantizer_digest():
    """Hash of the code that decides quantized values: the reference, the API, the formats,
    and the whole-model fits (GPTQ over the model, its calibration)."""
    import tmac

    package = Path(tmac.__file__).parent
    files = sorted((package / "reference").glob("*.py")) + sorted((package / "formats").glob("*.py"))
    files += [package / "api.py", package / "model" / "gptq.py",
              package / "model" / "calibration.py"]
    digest = hashlib.sha256()
    for f in files:
        if f.is_file():
            digest.update(f.read_bytes())
    return digest.hexdigest()[:16]


def _file_key(gguf_path):
    st = Path(gguf_path).stat()
    return {"gguf": str(Path(gguf_path).resolve()), "size": st.st_size, "mtime": st.st_mtime_ns,
            "version": STORE_VERSION}


def base_path(gguf_path) -> Path:
    """Cache entry for what every format shares: metadata, embedding, norms."""
    digest = hashlib.sha256(json.dumps(_file_key(gguf_path), sort_keys=True).encode()).hexdigest()[:16]
    return fetch.cache_dir() / "prepared" / f"{Path(gguf_path).stem}-base-{digest}.npz"


def save_base(g, path: Path):
    """Metadata (as JSON) and the float32 tensors no format requantizes."""
    def plain(value):
        return value.tolist() if hasattr(value, "tolist") else str(value)

    w = g.weights
    arrays = {"metadata": np.array(json.dumps(g.metadata, default=plain)),
              "embed": w.embed, "output_norm": w.output_norm,
              "attn_norm": np.stack([l["attn_norm"] for l in w.layers]),
              "ffn_norm": np.stack([l["ffn_norm"] for l in w.layers]),
              "tied": np.array(w.tied)}
    if w.config.qkv_bias:
        arrays.update({name: np.stack([l[name] for l in w.layers]) for name in BIASES})
    if isinstance(w.embed, BlockEmbedding):
        arrays.update(embed=w.embed.raw, embed_type=np.array(w.embed.kind))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load_base(path: Path):
    """(metadata dict, LlamaWeights holding the embedding and norms only; no linear weights)."""
    from tmac.model.loader import LlamaWeights, config_from_metadata

    with np.load(path) as z:
        meta = json.loads(str(z["metadata"]))
        config = config_from_metadata(meta)
        layers = [{"attn_norm": a, "ffn_norm": f} for a, f in zip(z["attn_norm"], z["ffn_norm"])]
        for name in BIASES if config.qkv_bias else ():
            for layer, bias in zip(layers, z[name]):
                layer[name] = bias
        embed = z["embed"]
        if "embed_type" in z.files:
            embed = BlockEmbedding(str(z["embed_type"]), embed, (config.vocab_size, config.dim))
        weights = LlamaWeights(config, embed, None, z["output_norm"], layers, bool(z["tied"]))
    return meta, weights


def prepared_path(gguf_path, fmt: ModelFormat, calibration=None) -> Path:
    fields = {**_file_key(gguf_path), "format": asdict(fmt), "head": asdict(head_format(fmt)),
              "quantizer": _quantizer_digest()}
    if calibration is not None:
        ids = np.ascontiguousarray(calibration, np.int64)
        fields["calibration"] = [list(ids.shape), hashlib.sha256(ids.tobytes()).hexdigest()]
    key = json.dumps(fields, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return fetch.cache_dir() / "prepared" / f"{Path(gguf_path).stem}-{fmt.name}-{digest}.npz"


def save_prepared(pm: PreparedModel, path: Path):
    """Write the linears of ``pm`` at their real size (atomically)."""
    arrays = {}
    mats = {"head": pm.head, **{f"{i}.{k}": l[k] for i, l in enumerate(pm.layers) for k in LINEARS}}
    for name, qw in mats.items():
        if isinstance(qw, np.ndarray):                      # a float matrix (e.g. an f32 head)
            arrays[f"{name}.float"] = qw
            continue
        arrays[f"{name}.codes"] = pack_codes(qw.codes, qw.bits)
        arrays[f"{name}.scales"] = narrowest(qw.scales)
        arrays[f"{name}.zeros"] = narrowest(qw.zeros)
        arrays[f"{name}.meta"] = np.array([qw.shape[1], qw.bits, qw.group_size], np.int64)
        arrays[f"{name}.scheme"] = np.array(qw.scheme)
        if qw.params is not None:
            arrays[f"{name}.params"] = np.stack(qw.params)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load_prepared(path: Path, weights, fmt: ModelFormat) -> PreparedModel:
    """Inverse of save_prepared; norms and the embedding come from ``weights`` (float32)."""
    from tmac.formats import QuantizedWeight

    with np.load(path) as z:
        def qw(name):
            if f"{name}.float" in z.files:
                return np.ascontiguousarray(z[f"{name}.float"], np.float32)
            k, bits, gs = (int(v) for v in z[f"{name}.meta"])
            params = tuple(z[f"{name}.params"]) if f"{name}.params" in z.files else None
            return QuantizedWeight(unpack_codes(z[f"{name}.codes"], k),
                                   z[f"{name}.scales"].astype(np.float32),
                                   z[f"{name}.zeros"].astype(np.float32), bits, gs,
                                   str(z[f"{name}.scheme"]), params=params)

        layers = []
        for i, lw in enumerate(weights.layers):
            layer = {k: qw(f"{i}.{k}") for k in LINEARS}
            layer.update(layer_vectors(lw))
            layers.append(layer)
        head = qw("head")
    return PreparedModel(weights.config, fmt, as_runtime_table(weights.embed),
                         weights.output_norm.astype(np.float32), head, layers)
