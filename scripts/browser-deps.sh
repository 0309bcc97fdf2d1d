#!/usr/bin/env bash
# Install what the browser tests (tests/browser, `pytest -m browser`) need on a Debian machine:
# Debian's Chromium (never Playwright's browser download) and, into the virtual environment
# given as $1 (default .venv, created if missing), JupyterLab 4, Notebook 7 and the Playwright
# Python package. Idempotent: safe to run again; apt runs only when Chromium is missing.
#
#   bash scripts/browser-deps.sh .venv
#   bash scripts/browser-deps.sh --chromium-only      # Debian's chromium, no pip
#   KIE_REQUIRE_BROWSER=1 .venv/bin/python -m pytest -m browser tests/browser
set -euo pipefail
cd "$(dirname "$0")/.."
CHROMIUM_ONLY=0
if [ "${1:-}" = "--chromium-only" ]; then CHROMIUM_ONLY=1; shift; fi
VENV="${1:-.venv}"
CHROMIUM="${KIE_CHROMIUM:-/usr/bin/chromium}"

if [ -x "$CHROMIUM" ]; then
  echo "browser-deps: Chromium already at $CHROMIUM"
else
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "browser-deps: need root or sudo for apt-get" >&2; exit 1; }
    SUDO="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium
  [ -x "$CHROMIUM" ] || { echo "browser-deps: chromium installed but $CHROMIUM is missing" >&2; exit 1; }
fi
"$CHROMIUM" --version 2>/dev/null | head -n 1 || true
[ "$CHROMIUM_ONLY" = 1 ] && exit 0

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# Playwright drives the system Chromium (executable_path): never `playwright install`.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[test,browser]"
"$VENV/bin/python" - <<'PY'
from importlib.metadata import version
print("browser-deps: " + ", ".join(
    f"{name} {version(name)}" for name in
    ("jupyterlab", "notebook", "ipywidgets", "jupyterlab_widgets", "ipykernel", "playwright")))
PY
