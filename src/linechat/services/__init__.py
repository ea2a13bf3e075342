"""The built-in services, by name: what ``linechat serve NAME`` finds first.

Each value is an import string of a :class:`linechat.service.Service` (or of
any other target); modules are imported only when their service is asked for.
Installed distributions add names in the ``linechat.services`` entry-point group.
"""

from __future__ import annotations

__all__ = ["BUILTIN"]

BUILTIN: dict[str, str] = {
    "echo": "linechat.services.echo:SERVICE",
    "chat": "linechat.services.chat:SERVICE",
    "smtp-sink": "linechat.services.smtp_sink:SERVICE",
    "whois": "linechat.services.whois:SERVICE",
}
