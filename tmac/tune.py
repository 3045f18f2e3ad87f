"""``tmac tune``: search loop tiling per (CPU, path, shape, bits, N, threads, table mode).

Only loop tiling is tuned, never the packed layout, so a tuned choice never requires
repacking. The knob is ``tiles_per_task``: how many 64-row tiles one parallel task takes
(few large tasks cost less to schedule, many small ones balance threads better). Results never
depend on it (every row's reduction runs whole on one thread). Choices are cached per CPU
(``tmac.kernels.tiles``, which the kernels read); a missing or corrupt cache means defaults.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from tmac.kernels.tiles import cache_path, forget, key, load_cache, lookup, save_cache  # noqa: F401
from tmac.validation import parse_shape

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
    from tmac import kernels
    from tmac.formats import FORMATS
    from tmac.kernels import dispatch
    from tmac.timing import median_seconds

    rng = np.random.default_rng(0)
    qw = FORMATS["asym"].random(m, k, bits, group_size, rng)
    x = rng.standard_normal((n, k)).astype(np.float32)
    tried = {}
    for tpt in candidates(qw.packed.data.shape[0], threads):
        tried[tpt] = 1e6 * median_seconds(
            lambda: kernels.lut_matmul(qw.packed, qw.scales, qw.zeros, bits, x, group_size, lut,
                                       isa=isa, threads=threads, tiles_per_task=tpt),
            repeats=repeat, warmup=3)
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
    forget()
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="tmac tune", description="search tiles per task, cache the best")
    add_arguments(parser)
    run(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
