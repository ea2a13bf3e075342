"""Coverage-guided fuzzing of the smtp-sink's command parser with atheris.

    .venv/bin/python tests/fuzz/fuzz_smtp_commands.py -max_total_time=60

The first input byte picks a verb to start the line with (so that every run
reaches a command's own parser); the rest is the line. Any line must give a
command (and MAIL/RCPT/HELO values) or an SmtpError whose reply is one
well-formed SMTP reply line; an accepted address never holds a byte that
could break a header (CR, LF, any control byte) nor a stray bracket.
"""

from __future__ import annotations

import importlib
import re

from linechat.services.smtp_sink.commands import (
    SmtpError,
    parse_command,
    parse_helo,
    parse_mail,
    parse_rcpt,
)

REPLY = re.compile(rb"[245]\d\d [245]\.\d{1,3}\.\d{1,3} [\x20-\x7e]+")
CONTROL = re.compile(rb"[\x00-\x1f\x7f]")


def check_reply(reply: bytes) -> None:
    if REPLY.fullmatch(reply) is None:
        raise AssertionError(f"malformed reply {reply!r}")


STARTS = [b"", b"MAIL FROM:<", b"RCPT TO:<", b"EHLO ", b"HELO ", b"MAIL ", b"RCPT ", b"mail from: "]


def one_input(data: bytes) -> None:
    if not data:
        return
    data = STARTS[data[0] % len(STARTS)] + data[1:]
    try:
        command = parse_command(data)
    except SmtpError as error:
        check_reply(error.reply)
        return
    if CONTROL.search(command.verb + command.arg):
        raise AssertionError("a control byte got through")
    try:
        if command.verb in (b"HELO", b"EHLO"):
            parse_helo(command.arg, command.verb)
        elif command.verb == b"MAIL":
            mail = parse_mail(command.arg)
            if mail.size is not None and mail.size < 0:
                raise AssertionError("negative SIZE")
            if not mail.smtputf8 and not mail.address.isascii():
                raise AssertionError("non-ASCII address without SMTPUTF8")
            if (b"<" in mail.address or b">" in mail.address) and b'"' not in mail.address:
                raise AssertionError(f"bracket in address {mail.address!r}")
        elif command.verb == b"RCPT":
            address = parse_rcpt(command.arg, smtputf8=bool(data[:1]) and data[0] & 1 == 1)
            if not address:
                raise AssertionError("empty recipient accepted")
    except SmtpError as error:
        check_reply(error.reply)


def main() -> None:
    # tests/fuzz/fuzzsupport.py, beside this file; it needs atheris (the fuzz extra).
    importlib.import_module("fuzzsupport").fuzz(one_input)


if __name__ == "__main__":
    main()
