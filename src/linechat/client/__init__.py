"""The client behind ``linechat connect``: a connection, pipe mode, terminal mode.

:mod:`.session` connects (TCP or Unix, TLS, STARTTLS) and gives a
:class:`ClientProtocol`; :mod:`.pipe` runs it against stdin/stdout in bulk;
:mod:`.terminal` (imported on demand: it needs prompt_toolkit) runs a line
editor. Like the rest of the library, none of it prints or exits.
"""

from .pipe import Ending, run_pipe
from .session import ClientProtocol, ConnectError, ConnectOptions, client_tls_context, connect

__all__ = [
    "ClientProtocol",
    "ConnectError",
    "ConnectOptions",
    "Ending",
    "client_tls_context",
    "connect",
    "run_pipe",
]
