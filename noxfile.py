"""CI sessions: the suite on every supported Python, without uvloop, compiled; wheel, docs, fuzzing.

    .venv/bin/nox -l                      # the sessions
    .venv/bin/nox -s "tests-3.12"         # one of them
    .ci/run                               # what CI runs: all of them, two at a time

The interpreters come from pyenv (~/.pyenv/versions/3.1x.y) or PATH. Each
session installs linechat from its source as a user would (not editable),
in its own venv under .nox/.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nox

nox.options.error_on_missing_interpreters = True
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "tests_no_uvloop", "tests_compiled", "docs", "wheel", "fuzz"]

PYTHONS = ["3.11", "3.12", "3.13"]
ROOT = Path(__file__).parent

# pyenv's interpreters, so nox finds python3.12 and python3.13 without a shim.
for version in sorted((Path.home() / ".pyenv" / "versions").glob("3.*")):
    if (version / "bin").is_dir():
        os.environ["PATH"] = f"{version / 'bin'}{os.pathsep}{os.environ['PATH']}"


def pytest_args(session: nox.Session) -> list[str]:
    # -p no:cacheprovider: sessions may run at once; they share no cache directory.
    return ["-q", "-p", "no:cacheprovider", *session.posargs]


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The whole suite, linechat installed with the fast extra (uvloop)."""
    session.install(".[fast,test]")
    session.run("pytest", *pytest_args(session), env={"LINECHAT_EXPECT_COMPILED": "0"})


@nox.session(python="3.11")
def tests_no_uvloop(session: nox.Session) -> None:
    """The whole suite with uvloop absent: --loop auto falls back to asyncio."""
    session.install(".[test]")
    session.run("python", "-c", "import importlib.util as u; assert not u.find_spec('uvloop')")
    session.run("pytest", *pytest_args(session), env={"LINECHAT_EXPECT_COMPILED": "0"})


# Run in the session's venv: every module the compiled build compiles is the
# mypyc extension, not the .py beside it, and linechat.COMPILED says so.
CHECK_COMPILED = """
import importlib, importlib.machinery, sys, tomllib
import linechat
hook = tomllib.load(open("pyproject.toml", "rb"))["tool"]["hatch"]["build"]["targets"]["wheel"]
names = [f.removesuffix(".py").replace("/", ".") for f in hook["hooks"]["custom"]["compile"]]
suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
pure = [n for n in names if not (importlib.import_module(n).__file__ or "").endswith(suffixes)]
if pure or not linechat.COMPILED:
    sys.exit(f"not compiled: {pure or 'linechat.COMPILED is False'}")
print("compiled:", ", ".join(importlib.import_module(n).__file__ for n in names))
"""


@nox.session(python="3.11")
def tests_compiled(session: nox.Session) -> None:
    """The whole suite on the compiled build (LINECHAT_COMPILE=1): fails if it is not compiled."""
    session.install(".[fast,test]", env={"LINECHAT_COMPILE": "1"})
    session.run("python", "-c", CHECK_COMPILED)
    session.run("pytest", *pytest_args(session), env={"LINECHAT_EXPECT_COMPILED": "1"})


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """The site, strictly: a warning, a broken link or a missing reference fails."""
    session.install("-e", ".[docs]")
    site = session.create_tmp()
    session.run("mkdocs", "build", "--strict", "--site-dir", str(Path(site) / "site"))


@nox.session(python="3.11")
def wheel(session: nox.Session) -> None:
    """Build sdist and wheel, check the wheel, install it into fresh venvs, smoke-test it."""
    session.install("build")
    dist = Path(session.create_tmp()) / "dist"
    session.run("python", "-m", "build", "--outdir", str(dist), ".")
    (wheel_file,) = dist.glob("*.whl")
    session.run("python", ".ci/check_wheel.py", str(wheel_file))
    for python in PYTHONS:
        for extra in ("", "[fast]"):
            venv = Path(session.create_tmp()) / f"venv-{python}{extra or '-plain'}"
            session.run(f"python{python}", "-m", "venv", "--clear", str(venv), external=True)
            pip = str(venv / "bin" / "pip")
            session.run(pip, "install", "-q", f"{wheel_file}{extra}", external=True)
            smoke = [str(venv / "bin" / "python"), str(ROOT / ".ci" / "smoke.py")]
            session.run(*smoke, *(["--fast"] if extra else []), external=True)


@nox.session(python="3.11")
def fuzz(session: nox.Session) -> None:
    """Every tests/fuzz/fuzz_*.py harness for a short budget (FUZZ_SECONDS, default 25)."""
    session.install("-e", ".[fuzz,chat-redis]")  # the IRC harness decodes Redis events too
    seconds = os.environ.get("FUZZ_SECONDS", "25")
    session.run("python", "tests/fuzz/run.py", "--seconds", seconds, *session.posargs)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run with nox: .venv/bin/nox -l")
