"""Check a built wheel: what it must hold (py.typed, metadata) and what it must not (tests).

python .ci/check_wheel.py dist/linechat-*.whl
"""

from __future__ import annotations

import re
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

REQUIRED_FILES = ["linechat/__init__.py", "linechat/py.typed", "linechat/cli/__init__.py"]
FORBIDDEN = re.compile(r"^(tests|bench|docs|examples|\.ci)/|/tests?/|conftest\.py$|fuzz_")
REQUIRED_METADATA = ["Name", "Version", "Requires-Python", "License-Expression", "Project-URL"]


def source_version(root: Path) -> str:
    text = (root / "src" / "linechat" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "([^"]+)"', text, re.MULTILINE)
    if match is None:
        raise SystemExit("no __version__ in src/linechat/__init__.py")
    return match.group(1)


def check(wheel: Path, root: Path) -> list[str]:
    problems = []
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata_name = next((n for n in names if n.endswith(".dist-info/METADATA")), None)
        if metadata_name is None:
            return [f"{wheel.name}: no METADATA"]
        metadata = Parser().parsestr(archive.read(metadata_name).decode())
        entry_points = next((n for n in names if n.endswith(".dist-info/entry_points.txt")), "")
        scripts = archive.read(entry_points).decode() if entry_points else ""
        licences = [n for n in names if "/licenses/" in n and n.endswith("LICENSE")]
    for required in REQUIRED_FILES:
        if required not in names:
            problems.append(f"missing {required}")
    problems += [f"should not ship {name}" for name in names if FORBIDDEN.search(name)]
    problems += [f"metadata lacks {key}" for key in REQUIRED_METADATA if not metadata.get(key)]
    if metadata.get("Version") != source_version(root):
        problems.append(f"version {metadata.get('Version')} != {source_version(root)}")
    if not any(
        c.startswith("Programming Language :: Python :: 3.13")
        for c in metadata.get_all("Classifier", [])
    ):
        problems.append("classifiers do not list the supported Pythons")
    if "linechat = linechat.cli:entry_point" not in scripts:
        problems.append("no `linechat` console script")
    if not licences:
        problems.append("LICENSE is not in the wheel")
    return problems


def main() -> int:
    wheels = [Path(arg) for arg in sys.argv[1:] if arg.endswith(".whl")]
    if not wheels:
        print("usage: check_wheel.py WHEEL", file=sys.stderr)
        return 2
    root = Path(__file__).resolve().parents[1]
    failed = False
    for wheel in wheels:
        problems = check(wheel, root)
        for problem in problems:
            print(f"{wheel.name}: {problem}", file=sys.stderr)
        failed = failed or bool(problems)
        if not problems:
            print(f"{wheel.name}: ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
