"""Coverage-guided fuzzing of the chat's IRC message parser with atheris.

    .venv/bin/python tests/fuzz/fuzz_irc.py -max_total_time=60

Each input is split into lines at LF, as the framer would (and as the Redis
backplane splits a batch of events). Each line must decode as an event or be
skipped, and any line must
parse to a message (or None) or raise IRCParseError; a parsed message has
an upper-case command or a numeric, at most 15 parameters, and formatting it
again gives a line that parses to the same message.
"""

from __future__ import annotations

import importlib

from linechat.services.chat.irc import (
    MAX_PARAMS,
    IRCParseError,
    casefold,
    fit_text,
    format_message,
    parse,
    valid_channel,
    valid_nick,
)
from linechat.services.chat.redis_backplane import FIELDS, decode_event, encode_event


def check_event(raw: bytes) -> None:
    """The backplane's events (what other servers publish) decode or are skipped."""
    event = decode_event(raw)
    if event is None:
        return
    kind, server_id, fields = event
    if len(fields) != FIELDS[kind]:
        raise AssertionError("wrong field count")
    if encode_event(kind, server_id, *fields) != raw:
        raise AssertionError("event does not re-encode to itself")


def one_input(data: bytes) -> None:
    for line in data.split(b"\n"):
        check_event(line)
        line = line.removesuffix(b"\r")
        try:
            message = parse(line)
        except IRCParseError as exc:
            if not exc.reason or len(exc.command) > 32:
                raise AssertionError("an error without a reason, or an unbounded command") from exc
            continue
        if message is None:
            continue
        if len(message.params) > MAX_PARAMS:
            raise AssertionError("too many parameters")
        if not (message.command.isalpha() or message.command.isdigit()):
            raise AssertionError(f"bad command {message.command!r}")
        middle, last = message.params[:-1], message.params[-1:]
        if all(p and b" " not in p and not p.startswith(b":") for p in middle) and (
            message.prefix is None or (message.prefix and b" " not in message.prefix)
        ):
            again = parse(format_message(message.prefix, message.command, *middle, *last))
            if again != message:
                raise AssertionError(f"round trip changed {message!r} into {again!r}")
        for param in message.params:
            if valid_nick(param) and casefold(casefold(param)) != casefold(param):
                raise AssertionError("casefold is not idempotent")
            valid_channel(param)
            if len(fit_text(param, 7)) > 7:
                raise AssertionError("fit_text overran")


def main() -> None:
    # tests/fuzz/fuzzsupport.py, beside this file; it needs atheris (the fuzz extra).
    importlib.import_module("fuzzsupport").fuzz(one_input)


if __name__ == "__main__":
    main()
