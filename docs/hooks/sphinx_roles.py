"""mkdocs hook: Sphinx roles in docstrings (``:class:`LineFramer```) shown as plain code.

linechat's docstrings use the roles, which read well in ``help()``;
mkdocstrings renders the role's name as text before the code. This drops the
role and, for ``~a.b.Name``, keeps what Sphinx would show (``Name``).
"""

from __future__ import annotations

import re
from typing import Any

ROLE = re.compile(r":(?:class|meth|func|attr|data|exc|mod|obj|const):<code>(~?)([^<]*)</code>")


def strip_roles(html: str) -> str:
    def code(match: re.Match[str]) -> str:
        name = match.group(2)
        return f"<code>{name.rsplit('.', 1)[-1] if match.group(1) else name}</code>"

    return ROLE.sub(code, html)


def on_page_content(html: str, **kwargs: Any) -> str:
    return strip_roles(html)
