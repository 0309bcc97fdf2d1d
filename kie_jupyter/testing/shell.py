"""``TestingShell``: a real IPython shell that re-raises errors from cells, for tests."""

from __future__ import annotations

from typing import Any

from IPython.core.interactiveshell import ExecutionResult, InteractiveShell

__all__ = ["TestingShell"]


class TestingShell(InteractiveShell):
    """An ``InteractiveShell`` whose ``run_cell`` raises what the cell raised.

    IPython prints ``UsageError`` and tracebacks and carries on; a test wants the exception.
    """

    __test__ = False  # not a pytest test class, despite the name

    def run_cell(self, raw_cell: str, *args: Any, **kwargs: Any) -> ExecutionResult:
        result = super().run_cell(raw_cell, *args, **kwargs)
        result.raise_error()
        return result
