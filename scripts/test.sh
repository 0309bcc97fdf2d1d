#!/usr/bin/env bash
# Run the whole test suite. On a fresh machine it makes its own virtual environment (.venv)
# and installs the package with its test tools first.
#
#   bash scripts/test.sh          # everything: types, the suite in parallel (a real JupyterHub
#                                 # included), the browser suite
#   bash scripts/test.sh quick    # the inner loop: no browser, no slow tier (about a minute);
#                                 # installs nothing but pip's: the hub tests run when
#                                 # scripts/hub-deps.sh has been run once, else skip
#   bash scripts/test.sh ARGS…    # one pytest run with these arguments (e.g. -m "not browser" -x)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${KIE_VENV:-.venv}"
PY="$VENV/bin/python"
PIP=("$PY" -m pip install -q --disable-pip-version-check)
# pytest-xdist workers: the suite mostly waits on servers, kernels and subprocesses, so more
# workers than the machine's 2 cores pay off; worksteal lets an idle worker take tests queued
# behind a long one.
WORKERS="${KIE_TEST_WORKERS:-6}"
PARALLEL=(-n "$WORKERS" --dist worksteal)
[ -x "$PY" ] || python3 -m venv "$VENV"
"${PIP[@]}" --upgrade pip
if [ "${1:-}" = "quick" ]; then
  shift
  "${PIP[@]}" -e ".[test]"
  exec "$PY" -m pytest "${PARALLEL[@]}" -m "not browser and not slow" "$@"
fi
# The test tools and the browser suite's Python side (JupyterLab 4, Notebook 7, playwright,
# which drives Debian's chromium: never its own download). Without the browser's, its tests
# skip (or fail when KIE_REQUIRE_BROWSER=1, as in CI).
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
"${PIP[@]}" -e ".[test,browser]" || {
  echo "test.sh: the browser suite's packages did not install; browser tests will be skipped" >&2
  "${PIP[@]}" -e ".[test]"
}
# A second, small environment with ipykernel 6 (the kernel-output tests run on 6 and 7): made
# in the background while apt installs Debian's chromium (as root) and mypy checks the types.
IPK6_PID=""
TYPES_PID=""
DEPS_PID=""
trap '[ -n "$IPK6_PID" ] && kill "$IPK6_PID" 2>/dev/null; [ -n "$TYPES_PID" ] && kill "$TYPES_PID" 2>/dev/null; [ -n "$DEPS_PID" ] && kill "$DEPS_PID" 2>/dev/null; true' EXIT
if [ -z "${KIE_IPYKERNEL6_PYTHON:-}" ]; then
  IPK6="${KIE_VENV_IPYKERNEL6:-.venv-ipykernel6}"
  (
    [ -x "$IPK6/bin/python" ] || python3 -m venv "$IPK6"
    "$IPK6/bin/python" -m pip install -q --disable-pip-version-check -e . "ipykernel>=6.29,<7"
  ) &
  IPK6_PID=$!
  export KIE_IPYKERNEL6_PYTHON="$PWD/$IPK6/bin/python"
fi
if [ "$#" -eq 0 ]; then
  # 1. Types: the package checks with 0 errors (settings in pyproject.toml's [tool.mypy]).
  "$PY" -m mypy & TYPES_PID=$!
fi
# Debian's chromium for the browser suite, then configurable-http-proxy (npm, into .hub-node;
# Debian's nodejs and npm first if missing) for the real-JupyterHub tests: one after the other,
# so their apt-gets never race for dpkg's lock, and together in the background. Without the
# proxy the hub tests skip (or fail when CI=true or KIE_REQUIRE_HUB=1).
(
  bash scripts/browser-deps.sh --chromium-only || echo "test.sh: Debian's chromium is not installed; browser tests will be skipped" >&2
  bash scripts/hub-deps.sh || echo "test.sh: configurable-http-proxy is not installed; the real-JupyterHub tests will be skipped" >&2
) & DEPS_PID=$!
if [ -n "$IPK6_PID" ]; then wait "$IPK6_PID"; IPK6_PID=""; fi
wait "$DEPS_PID" || true
DEPS_PID=""
if [ "$#" -gt 0 ]; then
  exec "$PY" -m pytest "$@"
fi
wait "$TYPES_PID" || { TYPES_PID=""; echo "test.sh: the type check failed (above)" >&2; exit 1; }
TYPES_PID=""
# 2. Everything but the browser, in parallel (each test has its own servers and home).
"$PY" -m pytest "${PARALLEL[@]}" -m "not browser"
# 3. The browser suite, in a run of its own and last: Playwright's sync API leaves an
#    asyncio loop running behind it, which later tests in the same process would inherit.
exec "$PY" -m pytest -n 2 -m browser tests/browser
