#!/usr/bin/env bash
# Install what the real-JupyterHub tests (tests/classroom/test_real_hub.py) need besides the
# `jupyterhub` package (in the test extra): configurable-http-proxy, the hub's own proxy, a
# Node.js program. npm installs it into ./.hub-node (never globally); Debian's nodejs and npm
# come from apt (as root or with sudo) only when node or npm is missing. Idempotent: nothing is
# installed when the proxy already runs from PATH, ./node_modules/.bin or ./.hub-node.
#
#   bash scripts/hub-deps.sh
#   KIE_REQUIRE_HUB=1 .venv/bin/python -m pytest tests/classroom/test_real_hub.py
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=.hub-node  # tests/classroom/hub_helpers.py looks here (and in $KIE_CHP)

for chp in "$(command -v configurable-http-proxy || true)" \
           node_modules/.bin/configurable-http-proxy \
           "$PREFIX/node_modules/.bin/configurable-http-proxy"; do
  if [ -n "$chp" ] && [ -x "$chp" ] && version="$("$chp" --version 2>/dev/null)"; then
    echo "hub-deps: configurable-http-proxy $version already at $chp"
    exit 0
  fi
done

PACKAGES=()
command -v node >/dev/null 2>&1 || PACKAGES+=(nodejs)
command -v npm >/dev/null 2>&1 || PACKAGES+=(npm)
if [ "${#PACKAGES[@]}" -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "hub-deps: need root or sudo for apt-get" >&2; exit 1; }
    SUDO="sudo"
  fi
  command -v apt-get >/dev/null 2>&1 || { echo "hub-deps: no apt-get to install ${PACKAGES[*]}" >&2; exit 1; }
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
fi
node --version >/dev/null 2>&1 || { echo "hub-deps: node is missing after apt-get" >&2; exit 1; }

# configurable-http-proxy 5 wants Node >= 20 (Debian 13's, or NodeSource's); Debian 12 has 18,
# which 4.6 (the last 4.x, still what JupyterHub supports) runs on.
NODE_MAJOR="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$NODE_MAJOR" -ge 20 ]; then CHP_SPEC="configurable-http-proxy@^5"
else CHP_SPEC="configurable-http-proxy@~4.6"; fi
npm install --no-save --no-audit --no-fund --loglevel=error --prefix "$PREFIX" "$CHP_SPEC"
chp="$PREFIX/node_modules/.bin/configurable-http-proxy"
version="$("$chp" --version)" || { echo "hub-deps: $chp does not run on node $(node --version)" >&2; exit 1; }
echo "hub-deps: configurable-http-proxy $version at $chp (node $(node --version))"
