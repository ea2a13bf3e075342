"""The optional compiled build: hatchling's build hook that compiles the hot modules with mypyc.

By default nothing is compiled and the wheel is pure Python (``py3-none-any``).
The environment variable ``LINECHAT_COMPILE``, read when the wheel is built,
asks for more:

* ``1``: compile the modules listed in ``pyproject.toml``
  (``[tool.hatch.build.targets.wheel.hooks.custom] compile``) with mypyc and
  ship them beside their sources, in a wheel tagged for this interpreter and
  platform. Failing to compile fails the build: asked for, not delivered.
* ``auto``: the same, but without a working C compiler (or mypyc) the build
  says why on stderr and goes on with the pure wheel.

Editable installs (``pip install -e``) are always pure. mypy (which holds
mypyc) and setuptools (which drives the C compiler) are build requirements
only when compiling; the compiled wheel needs neither at run time.

The same compilation, into a folder instead of a wheel, for benchmarks and
for trying the compiled modules from a checkout without installing them::

    python hatch_build.py --out build/compiled
    PYTHONPATH=build/compiled python -c 'import linechat; print(linechat.COMPILED)'
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

ROOT = Path(__file__).resolve().parent
PACKAGE = "linechat"
ENV = "LINECHAT_COMPILE"
#: Build requirements of a compiled build (hatchling installs them only then).
COMPILE_REQUIRES = ["mypy>=1.10", "setuptools>=61"]
#: The shared library mypyc puts the modules' common runtime in (top level;
#: mypyc names it after the group, ours the package's name).
GROUP = f"{PACKAGE}__mypyc"

# Run in a subprocess with the build's interpreter: mypyc's entry point, with
# our group name so the shared library is called after the package, not a hash.
# mypy follows the imports into the whole package; the optional extras
# (uvloop, watchfiles, redis) need not be installed to compile the hot modules.
SETUP = """\
import sys
from setuptools import setup
from mypyc.build import mypycify

setup(
    name="{group}",
    script_args=["build_ext", "--inplace"],
    ext_modules=mypycify(sys.argv[1:], opt_level="3", debug_level="0", group_name="{package}"),
)
"""


class CompileError(Exception):
    """mypyc or the C compiler could not build the modules."""


def mode() -> str:
    """``off``, ``on`` or ``auto``, from ``LINECHAT_COMPILE``."""
    value = os.environ.get(ENV, "").strip().lower()
    if value in ("", "0", "no", "false", "off"):
        return "off"
    if value in ("1", "yes", "true", "on"):
        return "on"
    if value == "auto":
        return "auto"
    raise ValueError(f"{ENV}={value!r}: use 1 (compile), auto (compile if possible) or 0")


def configured_modules(root: Path = ROOT) -> list[str]:
    """The module files to compile, relative to ``src/`` (``linechat/framing.py``...)."""
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    hook = project["tool"]["hatch"]["build"]["targets"]["wheel"]["hooks"]["custom"]
    return [str(module) for module in hook["compile"]]


def compile_modules(source: Path, modules: list[str], out: Path) -> list[Path]:
    """Compile ``modules`` (paths under ``source``) into ``out``; return the extensions made.

    The package is copied to a scratch folder first, so nothing is written
    into the source tree. ``out`` receives the extensions under their
    package's folder and the group's shared library at its top.
    """
    if shutil.which(os.environ.get("CC", "cc")) is None and shutil.which("gcc") is None:
        raise CompileError("no C compiler (cc, gcc) on PATH")
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    with tempfile.TemporaryDirectory(prefix="linechat-mypyc-") as scratch:
        work = Path(scratch)
        shutil.copytree(
            source / PACKAGE, work / PACKAGE, ignore=shutil.ignore_patterns("__pycache__")
        )
        setup = SETUP.format(group=GROUP, package=PACKAGE)
        (work / "setup_mypyc.py").write_text(setup, encoding="utf-8")
        done = subprocess.run(
            [sys.executable, "setup_mypyc.py", "--ignore-missing-imports", *modules],
            cwd=work,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            output = (done.stdout + done.stderr)[-3000:]
            raise CompileError(f"mypyc failed (exit {done.returncode}):\n{output}")
        made = [Path(module).with_suffix(suffix) for module in modules]
        made.append(Path(GROUP + suffix))
        missing = [str(path) for path in made if not (work / path).is_file()]
        if missing:
            raise CompileError(f"mypyc reported success but did not make {missing}")
        for path in made:
            (out / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(work / path, out / path)
    return made


class CustomBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    """Compiles the hot modules into the wheel when ``LINECHAT_COMPILE`` asks for it."""

    def dependencies(self) -> list[str]:
        return COMPILE_REQUIRES if self.target_name == "wheel" and mode() != "off" else []

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        wanted = mode()
        if self.target_name != "wheel" or wanted == "off":
            return
        if version == "editable":
            print(f"{ENV}: an editable install stays pure Python", file=sys.stderr)
            return
        out = Path(self.directory) / ".linechat-mypyc"
        shutil.rmtree(out, ignore_errors=True)
        modules = [str(module) for module in self.config.get("compile", [])]
        try:
            made = compile_modules(Path(self.root) / "src", modules, out)
        except (CompileError, OSError) as exc:
            if wanted == "on":
                raise
            print(f"{ENV}=auto: building the pure-Python wheel: {exc}", file=sys.stderr)
            return
        for path in made:
            build_data["force_include"][str(out / path)] = path.as_posix()
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        print(f"{ENV}: compiled {', '.join(modules)} with mypyc", file=sys.stderr)

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        shutil.rmtree(Path(self.directory) / ".linechat-mypyc", ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description="Compile linechat's hot modules into a folder.")
    parser.add_argument("--out", type=Path, required=True, help="folder to put them in")
    args = parser.parse_args()
    out: Path = args.out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    # The whole package, then its compiled modules beside their sources (as in the wheel):
    # on sys.path ahead of an installed linechat, this folder is a complete compiled linechat.
    shutil.copytree(
        ROOT / "src" / PACKAGE, out / PACKAGE, ignore=shutil.ignore_patterns("__pycache__")
    )
    try:
        made = compile_modules(ROOT / "src", configured_modules(), out)
    except CompileError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"compiled into {out}: {', '.join(str(path) for path in made)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
