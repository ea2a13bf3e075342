"""The docs site's build hooks: the CLI reference and the benchmark charts."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from linechat.cli import build_parser

HOOKS = Path(__file__).resolve().parents[1] / "docs" / "hooks"


def hook(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"linechat_docs_{name}", HOOKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_cli_reference_has_every_flag_of_every_command() -> None:
    cli = hook("cli_reference")
    text = cli.render()
    parser = build_parser()
    commands = cli.subcommands(parser)
    assert set(commands) >= {"serve", "connect"}
    for name, sub in commands.items():
        assert f"## linechat {name} {{#{name}}}" in text
        for action in sub._actions:
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
                continue
            assert f"{{#{cli.anchor(name, action)}}}" in text, action
            for option in action.option_strings:
                assert f"`{option}" in text or f", {option}" in text, option
    assert "### echo {#service-echo}" in text
    # serve's flags come from the runner's parser, not the argument-less stub
    for flag in ("serve-tls-cert", "serve-proxy-protocol", "serve-workers", "serve-config"):
        assert f"{{#{flag}}}" in text, flag


def test_cli_reference_replaces_only_its_marker() -> None:
    cli = hook("cli_reference")
    assert cli.on_page_markdown("no marker here") == "no marker here"
    assert "#### `--tls-cert FILE`" in cli.on_page_markdown(f"# CLI\n\n{cli.MARKER}\n")


TABLES = """# Results
## Framing
#### short lines, 64 KiB chunks
| implementation | MB/s | speedup |
|---|--:|--:|
| linechat | 1,304 | 1.02x |
| `seed` | 8.86 M | **0.53x** |

text between
## Other
| a | b |
| --- | --- |
| 1 |
"""


def test_tables_are_parsed_with_their_headings() -> None:
    charts = hook("bench_charts")
    first, second = charts.parse_tables(TABLES)
    assert first.headings == ["Results", "Framing", "short lines, 64 KiB chunks"]
    assert first.column("implementation") == ["linechat", "`seed`"]
    assert [charts.number(v) for v in first.column("MB/s")] == [1304.0, 8.86e6]
    assert [charts.number(v) for v in first.column("speedup")] == [1.02, 0.53]
    assert second.headings == ["Results", "Other"] and second.rows == [["1", ""]]
    with pytest.raises(LookupError):
        first.column("nope")
    with pytest.raises(ValueError):
        charts.number("n/a")
    with pytest.raises(LookupError):
        list(charts.find([first, second], "Missing", "a"))


def test_charts_are_drawn_from_the_recorded_results() -> None:
    pytest.importorskip("matplotlib")  # the docs extra; CI's docs session builds them all
    charts = hook("bench_charts").render_all()
    assert set(charts) == {"framing.svg", "echo.svg", "client.svg"}
    for svg in charts.values():
        assert svg.startswith(b"<?xml") and b"linechat" in svg


def test_sphinx_roles_become_plain_code() -> None:
    roles = hook("sphinx_roles")
    html = ":class:<code>LineFramer</code> and :meth:<code>~linechat.LineFramer.feed</code>"
    assert roles.strip_roles(html) == "<code>LineFramer</code> and <code>feed</code>"
