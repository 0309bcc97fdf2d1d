#!/usr/bin/env bash
# Run the whole test suite. On a fresh machine it makes its own virtual environment (.venv)
# and installs the package with its test tools first. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${KIE_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[test]"
# A second, small environment with ipykernel 6: the kernel-output tests run on 6 and 7.
if [ -z "${KIE_IPYKERNEL6_PYTHON:-}" ]; then
  IPK6="${KIE_VENV_IPYKERNEL6:-.venv-ipykernel6}"
  [ -x "$IPK6/bin/python" ] || python3 -m venv "$IPK6"
  "$IPK6/bin/python" -m pip install -q --disable-pip-version-check -e . "ipykernel>=6.29,<7"
  export KIE_IPYKERNEL6_PYTHON="$PWD/$IPK6/bin/python"
fi
exec "$VENV/bin/python" -m pytest "$@"
