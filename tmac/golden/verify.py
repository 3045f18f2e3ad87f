"""``tmac golden verify DIR``: checksums, then every case recomputed and compared.

1. MANIFEST.json is read (size-limited) and checked: format, schema version, file list.
2. Every listed file's size and sha256 are checked before it is parsed; files not listed are
   reported.
3. Every case file is read by the defensive reader (``container.read``); its tensors must be
   exactly the manifest's (names, dtypes, shapes) and its metadata must match the parameters.
4. The reference recomputes every stage from the file's inputs (``cases.stages``), and every
   kernel backend of every op in ``tmac.registry.OPS`` recomputes the outputs; each tensor is
   compared by its rule. A failure names the case, tensor, backend, first differing index and
   both values.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tmac.formats import FORMATS
from tmac.golden import backends as _backends
from tmac.golden import cases as _cases
from tmac.golden import container
from tmac.golden.container import GoldenFormatError
from tmac.golden.export import FORMAT_NAME, INDEX, MANIFEST, SCHEMA_VERSION

MAX_MANIFEST_BYTES = 16 << 20
_PARAM_TYPES = {"name": str, "scheme": str, "bits": int, "m": int, "k": int, "n": int,
                "group_size": int, "act_group_size": int, "lut": str, "x_pattern": str}
_LIMITS = {"m": 1 << 16, "k": 1 << 16, "n": 1 << 12, "bits": 8, "group_size": 1 << 16,
           "act_group_size": 1 << 16}


@dataclass
class Report:
    """What verify found: failures (one line each) and, per case, the backends that passed."""

    failures: list = field(default_factory=list)
    passed: dict = field(default_factory=dict)     # case -> [backend, ...]

    @property
    def ok(self):
        return not self.failures


def first_difference(expected, got):
    """None if equal (bit for bit for floats), else (index tuple, expected value, got value)."""
    if expected.shape != got.shape:
        return ("shape", expected.shape, got.shape)
    if expected.dtype != got.dtype:
        return ("dtype", expected.dtype, got.dtype)
    if expected.dtype.kind == "f":
        bits = np.dtype(f"u{expected.dtype.itemsize}")
        differ = expected.view(bits) != got.view(bits)
    else:
        differ = expected != got
    if not differ.any():
        return None
    index = tuple(int(i) for i in np.argwhere(differ)[0])
    return index, expected[index], got[index]


def describe(value):
    """A value for a failure message; floats also as their bit pattern."""
    if isinstance(value, np.floating):
        return f"{float(value)!r} (0x{int(np.asarray(value).view(np.uint32)):08x})"
    return repr(value.item() if hasattr(value, "item") else value)


def _compare(report, case, tensor, backend, expected, got):
    diff = first_difference(expected, np.asarray(got))
    if diff is None:
        return True
    where, want, have = diff
    if where in ("shape", "dtype"):
        report.failures.append(f"case {case}: tensor {tensor} [{backend}]: {where} differs: "
                               f"expected {want}, got {have}")
    else:
        report.failures.append(f"case {case}: tensor {tensor} [{backend}]: first difference at "
                               f"index {list(where)}: expected {describe(want)}, got {describe(have)}")
    return False


def read_manifest(directory: Path) -> dict:
    path = directory / MANIFEST
    try:
        size = path.stat().st_size
    except OSError as error:
        raise GoldenFormatError(f"{path}: cannot read ({error.strerror})") from None
    if size > MAX_MANIFEST_BYTES:
        raise GoldenFormatError(f"{path}: {size} bytes, more than the limit of {MAX_MANIFEST_BYTES}")
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise GoldenFormatError(f"{path}: not valid UTF-8 JSON ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise GoldenFormatError(f"{path}: not a {FORMAT_NAME} manifest")
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise GoldenFormatError(f"{path}: schema_version {manifest.get('schema_version')!r} is "
                                f"not supported (this tmac reads {SCHEMA_VERSION})")
    files, case_list = manifest.get("files"), manifest.get("cases")
    if not isinstance(files, dict) or not isinstance(case_list, list):
        raise GoldenFormatError(f"{path}: 'files' must be an object and 'cases' a list")
    for name, entry in files.items():
        if (not isinstance(name, str) or not name or "/" in name or "\\" in name
                or name.startswith(".") or name == MANIFEST):
            raise GoldenFormatError(f"{path}: file name {name!r} is not a plain file name")
        if (not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str)
                or not isinstance(entry.get("size"), int) or entry["size"] < 0):
            raise GoldenFormatError(f"{path}: file {name!r} needs a sha256 string and a size")
    for case in case_list:
        _check_case_entry(path, case, files)
    return manifest


def _check_case_entry(path, case, files):
    if not isinstance(case, dict) or not isinstance(case.get("params"), dict):
        raise GoldenFormatError(f"{path}: every case needs 'name', 'file', 'params' and 'tensors'")
    params, name = case["params"], case.get("name")
    for key, kind in _PARAM_TYPES.items():
        value = params.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise GoldenFormatError(f"{path}: case {name!r}: parameter {key!r} must be "
                                    f"{kind.__name__}, got {value!r}")
        if kind is int and not 1 <= value <= _LIMITS.get(key, 1 << 16):
            raise GoldenFormatError(f"{path}: case {name!r}: parameter {key!r} = {value} is out "
                                    f"of range 1..{_LIMITS[key]}")
    if params["scheme"] not in FORMATS or params["lut"] not in _cases.LUT_MODES:
        raise GoldenFormatError(f"{path}: case {name!r}: unknown scheme {params['scheme']!r} or "
                                f"lut {params['lut']!r}")
    if params["x_pattern"] not in _cases.X_PATTERNS:
        raise GoldenFormatError(f"{path}: case {name!r}: unknown x_pattern {params['x_pattern']!r}")
    if name != params["name"] or case.get("file") not in files:
        raise GoldenFormatError(f"{path}: case {name!r}: its file {case.get('file')!r} is not "
                                "listed under 'files' (or its name differs from params.name)")
    if not isinstance(case.get("tensors"), dict):
        raise GoldenFormatError(f"{path}: case {name!r}: 'tensors' must be an object")
    for tensor, entry in case["tensors"].items():
        if not isinstance(entry, dict) or entry.get("compare") not in ("exact",):
            raise GoldenFormatError(f"{path}: case {name!r}: tensor {tensor!r} has an unknown "
                                    f"compare rule {entry.get('compare') if isinstance(entry, dict) else entry!r}")


def check_files(directory: Path, manifest: dict, report: Report) -> set:
    """Sizes and sha256 of every listed file; returns the names that are intact."""
    intact = set()
    for name, entry in manifest["files"].items():
        path = directory / name
        try:
            size = path.stat().st_size
        except OSError:
            report.failures.append(f"file {name}: missing")
            continue
        if size != entry["size"]:
            report.failures.append(f"file {name}: size {size} bytes, manifest says {entry['size']}")
            continue
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        if digest.hexdigest() != entry["sha256"]:
            report.failures.append(f"file {name}: sha256 {digest.hexdigest()} does not match the "
                                   f"manifest's {entry['sha256']}")
            continue
        intact.add(name)
    listed = set(manifest["files"]) | {MANIFEST}
    for path in sorted(directory.iterdir()):
        if path.name not in listed and not path.name.startswith("."):
            report.failures.append(f"file {path.name}: present but not listed in {MANIFEST}")
    index = directory / INDEX
    if INDEX in intact:
        want = "".join(f"{c['file']}\n" for c in manifest["cases"])
        if index.read_text() != want:
            report.failures.append(f"file {INDEX}: does not list the manifest's case files in order")
    return intact


def verify(directory, kernels: bool = True, only_backends=None, log=None) -> Report:
    """Verify a golden directory; returns a Report (raises GoldenFormatError if the manifest
    itself is unusable). ``kernels=False`` checks the reference only; ``only_backends`` limits
    the kernel backends (ISA paths) tried."""
    from tmac.registry import OPS

    directory = Path(directory)
    manifest = read_manifest(directory)
    report = Report()
    intact = check_files(directory, manifest, report)
    reference_ops = {op: _backends.op_runner(op, "reference") for op in OPS}
    for case in manifest["cases"]:
        name = case["name"]
        start = len(report.failures)
        report.passed[name] = _verify_case(directory, case, intact, report, kernels,
                                           only_backends, reference_ops)
        if log:
            log(name, report.passed[name], report.failures[start:])
    return report


def _verify_case(directory, case, intact, report, kernels, only_backends, reference_ops):
    """Check one case; appends failures to the report, returns the backends that passed."""
    name, params = case["name"], case["params"]
    if case["file"] not in intact:
        report.failures.append(f"case {name}: not checked (its file failed the checksum)")
        return []
    try:
        tensors, metadata = container.read(directory / case["file"])
    except GoldenFormatError as error:
        report.failures.append(f"case {name}: {error}")
        return []
    if not _structure_ok(report, case, tensors, metadata):
        return []
    try:
        want = _cases.stages(params, np.array(tensors["input.w"]), np.array(tensors["input.x"]),
                             reference_ops)
    except Exception as error:              # parameters the reference refuses
        report.failures.append(f"case {name}: the reference cannot run it: {error}")
        return []
    passed = []
    before = len(report.failures)
    for tensor, expected in tensors.items():
        _compare(report, name, tensor, "reference", expected, want[tensor])
    if len(report.failures) == before:
        passed.append("reference")
    if not kernels:
        return passed
    paths = {op: _backends.kernel_backends(op, only_backends) for op in _backends.ops_for(params)}
    for backend in dict.fromkeys(b for op in paths for b in paths[op]):     # ordered union
        before = len(report.failures)
        for op in paths:
            if backend in paths[op]:
                got = _backends.op_runner(op, backend)(params, tensors, tensors["input.x"])
                _compare(report, name, f"output.{op}", backend, tensors[f"output.{op}"], got)
        if len(report.failures) == before:
            passed.append(backend)
    return passed


def _structure_ok(report, case, tensors, metadata):
    name, params = case["name"], case["params"]
    expected = {t: (e.get("dtype"), tuple(e.get("shape", ()))) for t, e in case["tensors"].items()}
    found = {t: (container.TAGS[a.dtype], a.shape) for t, a in tensors.items()}
    wanted_names = _cases.tensor_names(params)
    problems = []
    if list(expected) != wanted_names:
        problems.append(f"manifest lists tensors {sorted(set(expected) ^ set(wanted_names))} "
                        "that differ from what this case kind holds" if set(expected) != set(wanted_names)
                        else "manifest lists the tensors in another order")
    for t in sorted(set(expected) | set(found)):
        if t not in found:
            problems.append(f"tensor {t}: listed in the manifest, missing from the file")
        elif t not in expected:
            problems.append(f"tensor {t}: in the file, not listed in the manifest")
        elif found[t] != expected[t]:
            problems.append(f"tensor {t}: file has {found[t][0]} {list(found[t][1])}, manifest "
                            f"says {expected[t][0]} {list(expected[t][1])}")
    for tensor, shape in (("input.w", (params["m"], params["k"])),
                          ("input.x", (params["n"], params["k"]))):
        if tensor in found and found[tensor][1] != shape:
            problems.append(f"tensor {tensor}: shape {list(found[tensor][1])} does not match the "
                            f"parameters' {list(shape)}")
    for key, value in params.items():
        if metadata.get(key) != str(value):
            problems.append(f"metadata {key!r} is {metadata.get(key)!r}, manifest says {value!r}")
    for t in expected:
        if metadata.get(f"compare.{t}") != case["tensors"][t]["compare"]:
            problems.append(f"metadata compare.{t} disagrees with the manifest")
    for p in problems:
        report.failures.append(f"case {name}: {p}")
    return not problems
