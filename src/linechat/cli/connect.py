"""``linechat connect``: an interactive client for any line protocol.

On a terminal it is a line editor; with a pipe or file on stdin it sends each
line and prints every answer, for scripts; with ``--dialect`` it knows when
a reply is complete and sends in lockstep. The exit statuses are in EPILOG.
"""

from __future__ import annotations

import argparse
import os

# Light imports only: pipe mode on a plain connection never imports asyncio
# (see _plain and linechat.client.plain); the rest is imported where used.
from ..client.basics import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    STARTTLS_PROTOCOLS,
    ConnectError,
    describe_error,
    format_address,
)
from .common import (
    CliError,
    RawDescriptionHelpFormatter,
    add_loop_option,
    non_negative_float,
    port_number,
)
from .fastpath import DEFAULT_CONNECT_TIMEOUT, DEFAULT_WAIT, run_pipe, say

TYPE_CHECKING = False  # not typing's: importing typing costs start-up time
if TYPE_CHECKING:
    from typing import Any

    from ..client.ends import Ending
    from ..client.expect import Expected
    from ..client.lockstep import LockstepResult
    from ..client.session import ClientProtocol, ConnectOptions
    from ..client.transcript import Transcript
    from ..dialects.base import Dialect

__all__ = ["add_parser"]

DEFAULT_REPLY_TIMEOUT = 30.0
DIALECTS = ("line", "smtp", "pop3", "imap", "redis", "memcached", "irc")
EPILOG = """\
exit status:
  0    the exchange ended normally (with --dialect: every reply was ok)
  1    connection error: refused, unreachable, reset, TLS failure; with
       --dialect also the connection lost in the middle of a reply, a server
       breaking the dialect's rules, or the input ending inside a command
  2    bad usage
  3    an error reply (SMTP 4xx/5xx, POP3 -ERR, IMAP NO/BAD, Redis error,
       memcached ERROR/CLIENT_ERROR/SERVER_ERROR, IRC 4xx/5xx numeric or ERROR):
       the first one stops the script (after the protocol's quit command)
       unless --keep-going
  4    a reply did not complete within --reply-timeout
  5    --expect: a reply differed from the transcript
  130  interrupted (Ctrl-C)
"""


class UsageError(CliError):
    """Bad usage: exit status 2."""


def add_parser(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "connect",
        help="talk to a line server (SMTP, POP3, IMAP, Redis, memcached, linechat...)",
        description="Connect to a line server. On a terminal: a line editor, the server's "
        "lines shown above the prompt as they come (Ctrl-D: close our side and wait for the "
        "server; Ctrl-C: quit). With a pipe or file on stdin: each line is sent with CRLF, "
        "answers go to stdout; at end of input the client half-closes and prints until the "
        "server closes. With --dialect, pipe mode is lockstep: each line is sent once the "
        "reply to the previous one is complete.",
        epilog=EPILOG,
        formatter_class=RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "host", nargs="?", default=None, help=f"server host (default {DEFAULT_HOST})"
    )
    parser.add_argument(
        "port",
        nargs="?",
        type=service_port,
        default=None,
        help=f"port number or service name such as smtp (default {DEFAULT_PORT})",
    )
    parser.add_argument("--unix", metavar="PATH", help="connect to a Unix socket instead of TCP")
    tls = parser.add_argument_group("TLS")
    tls.add_argument("--tls", action="store_true", help="TLS from the first byte")
    tls.add_argument(
        "--starttls",
        choices=STARTTLS_PROTOCOLS,
        help="upgrade to TLS after the protocol's greeting and command (smtp: EHLO, "
        "STARTTLS; imap: a1 STARTTLS; pop3: STLS; plain: a STARTTLS line, any "
        "non-error answer)",
    )
    tls.add_argument("--cafile", metavar="FILE", help="trust these CA certificates (PEM)")
    tls.add_argument(
        "--insecure", action="store_true", help="do not verify the server's certificate"
    )
    tls.add_argument("--sni", metavar="NAME", help="server name to send and verify (default HOST)")
    tls.add_argument("--cert", metavar="FILE", help="client certificate chain (PEM)")
    tls.add_argument("--key", metavar="FILE", help="client private key (PEM; default: in --cert)")
    parser.add_argument(
        "--lf", action="store_true", help="end the lines sent with LF instead of CRLF"
    )
    parser.add_argument(
        "--wait",
        type=non_negative_float,
        default=DEFAULT_WAIT,
        metavar="SECONDS",
        help="after the end of input, close once the server has been silent this long "
        f"(default {DEFAULT_WAIT:g}; 0 waits until the server closes); with --dialect irc, "
        "the silence that ends the reply to a command without reply numerics",
    )
    parser.add_argument(
        "--connect-timeout",
        type=non_negative_float,
        default=DEFAULT_CONNECT_TIMEOUT,
        metavar="SECONDS",
        help=f"for the connection, TLS and STARTTLS (default {DEFAULT_CONNECT_TIMEOUT:g}; "
        "0: no limit)",
    )
    parser.add_argument(
        "--send-proxy",
        choices=["v1", "v2"],
        default=None,
        help="send a PROXY protocol header first, as HAProxy would (test a server behind one)",
    )
    parser.add_argument(
        "--proxy-source",
        type=proxy_address,
        default=None,
        metavar="ADDR:PORT",
        help="the client address the header announces (default: ours)",
    )
    parser.add_argument("--log", metavar="FILE", help="append a timestamped transcript to FILE")
    script = parser.add_argument_group("dialects (lockstep scripting)")
    script.add_argument(
        "--dialect",
        choices=DIALECTS,
        default=None,
        help="the protocol's reply rules: in pipe mode each input line is sent once the "
        "previous reply is complete; on a terminal, completion and error colours "
        "(default line: no rules, everything sent at once)",
    )
    script.add_argument(
        "--keep-going",
        action="store_true",
        help="send every line even after an error reply (exit status 3 if there was one)",
    )
    script.add_argument(
        "--reply-timeout",
        type=non_negative_float,
        default=DEFAULT_REPLY_TIMEOUT,
        metavar="SECONDS",
        help=f"a reply must complete this long after its command (default "
        f"{DEFAULT_REPLY_TIMEOUT:g}; 0: no limit); exit status 4 otherwise",
    )
    script.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per exchange (sent, reply, status, elapsed_ms)",
    )
    script.add_argument(
        "--expect",
        metavar="FILE",
        help="replay a --log transcript and compare each reply (exit status 5 and a diff "
        "at the first that differs; {{*}} in a received line matches any text)",
    )
    script.add_argument(
        "--unstuff", action="store_true", help="pop3: show multi-line replies dot-unstuffed"
    )
    script.add_argument(
        "--raw", action="store_true", help="redis: print values raw, like redis-cli --raw"
    )
    parser.add_argument(
        "--no-history",
        action="store_true",
        help="do not keep the line editor's history ($XDG_STATE_HOME/linechat/history)",
    )
    add_loop_option(
        parser,
        "in pipe mode on a plain connection none, asyncio-free and quicker to start; "
        "otherwise uvloop in pipe mode when installed",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="report the connection and STARTTLS on stderr"
    )
    parser.set_defaults(run=run)


def proxy_address(text: str) -> tuple[str, int]:
    """``1.2.3.4:5678`` or ``[2001:db8::1]:5678``."""
    import ipaddress  # here, not at start-up: most sessions never need it

    host, _, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not ADDR:PORT: {text!r}") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0-65535: {text!r}")
    return host, number


def service_port(text: str) -> int:
    """A port number, or a service name the system knows (``smtp``, ``imap``...)."""
    if text.isdigit():
        return port_number(text)
    import socket

    try:
        return socket.getservbyname(text, "tcp")
    except OSError:
        raise argparse.ArgumentTypeError(f"not a port number or service name: {text!r}") from None


def run(args: argparse.Namespace) -> int:
    transcript: Transcript | None = None
    try:
        _check_usage(args)
        # --expect reads the transcript, --json is for tools: lockstep even on a terminal.
        terminal = os.isatty(0) and os.isatty(1) and not (args.expect or args.json)
        if _plain(args, terminal):
            return _run_plain(args)
        import asyncio

        from .common import loop_factory

        options = _options(args)
        if args.log:
            from ..client.transcript import Transcript

            try:
                transcript = Transcript(args.log)
            except OSError as exc:
                raise UsageError(f"cannot open --log {args.log}: {exc.strerror}") from None
        loop = args.loop if args.loop != "auto" or not terminal else "asyncio"
        with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
            return runner.run(_session(args, options, terminal, transcript))
    except UsageError as exc:
        say(str(exc))
        return 2
    except (CliError, ConnectError) as exc:
        say(str(exc))
        return 1
    finally:
        if transcript is not None:
            transcript.close()


def _plain(args: argparse.Namespace, terminal: bool) -> bool:
    """Pipe mode on a plain connection: done without asyncio (it starts sooner).

    Pipe mode and lockstep (--dialect) both; anything more (TLS, STARTTLS, a
    PROXY header, --log, -v, a chosen --loop, a terminal on stdout, whose
    lines are escaped) takes the asyncio path.
    """
    return (
        not terminal
        and not (args.tls or args.starttls or args.send_proxy or args.log or args.verbose)
        and args.loop == "auto"
        and not os.isatty(1)
    )


def _run_plain(args: argparse.Namespace) -> int:
    host = args.host if args.host is not None else DEFAULT_HOST
    port = args.port if args.port is not None else DEFAULT_PORT
    newline = b"\n" if args.lf else b"\r\n"
    address = format_address(host, port, args.unix)
    if args.dialect not in (None, "line"):
        from ..client.lockstep import LockstepEnding
        from ..client.plain import open_plain, run_plain_lockstep

        expected = _expected(args)
        dialect = _make(args, newline, starttls=False)
        sock = open_plain(host, port, unix=args.unix, timeout=args.connect_timeout or None)
        result, lost = run_plain_lockstep(
            sock,
            dialect,
            keep_going=args.keep_going,
            reply_timeout=args.reply_timeout or None,
            wait=args.wait or None,
            as_json=args.json,
            expected=expected,
        )
        if result.ending in (LockstepEnding.SERVER_CLOSED, LockstepEnding.LOST) and lost:
            raise ConnectError(f"connection to {address} lost: {describe_error(lost)}")
        return _lockstep_status(result)
    return run_pipe(
        host,
        port,
        unix=args.unix,
        newline=newline,
        wait=args.wait,
        connect_timeout=args.connect_timeout,
    )


def _check_dialect(args: argparse.Namespace) -> None:
    if args.expect and args.dialect is None:
        from ..client.expect import TranscriptError, read_transcript

        try:
            _, args.dialect = read_transcript(args.expect)
        except TranscriptError as exc:
            raise UsageError(str(exc)) from None
        if args.dialect is None:
            raise UsageError(
                f"--expect {args.expect}: the transcript names no dialect: give --dialect"
            )
        if args.dialect not in DIALECTS:
            raise UsageError(f"--expect {args.expect}: unknown dialect {args.dialect!r}")
    dialect = args.dialect or "line"
    for flag in ("keep_going", "json", "expect"):
        if getattr(args, flag) and dialect == "line":
            raise UsageError(f"--{flag.replace('_', '-')} needs --dialect (not line)")
    if args.unstuff and dialect != "pop3":
        raise UsageError("--unstuff is for --dialect pop3")
    if args.raw and dialect != "redis":
        raise UsageError("--raw is for --dialect redis")


def _check_usage(args: argparse.Namespace) -> None:
    """Every usage error that needs no file opened (exit status 2)."""
    if args.unix and (args.host is not None or args.port is not None):
        raise UsageError("--unix connects instead of TCP: drop HOST/PORT")
    tls_wanted = args.tls or args.starttls is not None
    for flag in ("insecure", "cafile", "sni", "cert", "key"):
        if getattr(args, flag) and not tls_wanted:
            raise UsageError(f"--{flag} needs --tls or --starttls")
    if args.key and not args.cert:
        raise UsageError("--key needs --cert")
    if args.proxy_source and not args.send_proxy:
        raise UsageError("--proxy-source needs --send-proxy")
    if args.send_proxy and args.unix:
        raise UsageError("--send-proxy works over TCP only")
    if args.tls and args.starttls:
        raise UsageError("--tls and --starttls exclude each other (STARTTLS starts in plaintext)")
    _check_dialect(args)


def _options(args: argparse.Namespace) -> ConnectOptions:
    import ssl

    from ..client.session import ConnectOptions, client_tls_context

    tls_wanted = args.tls or args.starttls is not None
    context: ssl.SSLContext | None = None
    if tls_wanted:
        try:
            context = client_tls_context(
                cafile=args.cafile, insecure=args.insecure, certfile=args.cert, keyfile=args.key
            )
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"cannot load TLS files: {describe_error(exc)}") from None
    return ConnectOptions(
        host=args.host if args.host is not None else DEFAULT_HOST,
        port=args.port if args.port is not None else DEFAULT_PORT,
        unix=args.unix,
        tls_context=context,
        starttls=args.starttls,
        server_hostname=args.sni,
        connect_timeout=args.connect_timeout or None,
        newline=b"\n" if args.lf else b"\r\n",
        verbose=args.verbose,
        send_proxy={"v1": 1, "v2": 2}.get(args.send_proxy or ""),
        proxy_source=args.proxy_source,
    )


async def _session(
    args: argparse.Namespace,
    options: ConnectOptions,
    terminal: bool,
    transcript: Transcript | None,
) -> int:
    from ..client.ends import Ending
    from ..client.pipe import run_pipe
    from ..client.session import connect

    wait = args.wait or None
    client = await connect(options, transcript=transcript, on_notice=say)
    if terminal or args.verbose:
        tls = _tls_summary(client)
        say(
            f"connected to {options.address}{tls}"
            + (" (Ctrl-D: close, Ctrl-C: quit)" if terminal else "")
        )
    read_error: OSError | None = None
    dialect = _dialect(args, options)
    if terminal:
        from ..client.terminal import default_history_path, run_terminal

        history = None if args.no_history else default_history_path()
        ending = await run_terminal(client, history_path=history, wait=wait, dialect=dialect)
    elif dialect is not None:
        return await _lockstep(args, options, client, dialect, transcript)
    else:
        ending, read_error = await run_pipe(client, wait=wait, transcript=transcript)
    if transcript is not None:
        transcript.note(f"end: {ending.value}")
    _check_lost(client, ending, options)
    if read_error is not None:
        raise CliError(f"cannot read stdin: {read_error.strerror or read_error}")
    if ending is Ending.INTERRUPTED:
        return 130
    if ending is Ending.WAIT_EXPIRED:
        say(f"no answer for {args.wait:g} s after the end of input: closed")
    elif terminal:
        say("connection closed by the server")
    return 0


def _dialect(args: argparse.Namespace, options: ConnectOptions) -> Dialect | None:
    if args.dialect in (None, "line"):
        return None
    return _make(args, options.newline, options.starttls is not None)


def _expected(args: argparse.Namespace) -> Expected | None:
    """--expect's transcript, read (a usage error when it cannot be)."""
    if not args.expect:
        return None
    from ..client.expect import Expected, TranscriptError, read_transcript

    try:
        records, _ = read_transcript(args.expect)
        return Expected(args.expect, records)
    except TranscriptError as exc:
        raise UsageError(str(exc)) from None


def _make(args: argparse.Namespace, newline: bytes, starttls: bool) -> Dialect:
    from ..dialects import load

    return load(args.dialect)(
        newline=newline,
        greeting=False if starttls else None,  # STARTTLS has read it
        verbatim=args.expect is not None,
        unstuff=args.unstuff,
        raw=args.raw,
    )


async def _lockstep(
    args: argparse.Namespace,
    options: ConnectOptions,
    client: ClientProtocol,
    dialect: Dialect,
    transcript: Transcript | None,
) -> int:
    from ..client.ends import Ending
    from ..client.lockstep import LockstepEnding, run_lockstep

    expected = _expected(args)
    result = await run_lockstep(
        client,
        dialect,
        keep_going=args.keep_going,
        reply_timeout=args.reply_timeout or None,
        wait=args.wait or None,
        as_json=args.json,
        transcript=transcript,
        expected=expected,
    )
    ending = result.ending
    if transcript is not None:
        transcript.note(f"end: {ending.value}")
    if ending in (LockstepEnding.SERVER_CLOSED, LockstepEnding.LOST):
        _check_lost(client, Ending.SERVER_CLOSED, options)
    return _lockstep_status(result)


def _lockstep_status(result: LockstepResult) -> int:
    """The exit status of a lockstep session (EPILOG), with its one line on stderr."""
    from ..client.lockstep import LockstepEnding

    ending = result.ending
    if result.read_error is not None:
        raise CliError(f"cannot read stdin: {result.read_error.strerror or result.read_error}")
    if ending is LockstepEnding.TIMEOUT:
        say(result.detail)
        return 4
    if ending is LockstepEnding.MISMATCH:
        say(result.detail)
        return 5
    if ending in (LockstepEnding.LOST, LockstepEnding.PROTOCOL, LockstepEnding.INPUT_INCOMPLETE):
        say(result.detail)
        return 1
    if ending is LockstepEnding.ERROR_REPLY:
        say("stopped at an error reply (--keep-going sends every line)")
        return 3
    if result.errors:
        say(f"{result.errors} error repl{'y' if result.errors == 1 else 'ies'}")
        return 3
    return 0


def _tls_summary(client: ClientProtocol) -> str:
    transport = client.transport
    if transport is None:
        return ""
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return ""
    return f" ({ssl_object.version()}, {ssl_object.cipher()[0]})"


def _check_lost(client: ClientProtocol, ending: Ending, options: ConnectOptions) -> None:
    from ..client.ends import Ending

    exc = client.close_exception
    if exc is None or client.eof_seen or ending in (Ending.INTERRUPTED, Ending.OUTPUT_CLOSED):
        return
    raise ConnectError(f"connection to {options.address} lost: {describe_error(exc)}")
