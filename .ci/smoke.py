"""Smoke-test an installed linechat (from its wheel, in a fresh venv): serve, connect, version.

    VENV/bin/python .ci/smoke.py [--fast]

Run with the venv's own Python. Starts ``linechat serve`` on a free loopback
port, sends a few lines through ``linechat connect`` in pipe mode, checks
every answer, stops the server with SIGTERM and expects exit status 0. With
``--fast`` the uvloop extra must be there; without, ``--loop uvloop`` must
fail with a clear message.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
LINES = ["Hello!", "This is a line.", "caf\u00e9 \u2615"]


def check(condition: bool, message: str) -> None:
    if not condition:
        raise SystemExit(f"smoke test failed: {message}")


def main() -> int:
    fast = "--fast" in sys.argv[1:]
    import linechat

    installed = Path(linechat.__file__).resolve()
    check("site-packages" in installed.parts, f"linechat imported from {installed}, not the wheel")
    check((installed.parent / "py.typed").is_file(), "py.typed is not installed")
    names = dir(linechat)
    check("LineServer" in names and "start_server" in names, "dir(linechat) lacks lazy names")
    version = subprocess.run(
        [BIN / "linechat", "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    check(version == f"linechat {linechat.__version__}", f"--version said {version!r}")

    loop = "uvloop" if fast else "asyncio"
    server = subprocess.Popen(
        [BIN / "linechat", "serve", "--host", "127.0.0.1", "--port", "0", "--loop", loop],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        # The start-up log (the effective settings) comes first; then the address.
        seen: list[str] = []
        match: re.Match[str] | None = None
        while match is None and len(seen) < 20:
            announce = server.stderr.readline()
            if not announce:
                break
            seen.append(announce)
            match = re.search(r"listening on 127\.0\.0\.1:(\d+)", announce)
        check(match is not None, f"no announcement: {''.join(seen)!r}")
        assert match is not None
        client = subprocess.run(
            [BIN / "linechat", "connect", "127.0.0.1", match.group(1), "--loop", loop],
            input="".join(f"{line}\n" for line in [*LINES, "."]),
            capture_output=True,
            text=True,
            timeout=30,
        )
        check(client.returncode == 0, f"connect exited {client.returncode}: {client.stderr}")
        expected = "".join(f"You sent: {line}\n" for line in LINES)
        check(client.stdout == expected, f"answers {client.stdout!r}")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
            code = -1
    check(code == 0, f"serve exited {code} on SIGTERM")

    if not fast:
        refused = subprocess.run(
            [BIN / "linechat", "serve", "--port", "0", "--loop", "uvloop"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        check(refused.returncode != 0, "--loop uvloop worked without the fast extra")
        check("linechat[fast]" in refused.stderr, f"unclear message: {refused.stderr!r}")
    print(f"smoke test passed ({'with' if fast else 'without'} the fast extra, {version})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
