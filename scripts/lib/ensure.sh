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
