"""The fake KIE server: every endpoint we use, its quirks, scripted faults and a request log.

A runtime part, not only a test tool: demo mode serves it inside the kernel.
"""

from __future__ import annotations

from .server import Fault, MockKieServer, MockRequest, TaskScript

__all__ = ["Fault", "MockKieServer", "MockRequest", "TaskScript"]
