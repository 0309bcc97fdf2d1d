#!/usr/bin/env bash
# The main job: execute notebooks/quickstart.ipynb in demo mode (the bundled mock server, no
# API key, nothing sent to KIE.AI) and write the executed notebook and an HTML copy, with
# their images, to out/. Makes its own virtual environment (.venv) on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${KIE_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[test]"
exec "$VENV/bin/python" scripts/execute_notebooks.py --demo --html --out out notebooks/quickstart.ipynb "$@"
