"""One SMTP session's state machine (RFC 5321, receiving side). Sans-I/O.

Lines go in, replies come out; no sockets, no files, no asyncio. The caller
(the protocol) reads :attr:`Session.mode` after each call to learn what to do
besides sending the reply: switch to message text (``DATA``), upgrade to TLS
(``STARTTLS``), or close (``QUIT``, too many errors). Storing a message is the
caller's job too: :meth:`Session.end_of_data` says whether to store it, and
:meth:`Session.delivered` / :meth:`Session.not_delivered` give the reply.

Every reply is one of the fixed replies below, with an RFC 3463 enhanced
status code; nothing the client sent is echoed back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .commands import (
    MailFrom,
    SmtpError,
    parse_command,
    parse_helo,
    parse_mail,
    parse_rcpt,
)
from .data import DataReader, too_big

__all__ = ["CLOSED", "COMMAND", "DATA", "STARTTLS", "Session", "SessionConfig"]

#: What the session expects next (:attr:`Session.mode`).
COMMAND = 0  # command lines
DATA = 1  # message text, until the end line: feed it to Session.data()
STARTTLS = 2  # the TLS handshake: drop every byte until Session.tls_started()
CLOSED = 3  # nothing: send the reply, then close

OK = b"250 2.0.0 Ok"
MAIL_OK = b"250 2.1.0 Ok"
RCPT_OK = b"250 2.1.5 Ok"
GO_AHEAD = b"354 End data with <CR><LF>.<CR><LF>"
VRFY = b"252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery"
BYE = b"221 2.0.0 Bye"
TLS_GO_AHEAD = b"220 2.0.0 Ready to start TLS"
UNKNOWN = b"500 5.5.2 Error: command not recognized"
NOT_IMPLEMENTED = b"502 5.5.1 Error: command not implemented"
HELO_FIRST = b"503 5.5.1 Error: send HELO/EHLO first"
NESTED_MAIL = b"503 5.5.1 Error: nested MAIL command"
NEED_MAIL = b"503 5.5.1 Error: need MAIL command"
NEED_RCPT = b"503 5.5.1 Error: need RCPT command"
TLS_ACTIVE = b"503 5.5.1 Error: TLS already active"
TOO_MANY_RECIPIENTS = b"452 4.5.3 Error: too many recipients"
NOT_STORED = b"451 4.3.0 Error: the message could not be stored; try again later"
HTTP = b"554 5.7.0 Error: HTTP request on an SMTP port; closing"

#: Verbs that RFC 5321 and its extensions define but this sink does not offer.
UNIMPLEMENTED = frozenset({b"EXPN", b"HELP", b"TURN", b"ETRN", b"AUTH", b"BDAT", b"ATRN"})
#: A browser made to post to this port (cross-protocol attack): close at once.
HTTP_VERBS = frozenset({b"GET", b"POST", b"CONNECT", b"HEAD", b"PUT", b"OPTIONS"})


def _usage(verb: bytes) -> bytes:
    return b"501 5.5.4 Syntax: " + verb + b" (no parameters)"


@dataclass(frozen=True)
class SessionConfig:
    """What every session of one server shares."""

    hostname: bytes
    max_message_size: int
    max_recipients: int = 100
    #: STARTTLS is offered (the server has a certificate).
    starttls: bool = False
    #: After this many error replies in one session: ``421`` and close.
    error_limit: int = 20


class Session:
    """The state of one SMTP conversation; see the module docstring for the contract."""

    __slots__ = (
        "config",
        "errors",
        "esmtp",
        "helo",
        "mail",
        "mode",
        "rcpts",
        "reader",
        "tls",
    )

    def __init__(self, config: SessionConfig, *, tls: bool = False) -> None:
        self.config = config
        self.mode = COMMAND
        #: The client's name from HELO/EHLO; None until it greets.
        self.helo: bytes | None = None
        #: It greeted with EHLO (the Received header says ESMTP).
        self.esmtp = False
        #: The session runs over TLS.
        self.tls = tls
        #: The current transaction: its MAIL FROM, its recipients, its text.
        self.mail: MailFrom | None = None
        self.rcpts: list[bytes] = []
        self.reader: DataReader | None = None
        self.errors = 0

    def greeting(self) -> bytes:
        return b"220 " + self.config.hostname + b" ESMTP linechat smtp-sink"

    def ehlo_reply(self) -> bytes:
        config = self.config
        lines = [
            config.hostname,
            b"PIPELINING",
            b"8BITMIME",
            b"SIZE %d" % config.max_message_size,
        ]
        if config.starttls and not self.tls:
            lines.append(b"STARTTLS")
        lines += [b"SMTPUTF8", b"ENHANCEDSTATUSCODES"]
        return b"\r\n".join(b"250-" + line for line in lines[:-1]) + b"\r\n250 " + lines[-1]

    # -- commands ------------------------------------------------------------

    def command(self, line: bytes) -> bytes:
        """Handle one command line; return its reply (lines joined by CRLF, no final CRLF)."""
        if self.mode != COMMAND:
            raise ValueError("not reading commands")
        try:
            command = parse_command(line)
            verb, arg = command.verb, command.arg
            handler = _HANDLERS.get(verb)
            if handler is not None:
                return handler(self, verb, arg)
            if verb in UNIMPLEMENTED:
                raise SmtpError(NOT_IMPLEMENTED)
            if verb in HTTP_VERBS:
                self.mode = CLOSED
                return HTTP
            raise SmtpError(UNKNOWN)
        except SmtpError as error:
            return self.error(error.reply)

    def error(self, reply: bytes) -> bytes:
        """Count an error reply; past the limit, add ``421`` and close."""
        self.errors += 1
        if self.errors < self.config.error_limit:
            return reply
        self.mode = CLOSED
        return reply + b"\r\n421 4.7.0 " + self.config.hostname + b" Error: too many errors"

    def line_too_long(self) -> bytes | None:
        """The framer refused an over-long line; the reply, or None inside message text."""
        if self.mode == DATA and self.reader is not None:
            self.reader.line_too_long()
            return None
        return self.error(b"500 5.5.2 Error: line too long")

    def timeout(self) -> bytes:
        """The reply before an idle close (RFC 5321 4.5.3.2)."""
        self.mode = CLOSED
        return b"421 4.4.2 " + self.config.hostname + b" Error: timeout exceeded"

    def reset(self) -> None:
        """Forget the current transaction (RSET, HELO/EHLO, end of DATA, STARTTLS)."""
        self.mail = None
        self.rcpts = []
        self.reader = None

    def _helo(self, verb: bytes, arg: bytes) -> bytes:
        self.helo = parse_helo(arg, verb)
        self.reset()
        if verb == b"EHLO":
            self.esmtp = True
            return self.ehlo_reply()
        self.esmtp = False
        return b"250 " + self.config.hostname

    def _mail(self, verb: bytes, arg: bytes) -> bytes:
        if self.helo is None:
            raise SmtpError(HELO_FIRST)
        if self.mail is not None:
            raise SmtpError(NESTED_MAIL)
        mail = parse_mail(arg)
        if mail.size is not None and mail.size > self.config.max_message_size:
            return too_big(self.config.max_message_size)
        self.mail = mail
        return MAIL_OK

    def _rcpt(self, verb: bytes, arg: bytes) -> bytes:
        if self.mail is None:
            raise SmtpError(NEED_MAIL)
        address = parse_rcpt(arg, self.mail.smtputf8)
        if len(self.rcpts) >= self.config.max_recipients:
            return TOO_MANY_RECIPIENTS
        self.rcpts.append(address)
        return RCPT_OK

    def _data(self, verb: bytes, arg: bytes) -> bytes:
        if arg:
            raise SmtpError(_usage(verb))
        if self.mail is None:
            raise SmtpError(NEED_MAIL)
        if not self.rcpts:
            raise SmtpError(NEED_RCPT)
        self.reader = DataReader(self.config.max_message_size)
        self.mode = DATA
        return GO_AHEAD

    def _rset(self, verb: bytes, arg: bytes) -> bytes:
        if arg:
            raise SmtpError(_usage(verb))
        self.reset()
        return OK

    def _noop(self, verb: bytes, arg: bytes) -> bytes:
        return OK

    def _vrfy(self, verb: bytes, arg: bytes) -> bytes:
        if not arg:
            raise SmtpError(b"501 5.5.4 Syntax: VRFY address")
        return VRFY

    def _quit(self, verb: bytes, arg: bytes) -> bytes:
        self.mode = CLOSED
        return BYE

    def _starttls(self, verb: bytes, arg: bytes) -> bytes:
        if self.tls:
            raise SmtpError(TLS_ACTIVE)
        if not self.config.starttls:
            raise SmtpError(NOT_IMPLEMENTED)
        if arg:
            raise SmtpError(_usage(verb))
        self.mode = STARTTLS
        return TLS_GO_AHEAD

    # -- message text --------------------------------------------------------

    def data(self, lines: Sequence[bytes], start: int = 0) -> tuple[bytes, int]:
        """Feed message text (mode ``DATA``): the bytes to store, the next line's index.

        When the end line was among them, :attr:`mode` is ``COMMAND`` again
        and :meth:`end_of_data` must be called before the next command.
        """
        reader = self.reader
        if self.mode != DATA or reader is None:
            raise ValueError("not reading message text")
        text, index = reader.feed(lines, start)
        if reader.done:
            self.mode = COMMAND
        return text, index

    @property
    def refused(self) -> bool:
        """The message being read will be refused: store nothing more of it."""
        return self.reader is not None and self.reader.refusal is not None

    def end_of_data(self) -> bytes | None:
        """The text has ended: the refusal reply, or None if the caller must store it."""
        reader = self.reader
        if reader is None or not reader.done:
            raise ValueError("the message text has not ended")
        if reader.refusal is not None:
            self.reset()
            return reader.refusal
        return None

    def delivered(self, ident: bytes) -> bytes:
        """The caller stored the message as ``ident``: the final reply."""
        self.reset()
        return b"250 2.0.0 Ok: queued as " + ident

    def not_delivered(self) -> bytes:
        """The caller could not store the message: a temporary failure."""
        self.reset()
        return NOT_STORED

    def refuse(self, reply: bytes) -> None:
        """Refuse the message being read (the caller failed to store its text)."""
        if self.reader is not None:
            self.reader.refuse(reply)

    # -- TLS -----------------------------------------------------------------

    def tls_started(self) -> None:
        """The handshake succeeded: start again from nothing, as RFC 3207 requires."""
        self.tls = True
        self.helo = None
        self.esmtp = False
        self.reset()
        self.mode = COMMAND


_HANDLERS = {
    b"HELO": Session._helo,
    b"EHLO": Session._helo,
    b"MAIL": Session._mail,
    b"RCPT": Session._rcpt,
    b"DATA": Session._data,
    b"RSET": Session._rset,
    b"NOOP": Session._noop,
    b"VRFY": Session._vrfy,
    b"QUIT": Session._quit,
    b"STARTTLS": Session._starttls,
}
