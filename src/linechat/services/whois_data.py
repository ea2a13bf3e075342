"""WHOIS records: loaded from a directory of text files or one TOML file.

Sans-I/O apart from reading the files: :func:`load_records` returns every
answer already encoded (UTF-8, CRLF line ends, a final CRLF), so a query costs
a dictionary look-up. Anything wrong with the data is a
:class:`~linechat.errors.ServiceError` naming the file, at start and on reload.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path

from ..errors import ServiceError
from .whois_query import lookup_key

__all__ = ["encode_answer", "load_records", "render_fields"]


def encode_answer(text: str) -> bytes:
    """The text as sent: every line end CRLF, ending with one (RFC 3912 lines end in CRLF)."""
    lines = text.splitlines()
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def render_fields(fields: Mapping[str, object], where: str) -> str:
    """A TOML table as ``name: value`` lines; a list gives one line per item."""
    lines = []
    for name, value in fields.items():
        values = value if isinstance(value, list) else [value]
        for item in values:
            if isinstance(item, (dict, list, bool)):
                raise ServiceError(f"{where}: field {name!r} must be text or numbers")
            lines.append(f"{name}: {item}")
    return "\n".join(lines)


def load_records(path: str | Path) -> dict[str, bytes]:
    """Map each lookup key (case-folded) to its encoded answer.

    ``path`` is a directory (one UTF-8 file per object, named by its key;
    names starting with ``.`` and sub-directories are skipped) or a TOML file
    whose top-level keys are the objects: a string is the record's text, a
    table becomes ``name: value`` lines.
    """
    path = Path(path)
    if path.is_dir():
        texts = _from_directory(path)
    elif path.exists():
        texts = _from_toml(path)
    else:
        raise ServiceError(f"WHOIS data {str(path)!r}: no such file or directory")
    records: dict[str, bytes] = {}
    origin: dict[str, str] = {}
    for name, text in texts:
        key = lookup_key(name)
        if key in records:
            raise ServiceError(
                f"WHOIS data {str(path)!r}: {origin[key]!r} and {name!r} are the same key "
                "(keys are case-insensitive)"
            )
        records[key] = encode_answer(text)
        origin[key] = name
    return records


def _from_directory(folder: Path) -> list[tuple[str, str]]:
    texts = []
    try:
        entries = sorted(folder.iterdir())
    except OSError as exc:
        raise ServiceError(f"cannot read WHOIS data {str(folder)!r}: {exc.strerror}") from None
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_file():
            continue
        try:
            texts.append((entry.name, entry.read_bytes().decode("utf-8")))
        except OSError as exc:
            raise ServiceError(f"cannot read WHOIS data {str(entry)!r}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise ServiceError(
                f"WHOIS data {str(entry)!r} is not UTF-8 (byte {exc.start})"
            ) from None
    return texts


def _from_toml(file: Path) -> list[tuple[str, str]]:
    where = f"WHOIS data {str(file)!r}"
    try:
        document = tomllib.loads(file.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise ServiceError(f"cannot read {where}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ServiceError(f"{where} is not UTF-8 (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ServiceError(f"{where} is not valid TOML: {exc}") from None
    texts = []
    for name, value in document.items():
        if isinstance(value, str):
            texts.append((name, value))
        elif isinstance(value, dict):
            texts.append((name, render_fields(value, f"{where}, record {name!r}")))
        else:
            raise ServiceError(f"{where}: record {name!r} must be a string or a table")
    return texts
