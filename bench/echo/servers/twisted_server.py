"""Twisted ``LineReceiver`` echo server on the epoll reactor, as a competitor.

One ``sendLine`` per line; a line holding only ``.`` closes the connection.
"""

from __future__ import annotations

import argparse
from typing import Any

from twisted.internet import epollreactor

# Twisted's zope.interface-based typing does not fit mypy --strict; use Any.
_epollreactor: Any = epollreactor
_epollreactor.install()

from twisted.internet import reactor  # noqa: E402
from twisted.internet.protocol import Factory  # noqa: E402
from twisted.protocols.basic import LineReceiver  # noqa: E402


class Echo(LineReceiver):
    delimiter = b"\r\n"

    def lineReceived(self, line: bytes) -> None:
        proto: Any = self
        if line == b".":
            proto.transport.loseConnection()
            return
        proto.sendLine(b"You sent: " + line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    the_reactor: Any = reactor
    the_reactor.listenTCP(args.port, Factory.forProtocol(Echo), backlog=4096, interface="127.0.0.1")
    the_reactor.run()


if __name__ == "__main__":
    main()
