"""The C99 consumer in examples/native/ compiles with the system compiler and passes a fresh
export: an independent port, written from the docs, agrees with the reference bit for bit."""

import shutil
import subprocess
from pathlib import Path

import pytest

from tmac.golden import export

SOURCE = Path(__file__).resolve().parents[1] / "examples" / "native" / "golden_check.c"
CC = shutil.which("cc")


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    if CC is None:
        pytest.skip("no C compiler (cc) on this system")
    binary = tmp_path_factory.mktemp("native") / "golden_check"
    subprocess.run([CC, "-std=c99", "-O2", "-Wall", "-Wextra", "-pedantic", "-Werror",
                    "-ffp-contract=off", "-o", str(binary), str(SOURCE), "-lm"],
                   check=True, capture_output=True, text=True)
    return binary


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    directory = tmp_path_factory.mktemp("golden") / "set"
    return directory, export(directory)


def run(program, *args):
    return subprocess.run([str(program), *map(str, args)], capture_output=True, text=True, timeout=120)


def test_native_port_passes_every_case(program, exported):
    directory, manifest = exported
    result = run(program, directory)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [l for l in result.stdout.splitlines() if l.startswith(("PASS", "FAIL"))]
    assert len(lines) == len(manifest["cases"]) and all(l.startswith("PASS") for l in lines)
    for case, line in zip(manifest["cases"], lines):
        assert line.startswith(f"PASS {case['name']}: ")
        checked = int(line.split(": ")[1].split()[0])
        # every stage it can compute is checked (not input.*, quantize.*, or the parameters)
        skipped = [t for t in case["tensors"] if t.startswith(("input.", "quantize."))
                   or t in ("m0e4.a", "m0e4.b", "e2m1.scales", "affine.offsets", "ggml.blocks")]
        assert checked == len(case["tensors"]) - len(skipped), line
    assert f"{len(manifest['cases'])} cases, 0 failed" in result.stdout


def test_native_port_names_the_first_difference(program, exported, tmp_path):
    directory, manifest = exported
    copy = tmp_path / "copy"
    shutil.copytree(directory, copy)
    name = manifest["cases"][0]["file"]
    data = bytearray((copy / name).read_bytes())
    data[-2] ^= 0x01                       # output.int4_dequant_matmul, last element, a low bit
    (copy / name).write_bytes(bytes(data))
    truncated = manifest["cases"][1]["file"]
    (copy / truncated).write_bytes((copy / truncated).read_bytes()[:-7])
    hostile = manifest["cases"][2]["file"]
    (copy / hostile).write_bytes((1 << 62).to_bytes(8, "little") + b"{}")
    only_values = run(program, copy, name)                 # a readable file whose values differ: 1
    assert only_values.returncode == 1, only_values.stdout
    result = run(program, copy)                            # unreadable files among them: 2
    assert result.returncode == 2, result.stdout + result.stderr
    out = result.stdout
    assert "tensor output.int4_dequant_matmul: first difference at [0, 4]" in out
    assert f"FAIL {truncated}: tensor" in out and "run past" in out
    assert f"FAIL {hostile}: header length" in out
    assert "3 failed" in out


def test_make_check_without_arguments_checks_the_committed_files(tmp_path):
    """`make check` needs no DIR: it checks tests/golden (built in a copy, leaving no binary)."""
    if shutil.which("make") is None or CC is None:
        pytest.skip("no make or no C compiler (cc) on this system")
    native = tmp_path / "examples" / "native"
    shutil.copytree(SOURCE.parent, native)
    shutil.copytree(SOURCE.parents[2] / "tests" / "golden", tmp_path / "tests" / "golden")
    done = subprocess.run(["make", "-C", str(native), "check"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert any(line.endswith(" cases, 0 failed") for line in done.stdout.splitlines())
