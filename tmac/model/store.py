"""Open a model for running: GGUF -> tokenizer + weights requantized to a format, with the
requantized weights cached on disk (``<cache>/prepared``), since quantizing 135M weights with
the asymmetric range search takes about half a minute and loading them back about a second.

The cache key covers the GGUF file (path, size, mtime), the format (name, bits, group size,
scheme, head format) and the source of tmac's quantizer, so a change to any of them makes a
new entry. Codes are stored as plain b-bit codes (two per byte), not in the kernel layout,
which is rebuilt on load: a kernel layout change never meets a stale file.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tmac.model import fetch
from tmac.model.formats import ModelFormat, head_format
from tmac.model.runtime import LINEARS, PreparedModel, prepare

STORE_VERSION = 1


@dataclass
class OpenModel:
    path: Path
    tokenizer: object          # tmac.model.tokenizer.GGUFTokenizer
    model: PreparedModel
    gguf: object               # tmac.model.loader.GGUFModel (float32 weights)


def open_model(model: str, fmt: ModelFormat, *, use_cache: bool = True, progress=None) -> OpenModel:
    """``model`` is a GGUF path or a fetched model name ("smollm2")."""
    from tmac.model import loader
    from tmac.model.tokenizer import GGUFTokenizer

    path = fetch.resolve(model)
    g = loader.load(path)
    tok = GGUFTokenizer.from_metadata(g.metadata)
    cache_file = prepared_path(path, fmt) if use_cache and not fmt.is_float else None
    prepared = None
    if cache_file is not None and cache_file.is_file():
        try:
            prepared = load_prepared(cache_file, g.weights, fmt)
        except (OSError, ValueError, KeyError):
            prepared = None
    if prepared is None:
        prepared = prepare(g.weights, fmt, progress=progress)
        if cache_file is not None:
            save_prepared(prepared, cache_file)
    return OpenModel(path, tok, prepared, g)


def _quantizer_digest():
    import tmac.reference.quantize as q

    return hashlib.sha256(Path(q.__file__).read_bytes()).hexdigest()[:16]


def prepared_path(gguf_path, fmt: ModelFormat) -> Path:
    st = Path(gguf_path).stat()
    key = json.dumps({"gguf": str(Path(gguf_path).resolve()), "size": st.st_size,
                      "mtime": st.st_mtime_ns, "format": asdict(fmt),
                      "head": asdict(head_format(fmt)), "quantizer": _quantizer_digest(),
                      "version": STORE_VERSION}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return fetch.cache_dir() / "prepared" / f"{Path(gguf_path).stem}-{fmt.name}-{digest}.npz"


def _pack_codes(codes):
    if codes.shape[1] % 2:
        return codes
    return codes[:, 0::2] | (codes[:, 1::2] << 4)


def _unpack_codes(stored, k):
    if stored.shape[1] == k:
        return np.ascontiguousarray(stored)
    out = np.empty((stored.shape[0], k), np.uint8)
    out[:, 0::2] = stored & 15
    out[:, 1::2] = stored >> 4
    return out


def save_prepared(pm: PreparedModel, path: Path):
    """Write the quantized linears of ``pm`` (atomically)."""
    arrays = {}
    mats = {"head": pm.head, **{f"{i}.{k}": l[k] for i, l in enumerate(pm.layers) for k in LINEARS}}
    for name, qw in mats.items():
        arrays[f"{name}.codes"] = _pack_codes(qw.codes)
        arrays[f"{name}.scales"] = qw.scales
        arrays[f"{name}.zeros"] = qw.zeros
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
            k, bits, gs = (int(v) for v in z[f"{name}.meta"])
            params = tuple(z[f"{name}.params"]) if f"{name}.params" in z.files else None
            return QuantizedWeight(_unpack_codes(z[f"{name}.codes"], k), z[f"{name}.scales"],
                                   z[f"{name}.zeros"], bits, gs, str(z[f"{name}.scheme"]),
                                   params=params)

        layers = []
        for i, lw in enumerate(weights.layers):
            layer = {k: qw(f"{i}.{k}") for k in LINEARS}
            layer["attn_norm"] = lw["attn_norm"].astype(np.float32)
            layer["ffn_norm"] = lw["ffn_norm"].astype(np.float32)
            layers.append(layer)
        head = qw("head")
    return PreparedModel(weights.config, fmt, np.ascontiguousarray(weights.embed, np.float32),
                         weights.output_norm.astype(np.float32), head, layers)
