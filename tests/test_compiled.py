"""The optional compiled build: which one is loaded, and building without a compiler.

The whole suite runs on both builds (``nox -s tests_compiled`` installs the
compiled wheel and sets ``LINECHAT_EXPECT_COMPILED=1``); these tests check
what is particular to the build itself.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

import linechat

ROOT = Path(__file__).resolve().parents[1]


def hot_modules() -> list[str]:
    """The modules the compiled build compiles, as pyproject.toml lists them."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    files = project["tool"]["hatch"]["build"]["targets"]["wheel"]["hooks"]["custom"]["compile"]
    return [file.removesuffix(".py").replace("/", ".") for file in files]


def is_extension(module: ModuleType) -> bool:
    return (module.__file__ or "").endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def load_hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hatch_build", ROOT / "hatch_build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compiled_flag_says_which_build_is_loaded() -> None:
    modules = hot_modules()
    assert {"linechat.framing", "linechat.protocol"} <= set(modules)
    for name in modules:
        module = importlib.import_module(name)
        assert is_extension(module) is linechat.COMPILED, (name, module.__file__)
    assert "COMPILED" in linechat.__all__
    expected = os.environ.get("LINECHAT_EXPECT_COMPILED")
    if expected is not None:  # set by the nox sessions: the build they installed
        assert linechat.COMPILED is (expected == "1")


def test_runs_without_mypy_extensions() -> None:
    """The decorator mypyc reads is optional at run time: a user's protocol still works."""
    program = textwrap.dedent(
        """
        import asyncio, sys
        sys.modules["mypy_extensions"] = None  # as if not installed: importing it fails
        import linechat

        class Upper(linechat.LineProtocol):
            def line_received(self, line):
                self.write_line(line.upper())

        async def main():
            loop = asyncio.get_running_loop()
            server = await loop.create_server(Upper, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"hi\\r\\n")
            print((await asyncio.wait_for(reader.readline(), 10)).decode().strip())
            writer.close()
            server.close()

        asyncio.run(main())
        print(linechat.COMPILED)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["HI", str(linechat.COMPILED)]


def test_compile_setting_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = load_hook()
    for value, mode in [("", "off"), ("0", "off"), ("1", "on"), ("auto", "auto")]:
        monkeypatch.setenv("LINECHAT_COMPILE", value)
        assert hook.mode() == mode
    monkeypatch.setenv("LINECHAT_COMPILE", "maybe")
    with pytest.raises(ValueError, match="LINECHAT_COMPILE"):
        hook.mode()
    assert hook.configured_modules(ROOT) == [
        name.replace(".", "/") + ".py" for name in hot_modules()
    ]


def build_wheel(tmp_path: Path, compile_setting: str) -> subprocess.CompletedProcess[str]:
    """Build the wheel with no C compiler to be found (an empty PATH, CC unset)."""
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("CC", "PYTHONPATH")}
    env.update(PATH=str(empty), LINECHAT_COMPILE=compile_setting, PIP_NO_INPUT="1")
    pip = [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation"]
    return subprocess.run(
        [*pip, "--wheel-dir", str(tmp_path / "dist"), str(ROOT)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.mark.skipif(importlib.util.find_spec("hatchling") is None, reason="needs hatchling")
def test_without_a_compiler_auto_builds_the_pure_wheel(tmp_path: Path) -> None:
    done = build_wheel(tmp_path, "auto")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "building the pure-Python wheel: no C compiler" in done.stdout + done.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    assert wheel.name.endswith("-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "linechat/framing.py" in names
    assert not [name for name in names if name.endswith(".so")]


@pytest.mark.skipif(importlib.util.find_spec("hatchling") is None, reason="needs hatchling")
def test_without_a_compiler_asking_to_compile_fails(tmp_path: Path) -> None:
    done = build_wheel(tmp_path, "1")
    assert done.returncode != 0
    assert "no C compiler" in done.stdout + done.stderr
    assert not list((tmp_path / "dist").glob("*.whl"))


def test_wrong_types_raise_type_error_in_both_builds() -> None:
    """What mypyc checks on entry, the pure package checks before use: one behaviour."""
    from linechat.framing import LineFramer
    from linechat.protocol import LineProtocol, encode_line

    framer = LineFramer()
    for data in (bytearray(b"a\r\n"), memoryview(b"a\r\n"), "a\r\n"):
        with pytest.raises(TypeError):
            framer.feed(data)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            framer.receive(data)  # type: ignore[arg-type]
        if not isinstance(data, str):
            with pytest.raises(TypeError):
                encode_line(data)  # type: ignore[arg-type]
    assert framer.feed(b"a\r\nb") == [b"a"]  # the refused input changed nothing
    protocol = LineProtocol()
    for line in (bytearray(b"x"), None, 5):
        with pytest.raises(TypeError):
            protocol.write_line(line)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            protocol.write_raw(line)  # type: ignore[arg-type]
    assert protocol._out == []
