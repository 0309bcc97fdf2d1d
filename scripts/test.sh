#!/usr/bin/env bash
# Run the whole test suite. On a fresh machine it makes its own virtual environment (.venv)
# and installs the package with its test tools first.
#
#   bash scripts/test.sh          # everything: the type check, the suite in parallel, the browser suite
#   bash scripts/test.sh quick    # the inner loop: no browser, no slow tier (about a minute)
#   bash scripts/test.sh ARGS…    # one pytest run with these arguments (e.g. -m "not browser" -x)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${KIE_VENV:-.venv}"
PY="$VENV/bin/python"
# Workers for pytest-xdist: the suite mostly waits on servers and kernels, so more workers
# than the machine's 2 cores pay off.
WORKERS="${KIE_TEST_WORKERS:-6}"
[ -x "$PY" ] || python3 -m venv "$VENV"
"$PY" -m pip install -q --disable-pip-version-check --upgrade pip
"$PY" -m pip install -q --disable-pip-version-check -e ".[test]"
if [ "${1:-}" = "quick" ]; then
  shift
  exec "$PY" -m pytest -n "$WORKERS" -m "not browser and not slow" "$@"
fi
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
if [ "$#" -gt 0 ]; then
  exec "$PY" -m pytest "$@"
fi
# 1. Types: the package checks with 0 errors (settings in pyproject.toml's [tool.mypy]).
"$PY" -m mypy
# 2. Everything but the browser, in parallel (each test has its own servers and home).
"$PY" -m pytest -n "$WORKERS" -m "not browser"
# 3. The browser suite, in a run of its own and last: Playwright's sync API leaves an
#    asyncio loop running behind it, which later tests in the same process would inherit.
exec "$PY" -m pytest -n 2 -m browser tests/browser
