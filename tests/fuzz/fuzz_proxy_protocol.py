"""Coverage-guided fuzzing of the PROXY header parser with atheris.

    make fuzz                                   # every harness, 5 minutes each
    .venv/bin/python tests/fuzz/fuzz_proxy_protocol.py -max_total_time=60 \
        tests/fuzz/corpus/proxy_protocol

The first input byte picks the chunk size; the rest is the stream. Any input
must give a header or ProxyProtocolError, with the buffer bounded.
``one_input`` needs no atheris: tests/test_fuzz_corpus.py replays the corpus.
"""

from __future__ import annotations

import importlib

from linechat.proxy_protocol import ProxyHeaderParser, ProxyProtocolError


def one_input(data: bytes) -> None:
    if not data:
        return
    step, stream = data[0] % 32 + 1, data[1:]
    parser = ProxyHeaderParser(max_v2_length=512)
    try:
        for start in range(0, len(stream), step):
            header = parser.feed(stream[start : start + step])
            if parser.buffered > parser.max_header_size:
                raise AssertionError("parser buffered more than a header")
            if header is not None:
                if not stream.endswith(parser.rest + stream[start + step :]):
                    raise AssertionError("rest is not the stream's tail")
                return
        parser.feed_eof()
        raise AssertionError("feed_eof accepted an incomplete header")
    except ProxyProtocolError:
        pass


def main() -> None:
    # tests/fuzz/fuzzsupport.py, beside this file; it needs atheris (the fuzz extra).
    importlib.import_module("fuzzsupport").fuzz(one_input)


if __name__ == "__main__":
    main()
