"""``tmac tune``: search loop tiling per (CPU, path, shape, bits, N, threads, table mode).

Only loop tiling is tuned, never the packed layout, so a tuned choice never requires
repacking. The knob is ``tiles_per_task``: how many 64-row tiles one parallel task takes
(few large tasks cost less to schedule, many small ones balance threads better). Results never
depend on it (every row's reduction runs whole on one thread).

Choices are cached as JSON in ``$TMAC_CACHE_DIR`` or the user cache directory
(``$XDG_CACHE_HOME/tmac`` or ``~/.cache/tmac``), file ``tune.json``. A missing cache means
defaults; a corrupt one is ignored with a warning, never an error.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings

import numpy as np

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
    from tmac import dispatch

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


def candidates(n_tiles: int, threads: int) -> list:
    """tiles_per_task values worth trying: powers of two up to one task per thread."""
    top = max(1, -(-n_tiles // max(1, threads)))
    values, v = [], 1
    while v < top:
        values.append(v)
        v *= 2
    return values + [top]


def tune_one(m, k, bits, n=1, threads=1, lut="int8", group_size=128, isa=None, repeat=20) -> dict:
    """Time every candidate on random data; returns {"tiles_per_task", "us", "tried"}."""
    from tmac import dispatch, kernels
    from tmac.bench import _weights, median_us

    rng = np.random.default_rng(0)
    packed, _, scales, zeros, b = _weights(m, k, str(bits), group_size, rng)
    x = rng.standard_normal((n, k)).astype(np.float32)
    tried = {}
    for tpt in candidates(packed.data.shape[0], threads):
        tried[tpt] = median_us(lambda: kernels.lut_matmul(packed, scales, zeros, b, x, group_size, lut,
                                                          isa=isa, threads=threads, tiles_per_task=tpt),
                               repeat=repeat)
    best = min(tried, key=tried.get)
    return {"tiles_per_task": int(best), "us": tried[best], "isa": dispatch.choose("lut_" + lut, isa),
            "tried": {str(t): round(v, 1) for t, v in tried.items()}}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shapes", nargs="+", default=["4096x4096", "11008x4096", "4096x11008"])
    parser.add_argument("--bits", nargs="+", type=int, default=[1, 2, 3, 4])
    parser.add_argument("-n", "--n", nargs="+", type=int, default=[1])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--lut", nargs="+", default=["int8"], choices=["int8", "float32"])
    parser.add_argument("--isa", default=None)


REPORT_COLUMNS = [("case", "case", "{}"), ("isa", "path", "{}"), ("tiles_per_task", "tiles per task", "{}"),
                  ("us", "µs", "{:.0f}"), ("tried", "tried (tiles: µs)", "{}")]


def run(args):
    """Tune every requested case and save the cache; prints one line per case and returns a
    ``tmac.display.Report``. Interrupting (Ctrl-C) leaves the previous cache file intact."""
    from tmac.display import Report, progress

    global _cache
    data = load_cache()
    cases = [(shape, bits, n, threads, lut) for shape in args.shapes for bits in args.bits
             for n in args.n for threads in args.threads for lut in args.lut]
    shapes = {shape: parse_shape(shape) for shape in args.shapes}
    report = Report("tmac tune: best tiles per task", REPORT_COLUMNS)
    with progress("tuning", len(cases)) as advance:
        for shape, bits, n, threads, lut in cases:
            m, k = shapes[shape]
            res = tune_one(m, k, bits, n, threads, lut, isa=args.isa)
            data[key(res["isa"], m, k, bits, n, threads, lut)] = res
            report.rows.append(dict(res, case=f"{shape} b{bits} n{n} t{threads} {lut}"))
            print(f"{shape} b{bits} n{n} t{threads} {lut}: tiles_per_task="
                  f"{res['tiles_per_task']} ({res['us']:.0f} µs) tried {res['tried']}", flush=True)
            advance()
    print("saved", save_cache(data))
    _cache = None
    return report


def parse_shape(shape: str) -> tuple:
    """"MxK" -> (M, K), both positive ints; ValueError naming the shape otherwise."""
    try:
        m, k = (int(v) for v in shape.lower().split("x"))
    except ValueError:
        raise ValueError(f"shape must be MxK with integers, e.g. 4096x4096; got {shape!r}") from None
    if m < 1 or k < 1:
        raise ValueError(f"shape must have positive sizes, got {shape!r}")
    return m, k


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="tmac tune", description="search tiles per task, cache the best")
    add_arguments(parser)
    run(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
