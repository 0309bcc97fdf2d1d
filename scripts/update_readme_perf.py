"""Copy the targets table of benchmarks/results.md into README.md (between its markers)."""

from __future__ import annotations

import re
from pathlib import Path

root = Path(__file__).resolve().parent.parent
results = (root / "benchmarks" / "results.md").read_text(encoding="utf-8")
head = results.split("## Targets", 1)[0].strip().splitlines()
machine = [line.strip() for line in head if line.startswith(("Machine:", "Run:"))]
table = results.split("## Targets", 1)[1].split("\n## ", 1)[0].strip()
block = "\n".join(["<!-- perf:start -->", *(f"{m}" for m in machine), "", table,
                   "<!-- perf:end -->"])
readme = root / "README.md"
text = readme.read_text(encoding="utf-8")
text = re.sub(r"<!-- perf:start -->.*?<!-- perf:end -->|PERF_TABLE", lambda _: block, text,
              flags=re.S)
readme.write_text(text, encoding="utf-8")
print("README performance table updated")
