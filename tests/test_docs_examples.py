"""Every code block of the docs and the README does what the page says (docs/contributing.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .docs_examples import (
    ROOT,
    Block,
    ExampleFailed,
    Page,
    blocks,
    commands,
    fixed_ports_lock,
    matches,
    pages,
)

PAGES = pages()


@pytest.mark.parametrize("path", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_page_examples_run(path: Path, tmp_path: Path) -> None:
    page_blocks = blocks(path, path.read_text(encoding="utf-8"))
    if not page_blocks:
        return
    page = Page(path, tmp_path)
    needs_lock = any(block.kind == "server" for block in page_blocks)
    lock = fixed_ports_lock() if needs_lock else None
    try:
        if lock is not None:
            lock.__enter__()
        page.run_all(page_blocks)
    finally:
        page.stop_servers()
        if lock is not None:
            lock.__exit__(None, None, None)
    if page.skipped:
        pytest.skip(f"ran {page.ran} blocks; not yet: {', '.join(page.skipped)}")


def test_every_runnable_block_is_run_or_skipped_with_a_reason() -> None:
    for path in PAGES:
        for block in blocks(path, path.read_text(encoding="utf-8")):
            if block.kind == "skip":
                assert block.directives.get("reason"), f"{block.where}: skip without a reason"
            assert block.kind in {"run", "server", "output", "skip"}, block.where
            if block.language in {"sh", "bash", "shell", "py", "python3", "pycon"}:
                pytest.fail(
                    f"{block.where}: use ```console or ```python (runnable), not {block.language}"
                )


def test_the_collector_itself(tmp_path: Path) -> None:
    text = (
        '<!-- example: skip reason="x" -->\n```console\n$ false\n```\n'
        "```python title=\"a.py\"\nprint('hi')\n```\n"
        "<!-- example: output -->\n```text\nhi\n```\n"
        "```console\n$ python a.py\nhi\n$ echo a b \\\n  c\na b c\n```\n"
    )
    found = blocks(tmp_path / "x.md", text)
    assert [b.kind for b in found] == ["skip", "run", "output", "run"]
    assert found[1].title == "a.py"
    assert commands(found[3].code) == [("python a.py", ["hi"]), ("echo a b \\\n  c", ["a b c"])]
    assert matches(["a...c", "...", "z"], "abc\nx\ny\nz\n")
    assert not matches(["a"], "b\n")
    page = Page(tmp_path / "x.md", tmp_path)
    page.run_all(found[1:])
    assert page.ran == 2
    wrong = blocks(tmp_path / "x.md", "```console\n$ echo yes\nno\n```\n")
    with pytest.raises(ExampleFailed):
        Page(tmp_path / "x.md", tmp_path).run_all(wrong)
    assert isinstance(found[0], Block)
