"""Constants shared by the fault-injection tests."""

from __future__ import annotations

from kie_jupyter.engine.poller import PollSchedule

KEY = "sk-FAULTS-0123456789abcdef"
#: Polls as fast as the API allows, so faults show up quickly.
FAST = PollSchedule(first=0.05, unknown=0.34, max_interval=0.5)
