"""The kernel table: one entry per ISA path, chosen from the CPU features Numba compiles for.

Compiling an instruction the CPU lacks aborts the whole process (an LLVM error, not a Python
exception), so the choice is made here, *before* any kernel is compiled, from the same feature
list Numba hands to LLVM: ``NUMBA_CPU_NAME``/``NUMBA_CPU_FEATURES`` when set, else the host's
(llvmlite ``get_host_cpu_features``, which already accounts for OS support of AVX state).

Every path's module defines the same functions with the same arguments (``lut_int8``,
``lut_float32``, ``matmul_int8``; tmac.kernels.portable documents them), so adding a path is
one entry here and one module (docs/contributing.md). ``kernel_for(op, path)`` finds them.

Override with ``isa=`` arguments or the ``TMAC_ISA`` environment variable (the path names
below). Asking for a path this CPU lacks raises ``RuntimeError`` instead of crashing.
AMX is never used (on some virtual machines it is listed but faults).
"""
from __future__ import annotations

import functools
import importlib
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class IsaPath:
    """One ISA path: what the CPU needs, where its kernels live, which ops it implements."""

    name: str
    requires: tuple         # LLVM feature names, all needed
    module: str             # defines lut_int8, lut_float32, matmul_int8 (one calling convention)
    ops: tuple              # the ops of tmac.kernels it implements (dequant: the baseline)
    summary: str


# best first
PATHS = (
    IsaPath("avx512", ("avx512f", "avx512bw", "avx512vbmi", "avx512vnni"), "tmac.kernels.x86_avx512",
            ("lut_int8", "lut_float32"),
            "AVX-512 VBMI vpermb + VNNI vpdpbusd (int8 tables); vpermps (float32 tables)"),
    IsaPath("avx2", ("avx2",), "tmac.kernels.x86_avx2", ("lut_int8", "lut_float32"),
            "AVX2 pshufb + pmaddubsw (int8 tables); vpermps (float32 tables)"),
    IsaPath("portable", (), "tmac.kernels.portable", ("lut_int8", "lut_float32", "dequant"),
            "plain Numba loops and generic vector IR: any CPU"),
)
ISAS = tuple(p.name for p in PATHS)
REQUIRED = {p.name: p.requires for p in PATHS}
# op -> paths it has, best first
OP_PATHS = {op: tuple(p.name for p in PATHS if op in p.ops)
            for op in dict.fromkeys(op for p in PATHS for op in p.ops)}


@functools.lru_cache(maxsize=None)
def kernel_for(function: str, isa: str):
    """The compiled-on-demand function ``function`` ("lut_int8", "lut_float32", "matmul_int8")
    of path ``isa`` (already chosen: importing a path's module compiles nothing)."""
    path = next(p for p in PATHS if p.name == isa)
    return getattr(importlib.import_module(path.module), function)


@functools.lru_cache(maxsize=None)
def _cpu_features(cpu_name, cpu_features_env):
    """Cached: llvmlite queries the CPU on every call."""
    return _query_features()


def cpu_features() -> dict:
    """{"cpu": name, "features": set of enabled LLVM feature names} that Numba compiles for."""
    from numba.core import config

    return _cpu_features(config.CPU_NAME, config.CPU_FEATURES)


def _query_features() -> dict:
    from llvmlite import binding as ll
    from numba.core import config

    name = config.CPU_NAME or ll.get_host_cpu_name()
    if config.CPU_NAME:
        flags = config.CPU_FEATURES or ""
        # an explicit CPU name without a feature list: trust nothing beyond the baseline
        # unless it is the host itself
        if not flags and config.CPU_NAME in ("host", ll.get_host_cpu_name()):
            flags = ll.get_host_cpu_features().flatten()
    else:
        flags = config.CPU_FEATURES or ll.get_host_cpu_features().flatten()
    enabled = frozenset(f[1:] for f in flags.split(",") if f.startswith("+"))
    return {"cpu": name, "features": enabled}


def available(features: set | None = None) -> tuple:
    """ISA paths this CPU can run, best first."""
    features = cpu_features()["features"] if features is None else features
    return tuple(isa for isa in ISAS if all(f in features for f in REQUIRED[isa]))


def requested_isa(isa: str | None = None) -> str | None:
    """The explicit request: the argument, else $TMAC_ISA, else None (automatic)."""
    req = isa if isa is not None else os.environ.get("TMAC_ISA") or None
    if req is not None and req not in ISAS:
        raise ValueError(f"unknown ISA {req!r}; expected one of {ISAS}")
    return req


_numba_config = []     # numba.core.config, imported on first use (import tmac imports no numba)


def _env_isa():
    """$TMAC_ISA or None, read on every call (tests and users change it at run time).

    ``os.environ.get`` of a missing key raises and catches a KeyError inside: ~10 µs when the
    caches are cold, which they are after a GEMV that streamed megabytes. Reading the mapping
    behind os.environ directly gives the same value without the exception."""
    data = getattr(os.environ, "_data", None)
    if data is None or _ISA_KEY is None:
        return os.environ.get("TMAC_ISA")
    value = data.get(_ISA_KEY)
    return None if value is None else os.environ.decodevalue(value)


try:
    _ISA_KEY = os.environ.encodekey("TMAC_ISA")
except AttributeError:         # not CPython's os._Environ: use the plain lookup
    _ISA_KEY = None


def choose(op: str, isa: str | None = None, features: set | None = None) -> str:
    """The path ``op`` runs: the best one both available and not above the request.

    ``op`` is "lut_int8", "lut_float32" or "dequant". Requesting a path the CPU lacks raises
    RuntimeError (compiling it would abort the process).
    """
    req = isa if isa is not None else _env_isa() or None
    if features is None and (req is None or req in ISAS):
        if not _numba_config:
            from numba.core import config

            _numba_config.append(config)
        config = _numba_config[0]
        return _choose_cached(op, req, config.CPU_NAME, config.CPU_FEATURES)
    req = requested_isa(isa)
    return _choose(op, req, frozenset(cpu_features()["features"] if features is None else features))


@functools.lru_cache(maxsize=None)
def _choose_cached(op, req, cpu_name, cpu_features_env):
    return _choose(op, req, cpu_features()["features"])


def _choose(op, req, features):
    have = available(features)
    if req is not None and req not in have:
        missing = [f for f in REQUIRED[req] if f not in features]
        raise RuntimeError(f"ISA path {req!r} requested but the CPU Numba compiles for lacks {missing}")
    allowed = ISAS[ISAS.index(req):] if req else ISAS
    for path in OP_PATHS[op]:
        if path in have and path in allowed:
            return path
    return "portable"


def why(op: str, chosen: str, req: str | None, features) -> str:
    """Why ``op`` runs on ``chosen``: the better paths passed over and what each lacked (CPU
    features, the request, or no kernel for the op)."""
    reasons = []
    for path in PATHS[:ISAS.index(chosen)]:
        missing = [f for f in path.requires if f not in features]
        if op not in path.ops:
            reasons.append(f"{path.name} has no {op} kernel")
        elif missing:
            reasons.append(f"{path.name} needs {', '.join(missing)}")
        else:
            reasons.append(f"{path.name} not requested (TMAC_ISA / isa={req})")
    return "; ".join(reasons) or "the best path"


def info(isa: str | None = None) -> dict:
    """What ``tmac info`` prints: CPU, relevant features, available paths, the path per op and
    why (``why``)."""
    cf = cpu_features()
    relevant = sorted({f for fs in REQUIRED.values() for f in fs} | {"avx512vl", "avxvnni", "amx-int8"})
    return {
        "cpu": cf["cpu"],
        "features": {f: f in cf["features"] for f in relevant},
        "available": list(available(cf["features"])),
        "requested": requested_isa(isa),
        "ops": {op: choose(op, isa, cf["features"]) for op in OP_PATHS},
        "why": {op: why(op, choose(op, isa, cf["features"]), requested_isa(isa), cf["features"])
                for op in OP_PATHS},
        "note": "AMX is never used",
    }
