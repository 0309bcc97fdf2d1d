#!/usr/bin/env bash
# Run the whole test suite. On a fresh machine it makes its own virtual environment (.venv)
# and installs the package with its test tools first. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${KIE_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[test]"
# The browser suite's tools: Debian's chromium (apt, as root), JupyterLab 4, Notebook 7 and
# playwright. Without them the browser tests skip (or fail when KIE_REQUIRE_BROWSER=1, as in CI).
bash scripts/browser-deps.sh "$VENV" || echo "test.sh: browser tools not installed; browser tests will be skipped" >&2
# A second, small environment with ipykernel 6: the kernel-output tests run on 6 and 7.
if [ -z "${KIE_IPYKERNEL6_PYTHON:-}" ]; then
  IPK6="${KIE_VENV_IPYKERNEL6:-.venv-ipykernel6}"
  [ -x "$IPK6/bin/python" ] || python3 -m venv "$IPK6"
  "$IPK6/bin/python" -m pip install -q --disable-pip-version-check -e . "ipykernel>=6.29,<7"
  export KIE_IPYKERNEL6_PYTHON="$PWD/$IPK6/bin/python"
fi
exec "$VENV/bin/python" -m pytest "$@"
