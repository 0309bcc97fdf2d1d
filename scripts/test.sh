#!/usr/bin/env bash
# Run the whole test suite. On a fresh machine it makes its own virtual environment (.venv)
# and installs the package with its test tools first. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${KIE_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[test]"
exec "$VENV/bin/python" -m pytest "$@"
