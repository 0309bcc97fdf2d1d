"""KIE over HTTP: the client, the API's types, one error tree, retries and the rate limit.

Plain Python on ``requests``: no IPython, no widgets, nothing from the layers above.
"""

from __future__ import annotations

from .client import KieClient
from .errors import KieError, KieUsageError

__all__ = ["KieClient", "KieError", "KieUsageError"]
