"""Coverage-guided fuzzing of the smtp-sink's session and DATA reader.

    .venv/bin/python tests/fuzz/fuzz_smtp_session.py -max_total_time=60

The input describes a client's byte stream: the first byte picks the chunk
size; each later byte under 0x80 is itself, each byte from 0x80 up stands for
one of the SMTP fragments below (commands, ends of data, bare line ends), so
that short inputs reach deep states. The stream is driven through a strict
CRLF framer and the session exactly as the protocol does. Whatever comes:
every reply is well-formed, stored text never holds a bare CR or LF, never
exceeds the size limit, and a message is stored only after a line holding
only "." (CRLF.CRLF).
"""

from __future__ import annotations

import importlib
import re

from linechat.errors import LineTooLong
from linechat.framing import LineFramer
from linechat.services.smtp_sink.session import (
    CLOSED,
    COMMAND,
    DATA,
    STARTTLS,
    Session,
    SessionConfig,
)

CONFIG = SessionConfig(
    hostname=b"fuzz.test", max_message_size=300, max_recipients=3, starttls=True, error_limit=50
)
REPLY_LINE = re.compile(rb"[2-5]\d\d[ -][\x20-\x7e]*")


def check(reply: bytes) -> None:
    """One or more replies: each line ``NNN-text`` (more follow) or ``NNN text`` (last)."""
    continued: bytes | None = None
    for line in reply.split(b"\r\n"):
        if REPLY_LINE.fullmatch(line) is None:
            raise AssertionError(f"bad reply line {line!r}")
        if continued is not None and line[:3] != continued:
            raise AssertionError(f"continuation with another code: {line!r}")
        continued = line[:3] if line[3:4] == b"-" else None
    if continued is not None:
        raise AssertionError(f"reply ends on a continuation line: {reply!r}")


TOKENS = [
    b"EHLO c\r\n",
    b"HELO c\r\n",
    b"MAIL FROM:<a@b.c>\r\n",
    b"MAIL FROM:<> SIZE=200 BODY=8BITMIME\r\n",
    b"MAIL FROM:<\xc3\xa9@b.c> SMTPUTF8\r\n",
    b"RCPT TO:<x@y.z>\r\n",
    b"DATA\r\n",
    b".\r\n",
    b"\r\n.\r\n",
    b"..",
    b"\r\n",
    b"\n",
    b"\r",
    b"\n.\r\n",
    b"\r.\r",
    b"RSET\r\n",
    b"STARTTLS\r\n",
    b"NOOP\r\n",
    b"VRFY x\r\n",
    b"QUIT\r\n",
    b"x" * 60,
    b"\xff\x00",
]


def stream_of(data: bytes) -> bytes:
    return b"".join(TOKENS[byte % len(TOKENS)] if byte >= 0x80 else bytes([byte]) for byte in data)


def one_input(data: bytes) -> None:
    if not data:
        return
    step, stream = data[0] % 64 + 1, stream_of(data[1:])
    framer = LineFramer(max_line_length=120)
    session = Session(CONFIG)
    stored: list[bytes] = []
    text = b""
    for start in range(0, len(stream), step):
        try:
            lines = framer.feed(stream[start : start + step])
        except LineTooLong as exc:
            lines = exc.lines
            framer.resync()
            too_long = True
        else:
            too_long = False
        index = 0
        while index < len(lines) and session.mode in (COMMAND, DATA):
            if session.mode == COMMAND:
                check(session.command(lines[index]))
                index += 1
                if session.mode == DATA:
                    text = b""
                elif session.mode == STARTTLS:
                    session.tls_started()
                continue
            piece, index = session.data(lines, index)
            text += piece
            if b"\n" in text.replace(b"\r\n", b"") or b"\r" in text.replace(b"\r\n", b""):
                raise AssertionError("bare CR or LF in stored text")
            if len(text) > CONFIG.max_message_size:
                raise AssertionError("text over the size limit")
            if session.mode == COMMAND:
                reply = session.end_of_data()
                if reply is None:
                    stored.append(text)
                    reply = session.delivered(b"X")
                check(reply)
        if too_long and session.mode in (COMMAND, DATA):
            reply = session.line_too_long()
            if reply is not None:
                check(reply)
        if session.mode == CLOSED:
            return
    if stored and b"\r\n.\r\n" not in b"\r\n" + stream:
        raise AssertionError("a message was stored without CRLF.CRLF")


def main() -> None:
    # tests/fuzz/fuzzsupport.py, beside this file; it needs atheris (the fuzz extra).
    importlib.import_module("fuzzsupport").fuzz(one_input)


if __name__ == "__main__":
    main()
