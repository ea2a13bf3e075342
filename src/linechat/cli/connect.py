"""``linechat connect``: an interactive client for any line protocol.

On a terminal it is a line editor; with a pipe or file on stdin it sends each
line and prints every answer, for scripts. Exit status: 0 when the exchange
ended normally, 1 for a connection error, 2 for bad usage, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import ssl
import sys
from typing import TYPE_CHECKING, Any

from ..client.pipe import Ending, run_pipe
from ..client.session import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    STARTTLS_PROTOCOLS,
    ClientProtocol,
    ConnectError,
    ConnectOptions,
    client_tls_context,
    connect,
    describe_error,
)
from .common import CliError, add_loop_option, loop_factory, non_negative_float, port_number

if TYPE_CHECKING:
    from ..client.transcript import Transcript

__all__ = ["add_parser"]

DEFAULT_WAIT = 10.0
PROG = "linechat connect"


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
        "server closes. Exit status: 0 normal end, 1 connection error, 2 bad usage.",
    )
    parser.add_argument(
        "host", nargs="?", default=None, help=f"server host (default {DEFAULT_HOST})"
    )
    parser.add_argument(
        "port", nargs="?", type=port_number, default=None, help=f"port (default {DEFAULT_PORT})"
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
        f"(default {DEFAULT_WAIT:g}; 0 waits until the server closes)",
    )
    parser.add_argument(
        "--connect-timeout",
        type=non_negative_float,
        default=10.0,
        metavar="SECONDS",
        help="for the connection, TLS and STARTTLS (default 10; 0: no limit)",
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
    parser.add_argument(
        "--no-history",
        action="store_true",
        help="do not keep the line editor's history ($XDG_STATE_HOME/linechat/history)",
    )
    add_loop_option(parser, "uvloop in pipe mode when installed")
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


def say(text: str) -> None:
    """One line for people, on stderr."""
    with contextlib.suppress(BlockingIOError):
        print(f"{PROG}: {text}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    transcript: Transcript | None = None
    try:
        options = _options(args)
        if args.log:
            from ..client.transcript import Transcript

            try:
                transcript = Transcript(args.log)
            except OSError as exc:
                raise UsageError(f"cannot open --log {args.log}: {exc.strerror}") from None
        terminal = os.isatty(0) and os.isatty(1)
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


def _options(args: argparse.Namespace) -> ConnectOptions:
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
    wait = args.wait or None
    client = await connect(options, transcript=transcript, on_notice=say)
    if terminal or args.verbose:
        tls = _tls_summary(client)
        say(
            f"connected to {options.address}{tls}"
            + (" (Ctrl-D: close, Ctrl-C: quit)" if terminal else "")
        )
    read_error: OSError | None = None
    if terminal:
        from ..client.terminal import default_history_path, run_terminal

        history = None if args.no_history else default_history_path()
        ending = await run_terminal(client, history_path=history, wait=wait)
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


def _tls_summary(client: ClientProtocol) -> str:
    transport = client.transport
    if transport is None:
        return ""
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return ""
    return f" ({ssl_object.version()}, {ssl_object.cipher()[0]})"


def _check_lost(client: ClientProtocol, ending: Ending, options: ConnectOptions) -> None:
    exc = client.close_exception
    if exc is None or client.eof_seen or ending in (Ending.INTERRUPTED, Ending.OUTPUT_CLOSED):
        return
    raise ConnectError(f"connection to {options.address} lost: {describe_error(exc)}")
