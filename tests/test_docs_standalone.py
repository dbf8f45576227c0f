"""Comments and docs stand alone: nothing cites a specification file a reader cannot open.

A rule worth knowing is written where it applies (or in docs/*.md); numbered sections of an
outside document ("§7.1") and paths to it mean nothing to someone reading this repository.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
THIS_FILE = Path(__file__).resolve()

# Built from pieces so that this file does not match itself.
OUTSIDE_REFERENCE = re.compile("SPEC" + r"\.md|\bspec" + "/|" + "\u00a7")
TEXT_SUFFIXES = {".py", ".md", ".txt", ".toml", ".yaml", ".yml", ".cfg", ".ini", ".html", ".js"}
TEXT_NAMES = {"Makefile", "Dockerfile", ".env.example"}
# Local state, caches and installed packages; `.ci` holds project files and is scanned.
SKIPPED_DIRS = {".git", ".venv", ".data", ".hypothesis", ".ruff_cache", ".pytest_cache"}
SKIPPED_DIRS |= {"__pycache__", "node_modules", "screenshots"}


def project_text_files(root: Path):
    """Every project text file under `root`, skipping local state and caches."""
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part in SKIPPED_DIRS for part in relative.parts[:-1]):
            continue
        if path.is_file() and (path.suffix in TEXT_SUFFIXES or path.name in TEXT_NAMES):
            yield path


def outside_references(root: Path) -> list[str]:
    """`path:line: text` of every line citing an outside specification."""
    found = []
    for path in project_text_files(root):
        if path.resolve() == THIS_FILE:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            if OUTSIDE_REFERENCE.search(line):
                found.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    return found


def test_no_file_cites_an_outside_specification():
    # when
    found = outside_references(ROOT)
    # then
    assert found == []


@pytest.mark.parametrize(
    "line",
    [
        '"""Snapshots (' + "SPEC" + '.md §3)."""',
        "# see spec" + "/api.md",
        "Rule 2 (\u00a711) applies.",
    ],
)
def test_the_scan_finds_a_planted_reference(tmp_path, line):
    # given
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "module.py").write_text(f"x = 1\n{line}\n")
    # when
    found = outside_references(tmp_path)
    # then
    assert found == [f"pkg/module.py:2: {line}"]


def test_the_scan_skips_local_state(tmp_path):
    # given
    (tmp_path / ".venv" / "lib").mkdir(parents=True)
    (tmp_path / ".venv" / "lib" / "vendored.py").write_text("# " + "SPEC" + ".md\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.md").write_text("A rule stated in our own words.\n")
    # when
    found = outside_references(tmp_path)
    # then
    assert found == []
