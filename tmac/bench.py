"""``tmac bench``: LUT GEMV/GEMM speed against numpy fp32 and the dequant baseline, same run.

For every (shape, bits, N, regime) it reports the median time after warm-up of

* ``lut``      tmac.kernels.lut_matmul (int8 tables; table build, scales, everything included)
* ``tables``   the table build alone (padding, table scales, int8 tables, block sums)
* ``numpy``    numpy float32 ``x @ W.T`` (OpenBLAS, limited to the same thread count)
* ``dequant``  tmac.kernels.dequant_matmul, the dequantize-then-multiply baseline

and derived figures: weight GB/s (packed codes + scales + offsets read per call) and the
ratios lut/numpy and lut/dequant. lut, dequant and numpy are timed in alternating blocks (5
rounds), so a ratio compares the same minutes of a machine whose speed drifts. "hot" reuses one matrix (cache-resident if it fits);
"cold" rotates over enough copies to exceed the last-level cache, so weights come from memory.

Run ``python -m tmac.bench --help`` (or ``tmac bench``). Speed is measured, never asserted.
"""
from __future__ import annotations

import argparse
import ctypes
import glob
import json
import os
import statistics
import sys
import time

import numpy as np

from tmac import validation
from tmac.display import Report
from tmac.kernels.bandwidth import last_level_cache_bytes
from tmac.validation import parse_shape

SHAPES = ("4096x4096", "11008x4096", "4096x11008")
BITS = ("1", "2", "3", "4", "ternary")
NS = (1, 8, 64)


# ----------------------------------------------------------------------------- environment

def _openblas():
    """ctypes handle on numpy's OpenBLAS thread setter, or None."""
    import numpy

    base = os.path.dirname(numpy.__file__)
    for lib in glob.glob(os.path.join(base, "..", "numpy.libs", "*openblas*")) + \
            glob.glob(os.path.join(base, ".dylibs", "*openblas*")):
        try:
            handle = ctypes.CDLL(lib)
        except OSError:
            continue
        for name in ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_",
                     "openblas_set_num_threads"):
            if hasattr(handle, name):
                return getattr(handle, name)
    return None


def set_blas_threads(n: int) -> bool:
    """Limit numpy's BLAS to ``n`` threads; False if this numpy's BLAS cannot be reached."""
    setter = _openblas()
    if setter is None:
        return False
    setter(ctypes.c_int(n))
    return True


# ----------------------------------------------------------------------------- timing

def median_us(fn, warmup: int = 3, repeat: int = 30, max_seconds: float = 2.0) -> float:
    """Median wall time of ``fn()`` in microseconds after ``warmup`` calls.

    Stops early after ``max_seconds`` (at least 5 timed calls)."""
    for _ in range(warmup):
        fn()
    times, start = [], time.perf_counter()
    for i in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if i >= 4 and time.perf_counter() - start > max_seconds:
            break
    return statistics.median(times) * 1e6


def interleaved_median_us(calls: dict, repeats: dict, rounds: int = 5, warmup: int = 2,
                          settle_seconds: float = 0.0) -> dict:
    """Median µs of each ``calls[name]()``, timed in ``rounds`` alternating blocks.

    This VM's speed drifts by tens of percent over seconds, so timing one function after the
    other would put each in different minutes and their ratio would measure the drift. Here
    every round times a block of each in turn (``repeats[name]`` calls in all, split over the
    rounds). Each block starts with ``warmup`` untimed calls: the other functions' blocks
    evicted this one's data from the caches, and a "hot" figure must find it cached again (the
    first call also compiles). ``settle_seconds`` of sleep follow each block (lets OpenBLAS's
    spinning threads go idle before Numba's threads need the cores)."""
    times = {name: [] for name in calls}
    for r in range(rounds):
        for name, fn in calls.items():
            for _ in range(warmup):
                fn()
            for _ in range(-(-repeats[name] // rounds)):
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
            if settle_seconds:
                time.sleep(settle_seconds)
    return {name: statistics.median(t) * 1e6 for name, t in times.items()}


class Rotation:
    """Cycles over copies of an object; ``next()`` returns the next copy."""

    def __init__(self, items):
        self.items, self.i = items, 0

    def next(self):
        self.i = (self.i + 1) % len(self.items)
        return self.items[self.i]


# ----------------------------------------------------------------------------- one case

def weight_spec(spec: str):
    """A ``--bits`` item -> (format, bits) from the format table: "4" is the default integer
    format (asym) at 4 bits, "ternary"/"m0e4" a one-width format, "sym3" a format and width."""
    from tmac.formats import FORMATS

    spec = str(spec)
    if spec.isdigit():
        spec = f"asym{spec}"
    if spec in FORMATS:
        return FORMATS[spec], FORMATS[spec].widths[-1]
    name = spec.rstrip("0123456789")
    if name in FORMATS and spec[len(name):] and int(spec[len(name):]) in FORMATS[name].widths:
        return FORMATS[name], int(spec[len(name):])
    raise ValueError(f"--bits {spec!r}: expected a width (1, 2, 3, 4), a format name "
                     f"({', '.join(FORMATS)}) or a format and width such as sym3")


def _weight_bytes(packed):
    """Bytes one LUT call reads from the weight: codes and group parameters."""
    return packed.nbytes


def _copies(qw, count):
    """``count`` weights holding qw's values in separate memory (cold regime rotation)."""
    packed = qw.packed
    if packed is None:
        return [qw] + [type(qw)(qw.codes.copy(), qw.scales.copy(), qw.zeros.copy(), qw.bits,
                                qw.group_size, qw.scheme,
                                params=None if qw.params is None else tuple(p.copy() for p in qw.params))
                       for _ in range(count - 1)]
    def copy(part):
        return tuple(a.copy() for a in part) if isinstance(part, tuple) else part.copy()

    return [packed] + [packed._replace(data=packed.data.copy(), scales_t=copy(packed.scales_t),
                                       zeros_t=copy(packed.zeros_t))
                       for _ in range(count - 1)]


def bench_case(m, k, bits, n, regime, threads, group_size=128, act_group_size=None,
               isa=None, cold_bytes=None, baselines=True, repeat=30, seed=0):
    """Time one configuration (``bits``: a weight spec, see weight_spec); returns a dict (one
    row of the report)."""
    from tmac import kernels
    from tmac.kernels import dispatch
    from tmac.kernels import lut as klut
    from tmac.kernels import tables as ktables
    from tmac.registry import OPS

    rng = np.random.default_rng(seed)
    fmt, b = weight_spec(bits)
    gs = validation.resolve_group_size(group_size, k) if fmt.grouped else k
    qw = fmt.random(m, k, b, gs, rng)
    scales, zeros = qw.scales, qw.zeros
    act = act_group_size or gs
    x = rng.standard_normal((n, k)).astype(np.float32)
    nbytes = _weight_bytes(qw.packed) if qw.packed is not None else qw.nbytes
    copies = 1
    if regime == "cold":
        copies = max(2, -(-(cold_bytes or 2 * last_level_cache_bytes()) // nbytes))
    lut_set = Rotation(_copies(qw, copies))
    path = dispatch.choose("lut_int8", isa) if fmt.has_lut_path else "portable"
    row = {"shape": f"{m}x{k}", "bits": str(bits), "n": n, "regime": regime, "threads": threads,
           "isa": path, "group_size": gs, "act_group_size": act}

    if fmt.has_lut_path:
        def lut():
            return kernels.lut_matmul(lut_set.next(), scales, zeros, b, x, act, isa=isa,
                                      threads=threads)
    else:
        run = OPS[fmt.matmul_op].implementation(isa or "auto")

        def lut():
            return run(lut_set.next(), x, threads)

    calls, repeats = {"lut": lut}, {"lut": repeat}
    if baselines:
        w = qw.dequantize()
        n_np = 1 if regime == "hot" else max(2, -(-(cold_bytes or 2 * last_level_cache_bytes()) // w.nbytes))
        np_set = Rotation([w] + [w.copy() for _ in range(n_np - 1)])
        xt = np.ascontiguousarray(x.T)
        set_blas_threads(threads)
        if fmt.has_lut_path:
            calls["dequant"] = lambda: kernels.dequant_matmul(lut_set.next(), scales, zeros, b, x,
                                                              threads=threads)
        else:
            dequant = OPS[fmt.dequant_op].implementation("auto")
            calls["dequant"] = lambda: dequant(lut_set.next(), x, threads)
        calls["numpy"] = lambda: np_set.next() @ xt
        repeats.update(dequant=max(5, repeat // 3), numpy=repeat)
    # OpenBLAS's threads spin for a while after a call and would keep the second core from
    # Numba's worker (a 4-8 ms scheduler wait per call): let them go idle between blocks
    medians = interleaved_median_us(calls, repeats, settle_seconds=0.2 if threads > 1 else 0.0)
    row["lut_us"] = medians["lut"]
    row["weight_gbps"] = nbytes / row["lut_us"] / 1e3
    p = klut.plan(k, scales.shape[1], act)
    row["tables_us"] = median_us(lambda: ktables.prepare_int8(
        x, p.k_units, p.act_group_size, p.n_act_groups, p.starts, p.stops, p.act_group), repeat=repeat)
    if baselines:
        row["dequant_us"], row["numpy_us"] = medians["dequant"], medians["numpy"]
        row["vs_numpy"] = row["lut_us"] / row["numpy_us"]
        row["vs_dequant"] = row["lut_us"] / row["dequant_us"]
    return row


# ----------------------------------------------------------------------------- report

COLUMNS = [("shape", "shape", "{}"), ("bits", "bits", "{}"), ("n", "N", "{}"), ("regime", "regime", "{}"),
           ("threads", "thr", "{}"), ("lut_us", "lut µs", "{:.0f}"), ("tables_us", "tables µs", "{:.1f}"),
           ("weight_gbps", "GB/s", "{:.1f}"), ("numpy_us", "numpy µs", "{:.0f}"),
           ("dequant_us", "dequant µs", "{:.0f}"), ("vs_numpy", "lut/numpy", "{:.3f}"),
           ("vs_dequant", "lut/dequant", "{:.3f}")]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), help="MxK, e.g. 4096x4096")
    parser.add_argument("--bits", nargs="+", default=list(BITS),
                        help="weights: widths of the default format (1 2 3 4), format names "
                             "(ternary, m0e4, e2m1) or a format and width (sym3)")
    parser.add_argument("-n", "--n", nargs="+", type=int, default=list(NS), help="tokens (N)")
    parser.add_argument("--regime", nargs="+", default=["hot", "cold"], choices=["hot", "cold"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1], help="thread counts")
    parser.add_argument("--group-size", type=int, default=128)
    parser.add_argument("--act-group-size", type=int, default=None, help="default: the group size")
    parser.add_argument("--isa", default=None, help="force an ISA path (avx512, avx2, portable)")
    parser.add_argument("--repeat", type=int, default=30, help="timed calls per figure (max)")
    parser.add_argument("--no-baselines", action="store_true", help="skip numpy and dequant")
    parser.add_argument("-o", "--output", choices=["md", "json"], default="md")
    parser.add_argument("--fp4", action="store_true", help="also time the FP4 dequant kernels (M0E4 "
                        "bit trick, int4 int-to-float, E2M1) beside the 4-bit LUT; see docs/fp4.md")


def run(args):
    """Run every case of parsed ``args``; prints each row as it completes (md) and returns a
    ``tmac.display.Report`` (rich table in a terminal, HTML in Jupyter)."""
    from tmac import kernels

    kernels.warmup(args.isa)
    rows = []
    for shape in args.shapes:
        m, k = parse_shape(shape)
        for regime in args.regime:
            for bits in args.bits:
                for n in args.n:
                    for threads in args.threads:
                        row = bench_case(m, k, bits, n, regime, threads, args.group_size,
                                         args.act_group_size, args.isa, baselines=not args.no_baselines,
                                         repeat=args.repeat)
                        rows.append(row)
                        if args.output == "md":
                            table = Report("", COLUMNS, [row]).to_markdown()
                            print(table.splitlines()[-1] if len(rows) > 1 else table, flush=True)
    fp4 = _fp4_rows(args) if getattr(args, "fp4", False) else []
    if args.output == "json":
        print(json.dumps({"command": " ".join(sys.argv), "rows": rows, "fp4": fp4}, indent=1))
    return Report("tmac bench: median µs after warm-up", COLUMNS, rows)


# ---- FP4 section (tmac.fp4_study.bench, docs/fp4.md): its own table, hot weights, N = 1 --------

def _fp4_rows(args) -> list:
    """M0E4 bit-trick vs int4 int-to-float vs E2M1 dequant GEMV vs the 4-bit LUT, per shape/threads."""
    from tmac import fp4_study

    out = []
    for shape in args.shapes:
        m, k = parse_shape(shape)
        for threads in args.threads:
            for name, med, low in fp4_study.bench(m, k, args.group_size, min(args.repeat, 21), threads):
                out.append({"shape": shape, "threads": threads, "kernel": name,
                            "median_us": med, "min_us": low})
    if args.output == "md":
        print("\n| FP4 shape | thr | kernel | median µs | min µs |\n|---|---|---|---|---|")
        for r in out:
            print(f"| {r['shape']} | {r['threads']} | {r['kernel']} | {r['median_us']:.0f} | "
                  f"{r['min_us']:.0f} |")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="tmac bench", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    run(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
