"""``tmac demo``: the table's numbers come from the library, checked against independent math."""

import subprocess
import sys

import numpy as np

from tmac.cli import main
from tmac.demo import FORMATS, demo_rows


def test_demo_rows_are_consistent():
    numpy_seconds, rows = demo_rows(m=64, k=256, group_size=64, repeats=1)
    assert numpy_seconds > 0 and [r.name for r in rows] == [f[0] for f in FORMATS]
    by_name = {r.name: r for r in rows}
    weight_errors = [by_name[f"{b}-bit asym"].weight_nmse for b in (4, 3, 2, 1)]
    assert weight_errors == sorted(weight_errors)            # fewer bits, larger error
    assert all(r.lut_nmse < 1e-3 for r in rows)              # int8 tables cost little accuracy
    # float32 scale and uint8 zero per 64 weights, as the kernels read them
    assert by_name["4-bit asym"].bits_per_weight == 4 + (32 + 8) / 64


def test_demo_command_prints_every_format(capsys):
    assert main(["demo", "--m", "32", "--k", "64", "--group-size", "32", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name, _, _ in FORMATS) and "numpy float32" in out


def test_python_m_tmac_reports_bad_arguments():
    result = subprocess.run([sys.executable, "-m", "tmac", "demo", "--k", "100", "--group-size", "32"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "group_size" in result.stderr
