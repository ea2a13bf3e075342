"""What every harness's ``main()`` shares: atheris, pointed at linechat's code only.

``atheris.instrument_all()`` would instrument the whole interpreter (thousands
of functions, half a minute on a busy machine); linechat's own functions are
the ones whose branches matter.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FunctionType
from typing import Any


def instrument_linechat() -> int:
    """Instrument every function and method of the loaded ``linechat`` modules."""
    import atheris  # optional: the fuzz extra

    seen: set[int] = set()

    def visit(value: Any) -> None:
        if id(value) in seen:
            return
        seen.add(id(value))
        if isinstance(value, FunctionType) and value.__module__.startswith("linechat"):
            atheris.instrument_func(value)
        elif isinstance(value, (staticmethod, classmethod)):
            visit(value.__func__)
        elif isinstance(value, property):
            for accessor in (value.fget, value.fset, value.fdel):
                if accessor is not None:
                    visit(accessor)
        elif isinstance(value, type) and value.__module__.startswith("linechat"):
            for member in vars(value).values():
                visit(member)

    for name, module in list(sys.modules.items()):
        if name == "linechat" or name.startswith("linechat."):
            for value in list(vars(module).values()):
                visit(value)
    return len(seen)


def fuzz(one_input: Callable[[bytes], None]) -> None:
    """Run ``one_input`` under atheris with the command line's libFuzzer flags."""
    import atheris

    instrument_linechat()
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
