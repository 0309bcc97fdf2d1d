"""Test helpers: a local mock of the KIE 4o Image API and its pytest fixtures."""

from __future__ import annotations

from ..fakeapi.server import Fault, MockKieServer, MockRequest, TaskScript

__all__ = ["Fault", "MockKieServer", "MockRequest", "TaskScript"]
