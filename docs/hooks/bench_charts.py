"""mkdocs hook: the benchmark charts, drawn with matplotlib from the results files at build time.

The figures live in one place, the Markdown tables the benchmarks write
(``bench/RESULTS.md``, ``bench/echo/RESULTS.md``), each under a heading and
with the reproducing command beside it. This hook parses those tables (a
small sans-I/O parser: text in, tables out) and draws SVG charts into the
site as generated files (``explanation/charts/*.svg``); no image is kept in
the repository, so a chart cannot disagree with the table it shows. A table
that has moved or lost a column fails the build with the heading and column
it looked for.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = "explanation/charts"


@dataclass
class Table:
    """One Markdown table and the headings it sits under (outermost first)."""

    headings: list[str]
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def column(self, name: str) -> list[str]:
        if name not in self.columns:
            raise LookupError(f"table under {self.headings} has no column {name!r}")
        index = self.columns.index(name)
        return [row[index] for row in self.rows]


def parse_tables(text: str) -> list[Table]:
    """Every pipe table of a Markdown text, with the headings above it."""
    tables: list[Table] = []
    headings: list[tuple[int, str]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        heading = re.match(r"(#{1,6})\s+(.*)", line)
        if heading:
            level = len(heading.group(1))
            headings = [h for h in headings if h[0] < level] + [(level, heading.group(2).strip())]
        elif (
            line.startswith("|")
            and i + 1 < len(lines)
            and re.fullmatch(r"\|?(\s*:?-+:?\s*\|)+\s*:?-*:?\s*", lines[i + 1].strip())
        ):
            table = Table([h for _, h in headings], cells(line))
            i += 2
            while i < len(lines) and lines[i].strip().startswith("|"):
                row = cells(lines[i].strip())
                table.rows.append(row + [""] * (len(table.columns) - len(row)))
                i += 1
            tables.append(table)
            continue
        i += 1
    return tables


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def number(text: str) -> float:
    """``1,741,269`` -> 1741269; ``8.86 M`` -> 8.86e6; ``15 k`` -> 15e3; ``1.02x`` -> 1.02."""
    match = re.fullmatch(r"\**\s*([-0-9.,]+)\s*([kMG]?)\s*x?\**", text.strip())
    if not match:
        raise ValueError(f"not a figure: {text!r}")
    scale = {"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9}[match.group(2)]
    return float(match.group(1).replace(",", "")) * scale


def find(tables: list[Table], heading: str, *columns: str) -> Iterator[Table]:
    """The tables under ``heading`` (at any level) that have all of ``columns``."""
    found = False
    for table in tables:
        if heading in table.headings and all(c in table.columns for c in columns):
            found = True
            yield table
    if not found:
        raise LookupError(f"no table under the heading {heading!r} with columns {columns}")


def label(text: str) -> str:
    return text.replace("`", "")


# -- the charts --------------------------------------------------------------


def _figure(rows: int, cols: int, height: float) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "linechat", "font.size": 9})  # stable output
    fig, axes = plt.subplots(rows, cols, figsize=(10, height), squeeze=False)
    return fig, axes


def _bars(axis: Any, names: list[str], values: list[float], title: str, unit: str) -> None:
    colours = ["#3f51b5" if name.lower().startswith("linechat") else "#9e9e9e" for name in names]
    positions = list(range(len(names)))[::-1]
    axis.barh(positions, values, color=colours)
    axis.set_yticks(positions, [label(name) for name in names])
    axis.set_title(title)
    axis.set_xlabel(unit)
    axis.grid(axis="x", alpha=0.3)


def _svg(fig: Any) -> bytes:
    out = io.StringIO()
    fig.tight_layout()
    fig.savefig(out, format="svg", metadata={"Date": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return out.getvalue().encode()


def framing_chart(main: list[Table]) -> bytes:
    tables = [
        t
        for t in find(main, "Framing", "implementation", "MB/s")
        if "chunks" in t.headings[-1] and "as the corpus grows" not in t.headings[-1]
    ]
    cols = 2
    fig, axes = _figure((len(tables) + cols - 1) // cols, cols, 2.6 * ((len(tables) + 1) // cols))
    for axis, table in zip(axes.flat, tables, strict=False):
        names = table.column("implementation")
        _bars(axis, names, [number(v) for v in table.column("MB/s")], table.headings[-1], "MB/s")
    for axis in list(axes.flat)[len(tables) :]:
        axis.set_visible(False)
    return _svg(fig)


def echo_chart(echo: list[Table]) -> bytes:
    (summary,) = list(find(echo, "Summary", "server", "100x1 RT/s", "100x16 RT/s"))
    wanted = [
        ("100x1 RT/s", "100 connections x 1 line in flight", "round trips/s"),
        ("100x16 RT/s", "100 connections x 16 lines in flight", "round trips/s"),
        ("1000x1 RT/s", "1,000 connections x 1 line in flight", "round trips/s"),
        ("idle-10k KiB/conn", "idle memory per connection (lower: better)", "KiB"),
    ]
    fig, axes = _figure(2, 2, 8)
    names = summary.column("server")
    for axis, (column, title, unit) in zip(axes.flat, wanted, strict=True):
        _bars(axis, names, [number(v) for v in summary.column(column)], title, unit)
    return _svg(fig)


def client_chart(main: list[Table]) -> bytes:
    table = next(find(main, "Client (linechat connect)", "client", "lines/s"))
    fig, axes = _figure(1, 1, 2.4)
    names, values = table.column("client"), [number(v) for v in table.column("lines/s")]
    _bars(axes[0][0], names, values, "pipe mode, lines/s (higher is better)", "lines/s")
    return _svg(fig)


CHARTS: dict[str, tuple[str, Callable[[list[Table]], bytes]]] = {
    "framing.svg": ("bench/RESULTS.md", framing_chart),
    "echo.svg": ("bench/echo/RESULTS.md", echo_chart),
    "client.svg": ("bench/RESULTS.md", client_chart),
}


def render_all(root: Path = ROOT) -> dict[str, bytes]:
    """Every chart, by file name, from the results files under ``root``."""
    parsed: dict[str, list[Table]] = {}
    charts = {}
    for name, (source, draw) in CHARTS.items():
        if source not in parsed:
            parsed[source] = parse_tables((root / source).read_text(encoding="utf-8"))
        try:
            charts[name] = draw(parsed[source])
        except (LookupError, ValueError) as exc:
            raise RuntimeError(f"chart {name} from {source}: {exc}") from exc
    return charts


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    for name, svg in render_all().items():
        files.append(File.generated(config, f"{CHART_DIR}/{name}", content=svg))
    return files
