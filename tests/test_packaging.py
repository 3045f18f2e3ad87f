"""Packaging: the wheel installs tmac and tmac.reference, never a bare top-level ``reference``;
the source tree has no symlink."""

import os
import re
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_wheel(out_dir):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                    "-q", "-w", str(out_dir), str(ROOT)], check=True)
    (wheel,) = Path(out_dir).glob("tmac-*.whl")
    return wheel


def test_wheel_installs_reference_under_tmac(tmp_path):
    wheel = build_wheel(tmp_path / "dist")
    names = zipfile.ZipFile(wheel).namelist()
    assert all(n.startswith(("tmac/", "tmac-")) for n in names), names
    assert "tmac/reference/lut_matmul.py" in names

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                    "-q", "--target", str(tmp_path / "site"), str(wheel)], check=True)
    probe = ("import importlib.util, tmac, tmac.reference.lut_matmul;"
             "print(tmac.__file__);"
             "print(importlib.util.find_spec('reference'))")
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"))
    out = subprocess.run([str(python), "-c", probe], cwd=tmp_path, env=env, check=True,
                         capture_output=True, text=True).stdout.splitlines()
    assert out[0].startswith(str(tmp_path / "site")), out
    assert out[1] == "None"


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    assert len(commands) >= 2 and commands[0].endswith("tmac demo")
    assert commands[1] in (ROOT / ".ci" / "run").read_text().splitlines()


def test_no_symlinks_in_the_source_tree():
    """A checkout with core.symlinks=false, a Windows checkout and an sdist all see the same
    files: the repository holds no symbolic link (the spec is the real folder tmac/reference)."""
    links = [str(p.relative_to(ROOT)) for folder in ("tmac", "tests", "docs", "examples")
             for p in (ROOT / folder).rglob("*") if p.is_symlink()]
    assert links == []
    assert (ROOT / "tmac" / "reference" / "__init__.py").is_file()
