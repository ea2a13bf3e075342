"""The README's "Write your own service" and docs/howto/run-your-service.md, run as written."""

from __future__ import annotations

import re
import shlex
import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Served, linechat_command, read_all, read_until

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
HOWTO = (ROOT / "docs" / "howto" / "run-your-service.md").read_text()


def blocks(text: str, kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", text, re.S)


def section(text: str, title: str) -> str:
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def test_readme_service_with_tls_and_four_workers(
    serve: Callable[..., Served], certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    part = section(README, "Write your own service")
    (code,) = blocks(part, "python")
    (console,) = blocks(part, "console")
    assert len(code.splitlines()) <= 20
    (tmp_path / "shout.py").write_text(code)
    argv = shlex.split(console.strip().removeprefix("$ "))
    assert argv[:2] == ["linechat", "serve"]
    cert, key = certificate
    swap = {"cert.pem": str(cert), "key.pem": str(key), "7000": "0"}
    args = [swap.get(arg, arg) for arg in argv[2:]]
    served = serve(*args, "--app-dir", str(tmp_path))
    assert "(4 workers)" in served.log()
    context = ssl.create_default_context(cafile=str(cert))
    for _ in range(8):
        with (
            served.connect() as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            tls.sendall(b"hello\r\nQUIT\r\n")
            assert read_all(tls) == b"READY\r\nHELLO\r\n"


def test_howto_first_example_both_layers(serve: Callable[..., Served], tmp_path: Path) -> None:
    (tmp_path / "shout.py").write_text(blocks(HOWTO, "python")[0])
    for target, reply in (
        ("shout:Shout", b"READY\r\nMIXED\r\n"),
        ("shout:whisper", b"READY\r\nmixed\r\n"),
    ):
        with serve(target, "--app-dir", str(tmp_path)).connect() as sock:
            sock.sendall(b"MiXeD\nQUIT\n" if target.endswith("whisper") else b"MiXeD\r\nQUIT\r\n")
            assert read_all(sock) == reply


def test_howto_service_with_options_and_its_config_file(
    serve: Callable[..., Served], tmp_path: Path
) -> None:
    (tmp_path / "prefixer.py").write_text(blocks(HOWTO, "python")[1])
    served = serve("prefixer:SERVICE", "--app-dir", str(tmp_path), "--prefix", "+ ", "--times", "2")
    with served.connect() as sock:
        sock.sendall(b"a\r\n")
        assert read_until(sock, b"+ a\r\n+ a\r\n") == b"+ a\r\n+ a\r\n"
    refused = subprocess.run(
        linechat_command("serve", "prefixer:SERVICE", "--app-dir", str(tmp_path), "--times", "9"),
        capture_output=True,
        timeout=30,
    )
    assert refused.returncode == 2
    assert refused.stderr.decode().strip() == "linechat serve: --times 9: at most 3"
    # Every key of the documented config file is accepted (files it names aside).
    sys.path.insert(0, str(tmp_path))
    try:
        from linechat.server.config import read_config_file
        from linechat.server.load import load

        (toml,) = [b for b in blocks(HOWTO, "toml") if "target" in b]
        path = tmp_path / "prefixer.toml"
        path.write_text(toml)
        service = load("prefixer:SERVICE").service
        values = read_config_file(str(path), service)
        assert values["options"] == {"prefix": "> ", "times": 2}
        assert values["max_connections"] == 500
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("prefixer", None)


def test_howto_python_programs_compile(tmp_path: Path) -> None:
    for number, code in enumerate(blocks(HOWTO, "python")):
        path = tmp_path / f"example{number}.py"
        path.write_text(code)
        subprocess.run([sys.executable, "-m", "py_compile", str(path)], check=True)
