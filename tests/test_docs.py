"""Python code blocks in the README and docs run, so they cannot rot."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def python_blocks(path):
    return re.findall(r"```python\n(.*?)\n```", path.read_text(), flags=re.S)


@pytest.mark.parametrize("path", [p for p in DOCUMENTS if python_blocks(p)], ids=lambda p: p.name)
def test_python_blocks_run(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                  # files a block writes (tmac.save) land here
    namespace = {}
    for block in python_blocks(path):
        exec(compile(block, str(path), "exec"), namespace)


def tmac_command_lines(path):
    """``tmac ...`` lines of the bash blocks, comments removed."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)\n```", path.read_text(), flags=re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            for part in line.split("&&"):
                part = part.strip()
                if part.startswith("tmac "):
                    lines.append(part)
    return lines


PLACEHOLDERS = {"FORMAT": "w4", "F": "w4", "G": "64", "N": "128", "DIR": "/tmp/golden",
                "FILE": "text.txt", "MxK": "64x64"}
DOC_COMMANDS = [(p, line) for p in DOCUMENTS for line in tmac_command_lines(p)]


@pytest.mark.parametrize("path, line", DOC_COMMANDS, ids=[f"{p.name}:{l[:40]}" for p, l in DOC_COMMANDS])
def test_documented_commands_parse(path, line):
    """Every documented ``tmac`` command line names a real subcommand with real options."""
    import shlex

    from tmac.cli import build_parser

    words = [PLACEHOLDERS.get(w.strip("[]"), w.strip("[]")) for w in shlex.split(line)[1:]
             if w != "..."]
    try:
        build_parser().parse_args(words)
    except SystemExit as error:
        pytest.fail(f"{path.name}: `{line}` does not parse (exit {error.code})")
