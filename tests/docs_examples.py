"""Find and run the code blocks of the docs and the README (the rules: docs/contributing.md).

Sans-I/O part: :func:`blocks` turns a Markdown text into :class:`Block` values
(language, code, title, the ``<!-- example: ... -->`` directives before it).
The running part, :class:`Page`, runs one page's blocks in order, in a fresh
directory, and raises :class:`ExampleFailed` with the block's line number
when one does not do what the page says.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNNABLE = {"python", "console"}
#: A directive: <!-- example: WORD key=value key="a value" ... -->
DIRECTIVE = re.compile(r"<!--\s*example:\s*(.*?)\s*-->")
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)(.*)$")
#: Pages whose servers listen on fixed ports take this lock, so CI sessions
#: running at once (and several worktrees) do not collide.
LOCK = Path(tempfile.gettempdir()) / "linechat-docs-examples.lock"
#: Directories of the checkout a page's commands may read (``docs/haproxy.cfg``...).
LINKED = ("docs", "examples", "src", "tests", "bench")


class ExampleFailed(AssertionError):
    pass


@dataclass
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    title: str | None = None
    directives: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        path = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{path}:{self.line}"

    @property
    def kind(self) -> str:
        """``run`` (the default), ``server``, ``output`` or ``skip``."""
        return self.directives.get("", "run")


def parse_directive(text: str) -> dict[str, str]:
    words = shlex.split(text)
    found = {"": words[0]} if words and "=" not in words[0] else {}
    for word in words[1 if found else 0 :]:
        key, _, value = word.partition("=")
        found[key] = value
    return found


def blocks(path: Path, text: str) -> list[Block]:
    """Every fenced block of ``text``, with the directives on the lines just before it."""
    found: list[Block] = []
    lines = text.splitlines()
    pending: dict[str, str] = {}
    i = 0
    while i < len(lines):
        directive = DIRECTIVE.search(lines[i])
        if directive and not lines[i].strip().startswith("`"):
            pending = parse_directive(directive.group(1))
            i += 1
            continue
        fence = FENCE.match(lines[i])
        if fence is None:
            if lines[i].strip():
                pending = {}  # a directive applies to the block right after it
            i += 1
            continue
        indent, marks, language, rest = fence.groups()
        title = re.search(r'title="([^"]+)"', rest)
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(marks):
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1
        found.append(
            Block(
                path,
                start + 1,
                language.lower(),
                "\n".join(body) + "\n",
                title.group(1) if title else None,
                pending,
            )
        )
        pending = {}
    return found


def commands(console: str) -> list[tuple[str, list[str]]]:
    """``$ command`` lines (``\\`` continues one) and the output shown after each."""
    result: list[tuple[str, list[str]]] = []
    lines = console.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith("$ "):
            if result:
                result[-1][1].append(line)
            elif line.strip():
                raise ExampleFailed(f"console block: output before any `$ ` command: {line!r}")
            i += 1
            continue
        command = line[2:]
        while command.endswith("\\") and i + 1 < len(lines):
            i += 1
            command += "\n" + lines[i]  # bash joins the lines itself
        result.append((command, []))
        i += 1
    return result


def matches(expected: list[str], actual: str) -> bool:
    """Does ``actual`` match ``expected`` lines? ``...`` alone: any lines; in a line: any text."""
    pattern = ""
    for line in expected:
        if line.strip() == "...":
            pattern += r"(?:.*\n)*?"
        else:
            pattern += ".*?".join(map(re.escape, line.rstrip().split("..."))) + r"[ \t]*\n"
    got = "\n".join(part.rstrip() for part in actual.splitlines())
    return re.fullmatch(pattern, got + "\n" if got else "") is not None


def needs_met(need: str) -> bool:
    """A forward dependency a block declares: ``needs="serve TARGET"``."""
    if need == "serve TARGET":
        try:  # `linechat serve` parses its own flags (cli/serve.py), TARGET among them
            from linechat.cli.serve import runner_parser
        except ImportError:
            return False
        serve = runner_parser(add_help=False)
        return any(not option.option_strings for option in serve._actions)
    raise ExampleFailed(f"unknown needs={need!r}")


@dataclass
class Page:
    """Run one page's blocks in order, in a fresh directory that mirrors the checkout."""

    path: Path
    workdir: Path
    servers: list[tuple[Block, subprocess.Popen[bytes], Path]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    ran: int = 0

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env["NO_COLOR"] = "1"
        env["PYTHONUNBUFFERED"] = "1"
        env.pop("PYTHONPATH", None)
        return env

    def run_all(self, page_blocks: list[Block]) -> None:
        for name in LINKED:
            if (ROOT / name).exists() and not (self.workdir / name).exists():
                (self.workdir / name).symlink_to(ROOT / name)
        last_stdout: str | None = None
        for block in page_blocks:
            if block.title:  # any titled block is a file the next blocks may use
                (self.workdir / block.title).write_text(block.code, encoding="utf-8")
            need = block.directives.get("needs")
            if block.kind == "skip":
                if not block.directives.get("reason"):
                    raise ExampleFailed(f'{block.where}: a skip needs reason="..."')
                continue
            if block.kind == "output":
                if last_stdout is None:
                    raise ExampleFailed(f"{block.where}: output block after no python block")
                if not matches(block.code.splitlines(), last_stdout):
                    raise ExampleFailed(
                        f"{block.where}: the program printed\n{last_stdout}\nnot\n{block.code}"
                    )
                last_stdout = None
                continue
            if block.language not in RUNNABLE:
                continue
            if need and not needs_met(need):
                self.skipped.append(f"{block.where} (needs {need})")
                continue
            self.ran += 1
            if block.kind == "server":
                self.start_server(block)
                last_stdout = None
            elif block.language == "python":
                last_stdout = self.run_python(block)
            else:
                self.run_console(block)
                last_stdout = None

    def python_file(self, block: Block) -> Path:
        if block.title:
            return self.workdir / block.title
        path = self.workdir / f"block_{block.line}.py"
        path.write_text(block.code, encoding="utf-8")
        return path

    def timeout(self, block: Block) -> float:
        return float(block.directives.get("timeout", "60"))

    def run_python(self, block: Block) -> str:
        done = subprocess.run(
            [sys.executable, str(self.python_file(block))],
            cwd=self.workdir,
            env=self.env(),
            capture_output=True,
            timeout=self.timeout(block),
        )
        if done.returncode != 0:
            raise ExampleFailed(
                f"{block.where}: exit status {done.returncode}\n"
                f"{done.stdout.decode(errors='replace')}{done.stderr.decode(errors='replace')}"
            )
        return done.stdout.decode(errors="replace")

    def run_console(self, block: Block) -> None:
        expected_exit = int(block.directives.get("exit", "0"))
        for command, expected in commands(block.code):
            done = subprocess.run(
                ["bash", "-o", "pipefail", "-c", command],
                cwd=self.workdir,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=self.timeout(block),
            )
            output = done.stdout.decode(errors="replace")
            if done.returncode != expected_exit:
                raise ExampleFailed(
                    f"{block.where}: `{command}` exited {done.returncode}:\n{output}"
                )
            if not matches(expected, output):
                raise ExampleFailed(
                    f"{block.where}: `{command}` printed\n{output}\nnot\n" + "\n".join(expected)
                )

    def start_server(self, block: Block) -> None:
        port = int(block.directives.get("port", "0"))
        if not port:
            raise ExampleFailed(f"{block.where}: a server block needs port=N")
        if port_open(port):
            raise ExampleFailed(f"{block.where}: port {port} is already in use on this machine")
        log = self.workdir / f"server_{block.line}.log"
        if block.language == "python":
            argv = [sys.executable, str(self.python_file(block))]
        else:
            (command, _), *more = commands(block.code)
            if more:
                raise ExampleFailed(f"{block.where}: a server block holds one command")
            argv = ["bash", "-c", command]  # stopped with its process group
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv,
                cwd=self.workdir,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.servers.append((block, process, log))
        deadline = time.monotonic() + self.timeout(block) / 2
        while not port_open(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise ExampleFailed(
                    f"{block.where}: the server did not listen on port {port}:\n"
                    + log.read_text(errors="replace")
                )
            time.sleep(0.05)

    def stop_servers(self) -> None:
        for _, process, _ in reversed(self.servers):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGINT)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        self.servers.clear()


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def fixed_ports_lock() -> Iterator[None]:
    with LOCK.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
