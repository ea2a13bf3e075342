"""What a user sees of the package itself: its names, its help, its version."""

from __future__ import annotations

import pydoc
import subprocess
import sys
import tomllib
from pathlib import Path

import linechat

ROOT = Path(__file__).resolve().parents[1]
LAZY = ["LineProtocol", "LineServer", "LineStream", "StreamServer", "connect", "start_server"]


def test_dir_lists_the_lazily_imported_names() -> None:
    # In a fresh interpreter: here, other tests may have imported them already.
    code = "import linechat; print(' '.join(dir(linechat)))"
    names = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    for name in [*LAZY, *linechat.__all__]:
        assert name in names, name


def test_help_shows_the_lazily_imported_names() -> None:
    code = "import linechat, pydoc; print(pydoc.render_doc(linechat, renderer=pydoc.plaintext))"
    text = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    for name in ("LineProtocol", "LineServer", "LineStream", "start_server", "connect"):
        assert name in text, name
    assert pydoc.getdoc(linechat).startswith("linechat:")


def test_version_is_kept_in_one_place() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["hatch"]["version"]["path"] == "src/linechat/__init__.py"
    done = subprocess.run(
        [sys.executable, "-m", "linechat", "--version"], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == f"linechat {linechat.__version__}"


def test_changelog_and_licence_ship_with_the_sources() -> None:
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    assert "## [Unreleased]" in (ROOT / "CHANGELOG.md").read_text()
