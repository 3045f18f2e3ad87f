"""Tuned loop tiling, read by the kernels: the ``tiles_per_task`` that ``tmac tune`` found best
per (CPU, path, shape, bits, N, threads, table mode), and the default when none was tuned.

Choices are cached as JSON in ``$TMAC_CACHE_DIR`` or the user cache directory
(``$XDG_CACHE_HOME/tmac`` or ``~/.cache/tmac``), file ``tune.json``. A missing cache means
defaults; a corrupt one is ignored with a warning, never an error. Results never depend on the
tiling (every row's reduction runs whole on one thread). The search itself is ``tmac.tune``.
"""
from __future__ import annotations

import json
import os
import warnings

CACHE_NAME = "tune.json"
_cache = None          # loaded lazily: {key: {"tiles_per_task": int, "us": float}}


def cache_path() -> str:
    base = os.environ.get("TMAC_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "tmac")
    return os.path.join(base, CACHE_NAME)


def load_cache(path: str | None = None) -> dict:
    """The cached choices; {} if there is no cache, a warning and {} if it is unreadable."""
    path = path or cache_path()
    if not os.path.exists(path):
        return {}
    try:
        with open(path) as f:
            data = json.load(f)
        if not isinstance(data, dict) or not all(_valid_entry(v) for v in data.values()):
            raise ValueError("unexpected structure")
        return data
    except (OSError, ValueError) as e:
        warnings.warn(f"tmac: ignoring unreadable tuning cache {path} ({e})", RuntimeWarning, stacklevel=2)
        return {}


def _valid_entry(entry) -> bool:
    """A cache entry names a positive int of tiles per task (bools are not ints here)."""
    tiles = entry.get("tiles_per_task") if isinstance(entry, dict) else None
    return isinstance(tiles, int) and not isinstance(tiles, bool) and 1 <= tiles <= 1 << 20


def save_cache(data: dict, path: str | None = None) -> str:
    path = path or cache_path()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + f".{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)            # atomic: a crash never leaves half a file
    return path


def key(isa: str, m: int, k: int, bits: int, n: int, threads: int, lut: str) -> str:
    from tmac.kernels import dispatch

    cpu = dispatch.cpu_features()["cpu"]
    n_bucket = 1 if n == 1 else (8 if n <= 8 else 64)
    return f"{cpu}|{isa}|{m}x{k}|b{bits}|n{n_bucket}|t{threads}|{lut}"


def has_entries() -> bool:
    """Whether the tuning cache holds any choice (loads it on first use)."""
    global _cache
    if _cache is None:
        _cache = load_cache()
    return bool(_cache)


def lookup(isa, m, k, bits, n, threads, lut) -> int | None:
    """Tuned tiles_per_task for this configuration, or None (use the default)."""
    global _cache
    if _cache is None:
        _cache = load_cache()
    if not _cache:
        return None
    hit = _cache.get(key(isa, m, k, bits, n, threads, lut))
    return hit["tiles_per_task"] if hit else None


def forget():
    """Drop the loaded choices: the next lookup reads the file again (after tuning)."""
    global _cache
    _cache = None


def default_tiles_per_task(n_tiles: int, threads: int) -> int:
    """Row tiles per parallel task: one task per tile when there is one thread (no split
    overhead matters), else about 4 tasks per thread so uneven tiles balance."""
    if threads <= 1:
        return n_tiles
    return max(1, n_tiles // (4 * threads))
