# Shared set-up for `npm start`, `npm test` and .ci/run: install what is missing, loudly.
# Sourced, not executed.

ensure_node_modules() {
  if [ ! -d node_modules ] || [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    echo "axon: installing npm packages (npm ci)..." >&2
    npm ci --no-audit --no-fund >&2
  fi
}

ensure_redis() {
  if command -v redis-server >/dev/null 2>&1; then return 0; fi
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "axon: installing redis-server from Debian's packages..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq redis-server >&2
    # Debian's package may start a system redis on 6379; Axon runs its own on another port.
  else
    echo "axon: redis-server is not installed. Install it with: sudo apt-get install -y redis-server" >&2
    exit 1
  fi
}

# matrix-nio (Python) is the second client library the /sync e2e tests drive (test/e2e/nio-sync.e2e.test.ts).
# Returns non-zero rather than exiting: outside CI the test skips itself when nio is missing.
# Debian's package lands in /usr/bin/python3's dist-packages, which a `python3` earlier on PATH (pyenv,
# a venv) does not see; the test tries `python3` first, then /usr/bin/python3, and so does this.
nio_importable() {
  python3 -c 'import nio' >/dev/null 2>&1 || { [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import nio' >/dev/null 2>&1; }
}

ensure_nio() {
  if nio_importable; then return 0; fi
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "axon: installing python3-matrix-nio from Debian's packages..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq python3-matrix-nio >&2 || return 1
    nio_importable
  else
    echo "axon: matrix-nio (Python) is not installed; the nio /sync test will be skipped." >&2
    echo "      Install it with: sudo apt-get install -y python3-matrix-nio" >&2
    return 1
  fi
}
