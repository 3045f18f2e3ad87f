"""``tmac golden export DIR``: write the golden cases, their MANIFEST.json and INDEX.txt.

Everything is written into a fresh temporary directory next to DIR and moved into place only
when complete, so a failed export leaves nothing behind (and an existing DIR untouched).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from tmac.golden import cases as _cases
from tmac.golden import container

SCHEMA_VERSION = 1
FORMAT_NAME = "tmac-golden"
MANIFEST = "MANIFEST.json"
INDEX = "INDEX.txt"

CONVENTIONS = {
    "byte_order": "little-endian for every multi-byte value",
    "array_order": "row-major (C order), last index fastest",
    "bit_order": "plane i of a code is bit i (LSB = plane 0): code = sum_i 2^i * plane_i",
    "table_index": "idx_i(m, g) = sum_t bit_i(codes[m, 4g + t]) << t: bit t from column 4g + t",
    "table_entry": "T[j] = (((s0*x0 + s1*x1) + s2*x2) + s3*x3) + 0.0 with s_t = +1 if bit t of j "
                   "is set else -1; entries 15 - j are (-T[j]) + 0.0 (mirror); no -0.0",
    "nibble_order": "layout.packed byte data[R, u, i, s, 4r + q]: low nibble = idx_i(row "
                    "64R + 32s + r, group 4u + q), high nibble = idx_i(row 64R + 32s + 16 + r, "
                    "same group); rows past M and columns past K are code 0",
    "zero_point": "w = (code - zero) * scale per weight group of group_size consecutive K "
                  "elements; zero is a float32 (integer-valued for asym/sym/ternary); sym uses "
                  "zero = 2^(bits-1), ternary codes are t + 2 with zero 2",
    "offset": "offset = float32((2^bits - 1) / 2) - zero",
    "rounding": "IEEE-754 binary32 round to nearest, ties to even, for every float operation; "
                "rint (half to even) for table quantization; no fused multiply-add",
    "table_quantization": "scale = max over the activation group's 4-groups of "
                          "((|x0| + |x1|) + |x2|) + |x3|, divided by 127; inv = 1/scale (0 if "
                          "scale is 0); q = clip(rint(T * inv), -127, 127)",
    "padding": "K is padded to Kp = ceil(K/4)*4 with zero activations and code 0",
    "blocks": "block width B = min(A, W_eff) with W_eff = group_size if group_size < K else "
              "Kp and A = act_group_size; block b covers [b*B, min((b+1)*B, Kp))",
    "float_order": "docs/numerics.md: sums run from 0.0 in increasing index, left to right",
}
COMPARE_RULES = {
    "exact": "integers equal; floats equal bit for bit (compare the uint32 patterns)",
}


def generator_version() -> str:
    from tmac.version import __version__

    return __version__


def reference_ops():
    """op name -> (params, stage tensors, x) -> y, the reference of every ``tmac.registry.OPS``
    (each case holds the outputs of the ops its format accepts)."""
    from tmac.golden.backends import op_runner
    from tmac.registry import OPS

    return {name: op_runner(name, "reference") for name in OPS}


def build_case(params):
    """(tensors, metadata) of one case: generated inputs, reference stages, string metadata."""
    w, x = _cases.inputs(params)
    tensors = _cases.stages(params, w, x, reference_ops())
    metadata = case_metadata(params, tensors)
    return tensors, metadata


def case_metadata(params, tensors):
    """The safetensors ``__metadata__`` of a case: parameters and per-tensor compare rules."""
    meta = {"format": FORMAT_NAME, "schema_version": str(SCHEMA_VERSION)}
    meta.update({key: str(value) for key, value in params.items()})
    meta.update({f"compare.{name}": "exact" for name in tensors})
    return meta


def manifest_entry(params, tensors, file_name):
    return {
        "name": params["name"],
        "file": file_name,
        "params": dict(params),
        "tensors": {name: {"dtype": container.TAGS[a.dtype], "shape": list(a.shape),
                           "compare": "exact"} for name, a in tensors.items()},
    }


def export(directory, force: bool = False, case_list=None) -> dict:
    """Write the golden set into ``directory``; returns the manifest.

    ``directory`` must not exist or be empty, unless ``force`` (then it is replaced whole).
    """
    target = Path(directory)
    if target.exists():
        if not target.is_dir():
            raise OSError(f"{target} exists and is not a directory")
        if any(target.iterdir()) and not force:
            raise OSError(f"{target} is not empty; pass --force to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        manifest = _write_all(staging, _cases.CASES if case_list is None else case_list)
        _replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _write_all(staging: Path, case_list) -> dict:
    from tmac.registry import OPS

    files, entries = {}, []
    for params in case_list:
        tensors, metadata = build_case(params)
        name = f"{params['name']}.safetensors"
        blob = container.write(staging / name, tensors, metadata)
        files[name] = _file_entry(blob)
        entries.append(manifest_entry(params, tensors, name))
    index = "".join(f"{e['file']}\n" for e in entries).encode()
    (staging / INDEX).write_bytes(index)
    files[INDEX] = _file_entry(index)
    manifest = {
        "format": FORMAT_NAME,
        "schema_version": SCHEMA_VERSION,
        "generator": {"name": "tmac", "version": generator_version()},
        "spec": "docs/golden-format.md; float order: docs/numerics.md",
        "conventions": CONVENTIONS,
        "compare_rules": COMPARE_RULES,
        "ops": {name: op.summary for name, op in OPS.items()},
        "tensors": {name: {"stage": stage, "description": text}
                    for name, (stage, text) in _cases.TENSORS.items()},
        "cases": entries,
        "files": files,
    }
    text = json.dumps(manifest, indent=1, sort_keys=False) + "\n"
    (staging / MANIFEST).write_text(text)
    return manifest


def _file_entry(blob: bytes) -> dict:
    return {"sha256": hashlib.sha256(blob).hexdigest(), "size": len(blob)}


def _replace(staging: Path, target: Path):
    """Move the finished staging directory to ``target`` (replacing an old one last)."""
    os.chmod(staging, 0o755)
    if not target.exists():
        os.replace(staging, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
    os.rmdir(old)
    os.replace(target, old)
    try:
        os.replace(staging, target)
    except BaseException:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)
