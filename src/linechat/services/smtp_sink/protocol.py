"""The SMTP sink on the protocol layer: framer lines in, session replies out.

Everything SMTP is decided by the sans-I/O :class:`~.session.Session`; this
class only moves lines to it, replies to the peer, message text to the
Maildir, and runs the STARTTLS handshake. Lines are handled a chunk at a time
(:meth:`lines_received`): pipelined commands are answered in order and leave
in one write, and a message's text is taken in whole batches.

A finished message is committed (written, closed, renamed into ``new/``) in
a worker thread: a file system that takes milliseconds to create a file
holds up only this client, whose next lines wait, in order, until the
commit's reply has been sent. The text of a large message is written to its
file in the loop as it arrives, a read's worth at a time (see
:mod:`.maildir`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from ssl import SSLContext
from typing import Any, ClassVar, cast

from ...errors import ConnectionClosed, LineTooLong, ProtocolError
from ...framing import LineFramer
from ...protocol import LineProtocol
from .maildir import Delivery, Maildir
from .session import CLOSED, COMMAND, DATA, NOT_STORED, STARTTLS, Session, SessionConfig
from .trace import client_description, trace_headers

__all__ = ["SinkConfig", "SmtpSinkProtocol"]

log = logging.getLogger("linechat.smtp_sink")

#: How long a client has to finish its TLS handshake after STARTTLS.
TLS_HANDSHAKE_TIMEOUT = 10.0


@dataclass(frozen=True)
class SinkConfig:
    """What every connection of one smtp-sink server shares."""

    session: SessionConfig
    maildir: Maildir
    #: For STARTTLS; None when the server has no certificate.
    tls_context: SSLContext | None = None


class SmtpSinkProtocol(LineProtocol):
    """One SMTP client. Subclassed with a :class:`SinkConfig` by the service's build."""

    __slots__ = (
        "_at_eof",
        "_backlog",
        "_client",
        "_delivery",
        "_eof_deferred",
        "_handshake",
        "_storing",
        "_tls",
        "session",
    )

    config: ClassVar[SinkConfig]
    #: Replies written after a commit (outside a chunk) leave in one write.
    coalesce_writes = True
    #: Commit in a worker thread (False: in the event loop; bench/smtp.py compares).
    commit_in_thread: ClassVar[bool] = True

    def __init__(self, **options: Any) -> None:
        # SMTP lines end in CRLF and nothing else: a lenient framer (bare LF)
        # would let a message be smuggled past the end of data.
        options["delimiter"] = b"\r\n"
        options["lenient"] = False
        super().__init__(**options)
        self.session = Session(self.config.session)
        self._delivery: Delivery | None = None
        self._client = b""
        self._tls: str | None = None  # the TLS session, as the Received header says it
        self._at_eof = False
        self._handshake: asyncio.Task[None] | None = None
        #: A commit running in a thread; lines that come meanwhile wait in
        #: ``_backlog`` (None stands for an over-long line), in order.
        self._storing: asyncio.Future[str] | None = None
        self._backlog: list[bytes | None] = []
        self._eof_deferred = False

    # -- connection ----------------------------------------------------------

    def connection_started(self) -> None:
        via = None
        header = self.proxy_header
        if header is not None and getattr(header, "peer", None) is not None:
            assert self.transport is not None
            via = self.transport.get_extra_info("peername")
        self._client = client_description(self.peer, via)
        self.write_line(self.session.greeting())

    def connection_ended(self, exc: BaseException | None) -> None:
        self._drop_message()

    def eof_received(self) -> bool:
        if self._storing is not None:  # finished once the commit is answered
            self._eof_deferred = True
            return True
        # A line left unterminated at end of stream is neither a command nor
        # the end of a message (that is CRLF.CRLF only): it is dropped.
        self._at_eof = True
        return super().eof_received()

    def idle_timeout_expired(self) -> None:
        if self.session.mode != STARTTLS:  # no plaintext in the middle of a handshake
            self.write_line(self.session.timeout())
        super().idle_timeout_expired()

    def line_too_long(self, exc: LineTooLong) -> None:
        session = self.session
        if session.mode == STARTTLS:
            self.framer.resync()
            return
        if self._storing is not None:
            self._backlog.append(None)  # answered in its turn, after the commit
            self.framer.resync()
            return
        reply = session.line_too_long()
        if reply is not None:
            self.write_line(reply)
        elif session.refused:
            self._drop_message()
        if session.mode == CLOSED:
            self.close()
        else:
            self.framer.resync()

    # -- lines ---------------------------------------------------------------

    def lines_received(self, lines: list[bytes]) -> None:
        if self._at_eof:
            return
        if self._storing is not None:
            self._backlog += lines
            return
        session = self.session
        index, count = 0, len(lines)
        while index < count:
            mode = session.mode
            if mode == COMMAND:
                self.write_line(session.command(lines[index]))
                index += 1
                mode = session.mode
                if mode == DATA:
                    self._begin_message()
                elif mode == CLOSED:
                    self.close()
                    return
                elif mode == STARTTLS:
                    self._start_tls()  # the lines after it are dropped (CVE-2011-0411)
                    return
            elif mode == DATA:
                text, index = session.data(lines, index)
                if text and self._delivery is not None:
                    self._store(text)
                elif session.refused:
                    self._drop_message()
                if session.mode == COMMAND and self._end_message():
                    self._backlog[:0] = lines[index:]  # a commit is running: wait for it
                    return
            else:  # a TLS handshake is starting: every byte before it is dropped
                return

    def _replay(self) -> None:
        """Handle the lines that came during a commit, as they would have been."""
        while self._backlog and self._storing is None and not self.is_closing:
            backlog, self._backlog = self._backlog, []
            index = 0
            while index < len(backlog) and self._storing is None:
                end = index
                while end < len(backlog) and backlog[end] is not None:
                    end += 1
                lines = cast(list[bytes], backlog[index:end])
                index = end
                if lines:
                    self.lines_received(lines)
                    if self._storing is not None:  # it kept the rest of ``lines``
                        break
                elif self.session.mode in (COMMAND, DATA):  # an over-long line
                    self.line_too_long(LineTooLong(self.framer.max_line_length))
                    index += 1
                else:
                    index += 1
            self._backlog += backlog[index:]

    # -- messages ------------------------------------------------------------

    def _begin_message(self) -> None:
        session = self.session
        config = self.config
        mail = session.mail
        assert mail is not None
        maildir = config.maildir
        ident = maildir.unique_id()
        head = trace_headers(
            helo=session.helo,
            client=self._client,
            hostname=config.session.hostname,
            esmtp=session.esmtp,
            tls=self._tls,
            smtputf8=mail.smtputf8,
            ident=ident.encode(),
            mail_from=mail.address,
            rcpts=session.rcpts,
        )
        self._delivery = maildir.begin(ident, head)

    def _store(self, text: bytes) -> None:
        delivery = self._delivery
        assert delivery is not None
        try:
            delivery.write(text)
        except OSError as exc:
            log.warning("cannot write a message to %s: %s", self.config.maildir.path, exc)
            self.session.refuse(NOT_STORED)
            self._drop_message()

    def _end_message(self) -> bool:
        """The text has ended: answer a refusal, or start the commit. True if started."""
        session = self.session
        reply = session.end_of_data()
        delivery, self._delivery = self._delivery, None
        if reply is None and delivery is not None and not self.commit_in_thread:
            try:
                delivery.commit()
            except OSError as exc:
                log.warning("cannot store a message in %s: %s", self.config.maildir.path, exc)
                self._drop(delivery)
                reply = session.not_delivered()
            else:
                reply = session.delivered(delivery.ident.encode())
            self.write_line(reply)
            return False
        if reply is None and delivery is not None:
            loop = asyncio.get_running_loop()
            self._storing = loop.run_in_executor(None, delivery.commit)
            self._storing.add_done_callback(lambda done: self._stored(done, delivery))
            if self.transport is not None and not self.transport.is_closing():
                self.transport.pause_reading()  # the backlog stays small
            return True
        if delivery is not None:
            delivery.discard()
        self.write_line(reply or session.not_delivered())
        return False

    def _stored(self, done: asyncio.Future[str], delivery: Delivery) -> None:
        """The commit finished: answer it, then go on with what came meanwhile."""
        self._storing = None
        error = done.exception()
        if error is not None:
            log.warning("cannot store a message in %s: %s", self.config.maildir.path, error)
            self._drop(delivery)
            reply = self.session.not_delivered()
        else:
            reply = self.session.delivered(delivery.ident.encode())
        if not self.is_connected:
            return
        self.write_line(reply)
        transport = self.transport
        # Read again, unless replies are backed up (then flow control resumes it).
        if transport is not None and transport.get_write_buffer_size() < self.write_high_water:
            transport.resume_reading()
        self._replay()
        if self._eof_deferred and self._storing is None:
            self._eof_deferred = False
            self._at_eof = True
            if not super().eof_received() and self.transport is not None:
                self.transport.close()  # as asyncio would have, once replies are sent

    def _drop_message(self) -> None:
        delivery, self._delivery = self._delivery, None
        if delivery is not None:
            self._drop(delivery)

    def _drop(self, delivery: Delivery) -> None:
        try:
            delivery.discard()
        except OSError as exc:
            log.warning("cannot remove a message from %s: %s", self.config.maildir.path, exc)

    # -- STARTTLS ------------------------------------------------------------

    def _start_tls(self) -> None:
        # Read nothing more in plaintext: the handshake takes the socket from here.
        if self.transport is not None:
            self.transport.pause_reading()
        self._handshake = asyncio.get_running_loop().create_task(self._upgrade())

    async def _upgrade(self) -> None:
        context = self.config.tls_context
        assert context is not None
        # Whatever the client sent after STARTTLS is dropped with the old framer.
        old = self.framer
        self.framer = LineFramer(b"\r\n", max_line_length=old.max_line_length)
        try:
            await self.start_tls(context, server_side=True, handshake_timeout=TLS_HANDSHAKE_TIMEOUT)
        except (OSError, ConnectionClosed, ProtocolError) as exc:
            log.debug("%s: TLS handshake failed: %s", self._client.decode(), exc)
            if self.close_exception is None:
                self.close_exception = exc
            self.abort()
            return
        finally:
            self._handshake = None
        assert self.transport is not None
        ssl_object = self.transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            cipher = ssl_object.cipher()
            name = cipher[0] if cipher else "unknown"
            self._tls = f"{ssl_object.version()} with cipher {name}"
        else:
            self._tls = "TLS"
        self.session.tls_started()
