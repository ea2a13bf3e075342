"""mkdocs hook: the command-line reference, rendered from the argparse parsers at build time.

A page holding the marker ``<!-- linechat:cli-reference -->`` gets, in its
place, every subcommand of :func:`linechat.cli.build_parser` (usage,
description, each argument with its help, default and choices) and every
built-in service of ``linechat serve`` with its options. Nothing is copied
by hand, so the page cannot drift from the code: a flag added to a parser
appears at the next build. Each flag has its own heading (and anchor, e.g.
``cli.md#serve-tls-cert``), so the site's search finds it directly.
"""

from __future__ import annotations

import argparse
import importlib
import re
from pathlib import Path
from typing import Any

MARKER = "<!-- linechat:cli-reference -->"
#: The services' own pages, linked from their entries when they exist.
PAGES = Path(__file__).resolve().parents[1] / "services"


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render())


def render() -> str:
    """The whole reference as Markdown."""
    from linechat import __version__
    from linechat.cli import build_parser

    parser = build_parser()
    parts = [
        f"Generated from linechat {__version__}'s parsers when the site was built.\n",
        "```text\n" + parser.format_usage().strip() + "\n```\n",
        f"{parser.description}\n",
        "`linechat --version` prints the version; `python -m linechat` is the same "
        "command as `linechat`.\n",
    ]
    for name, sub in subcommands(parser).items():
        parts.append(render_command(name, sub))
    parts.append(render_services())
    return "\n".join(parts)


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Each subcommand's parser; ``serve``'s is the runner's own (its stub only names it)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            choices: dict[str, argparse.ArgumentParser] = dict(action.choices)
            if "serve" in choices:
                # `linechat serve` parses its flags in two steps (cli/serve.py), so
                # the subparser registered in build_parser() has no arguments.
                from linechat.cli.serve import runner_parser

                choices["serve"] = runner_parser(add_help=True)
            return choices
    return {}


def anchor(command: str, action: argparse.Action) -> str:
    name = action.option_strings[-1] if action.option_strings else action.dest
    return f"{command}-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def signature(action: argparse.Action, formatter: argparse.HelpFormatter) -> str:
    if not action.option_strings:
        return formatter._metavar_formatter(action, action.dest.upper())(1)[0]
    if action.nargs == 0:
        return ", ".join(action.option_strings)
    metavar = formatter._format_args(action, action.dest.upper())
    return ", ".join(f"{option} {metavar}" for option in action.option_strings)


def render_command(name: str, sub: argparse.ArgumentParser) -> str:
    formatter = sub._get_formatter()
    usage = sub.format_usage().strip().removeprefix("usage: ")
    lines = [f"## linechat {name} {{#{name}}}\n", f"```text\n{usage}\n```\n"]
    if sub.description:
        lines.append(f"{sub.description}\n")
    if sub.epilog:
        lines.append(f"```text\n{sub.epilog}\n```\n")
    for group in sub._action_groups:
        actions = [
            action
            for action in group._group_actions
            if action.help != argparse.SUPPRESS and not isinstance(action, argparse._HelpAction)
        ]
        if not actions:
            continue
        title = {"positional arguments": "Arguments", "options": "Options"}.get(
            group.title or "", group.title or "Options"
        )
        lines.append(f"### {title} {{#{name}-{title.lower().replace(' ', '-')}}}\n")
        for action in actions:
            lines.append(render_action(name, action, formatter))
    return "\n".join(lines)


def render_action(command: str, action: argparse.Action, formatter: argparse.HelpFormatter) -> str:
    text = formatter._expand_help(action) if action.help else ""
    facts = []
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        facts.append("one of " + ", ".join(f"`{choice}`" for choice in action.choices))
    default = action.default
    if default not in (None, False, argparse.SUPPRESS, []) and "default" not in text:
        facts.append(f"default `{default}`")
    if isinstance(action, argparse._AppendAction):
        facts.append("repeatable")
    if action.required and action.option_strings:
        facts.append("required")
    body = sentence(text)
    if facts:
        body += " " + "; ".join(facts).capitalize() + "."
    heading = signature(action, formatter)
    return f"#### `{heading}` {{#{anchor(command, action)}}}\n\n{body.strip()}\n"


def sentence(text: str) -> str:
    """Help text as a sentence: capital first letter, one full stop."""
    text = text.strip().rstrip(".")
    return text[:1].upper() + text[1:] + "." if text else ""


def render_services() -> str:
    """The built-in services ``linechat serve`` knows by name, with their own options."""
    from linechat.service import Service
    from linechat.services import BUILTIN

    lines = [
        "## Built-in services {#services}\n",
        "What `linechat serve` runs by name. Each service's own options are flags "
        "of `linechat serve` too.\n",
    ]
    for name, target in sorted(BUILTIN.items()):
        module, _, attr = target.partition(":")
        service = getattr(importlib.import_module(module), attr)
        lines.append(f"### {name} {{#service-{name}}}\n")
        if (PAGES / f"{name}.md").is_file():
            lines.append(f"Its page: [services/{name}.md](../services/{name}.md).\n")
        if isinstance(service, Service):
            lines.append(f"{service.summary}.\n")
            if service.defaults:
                defaults = ", ".join(f"`{k}={v!r}`" for k, v in sorted(service.defaults.items()))
                lines.append(f"Runner defaults: {defaults}.\n")
            for option in service.options:
                metavar = "" if option.flag else f" {option.metavar or option.key.upper()}"
                facts = []
                if option.default is not None and not option.flag:
                    facts.append(f"default `{option.default}`")
                if option.required:
                    facts.append("required")
                if option.multiple:
                    facts.append("repeatable")
                extra = (" " + "; ".join(facts).capitalize() + ".") if facts else ""
                lines.append(
                    f"#### `--{option.name}{metavar}` {{#service-{name}-{option.name}}}\n\n"
                    f"{sentence(option.help)}{extra}\n"
                )
        else:
            lines.append(f"`{target}`\n")
    return "\n".join(lines)
