"""Every fuzz harness replays its whole seeded corpus: crashes found become regressions.

A harness is ``tests/fuzz/fuzz_NAME.py`` with a ``one_input(data)`` function and its
corpus in ``tests/fuzz/corpus/NAME/``. Harnesses import atheris only in ``main()``,
so these replays need no atheris.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from .conftest import IN_CI

FUZZ = Path(__file__).parent / "fuzz"
HARNESSES = sorted(FUZZ.glob("fuzz_*.py"))
CASES = [
    (harness, sample)
    for harness in HARNESSES
    for sample in sorted((FUZZ / "corpus" / harness.stem.removeprefix("fuzz_")).glob("*"))
]


def load(harness: Path) -> ModuleType:
    name = f"linechat_fuzz_{harness.stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, harness)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    if str(FUZZ) not in sys.path:  # harnesses may import their siblings, as when run
        sys.path.append(str(FUZZ))
    try:
        spec.loader.exec_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != "atheris":
            raise
        message = f"{harness.name} imports atheris at module level; import it in main()"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    sys.modules[name] = module
    return module


def test_every_harness_has_a_seeded_corpus() -> None:
    assert HARNESSES, "no harness found"
    for harness in HARNESSES:
        corpus = FUZZ / "corpus" / harness.stem.removeprefix("fuzz_")
        assert corpus.is_dir() and any(corpus.iterdir()), f"{harness.name}: no seeds in {corpus}"


@pytest.mark.parametrize(("harness", "sample"), CASES, ids=[f"{h.stem}/{s.name}" for h, s in CASES])
def test_corpus_replays(harness: Path, sample: Path) -> None:
    one_input: Callable[[bytes], None] = load(harness).one_input
    one_input(sample.read_bytes())
