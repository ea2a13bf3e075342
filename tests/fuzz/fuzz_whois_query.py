"""Coverage-guided fuzzing of the WHOIS query rules with atheris.

    .venv/bin/python tests/fuzz/fuzz_whois_query.py -max_total_time=60

Any line must give a clean query (short, no control characters, stripped) or
QueryError, and an answer that is whole CRLF lines.
"""

from __future__ import annotations

import importlib
import tempfile

from linechat.services.whois import WhoisDatabase
from linechat.services.whois_query import MAX_QUERY_BYTES, QueryError, normalise_query

_FOLDER = tempfile.TemporaryDirectory()
with open(f"{_FOLDER.name}/example.com", "w", encoding="utf-8") as _record:
    _record.write("domain: example.com\n")
DATABASE = WhoisDatabase(_FOLDER.name)


def one_input(data: bytes) -> None:
    try:
        text = normalise_query(data)
    except QueryError as exc:
        if not str(exc):
            raise AssertionError("QueryError without a reason") from None
    else:
        if not text or text != text.strip(" ") or len(text.encode()) > MAX_QUERY_BYTES:
            raise AssertionError(f"bad query accepted: {text!r}")
        if any(ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F for char in text):
            raise AssertionError(f"control character accepted: {text!r}")
    answer = DATABASE.answer(data)
    if not answer.endswith(b"\r\n") or b"\n" in answer.replace(b"\r\n", b""):
        raise AssertionError(f"answer is not CRLF lines: {answer!r}")


def main() -> None:
    # tests/fuzz/fuzzsupport.py, beside this file; it needs atheris (the fuzz extra).
    importlib.import_module("fuzzsupport").fuzz(one_input)


if __name__ == "__main__":
    main()
