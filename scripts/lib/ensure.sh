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

# Synapse, the real peer the federation tests run against (test/peers/synapse.ts). Installed from PyPI
# into one virtualenv, $AXON_PEERS_DIR/synapse-venv (default ./.peers, gitignored), once: later calls
# only look for the marker file written after a successful install, so they cost nothing.
# test/peers/synapse.ts finds the venv the same way (keep AXON_SYNAPSE_VERSION and the marker in step).
# Returns non-zero rather than exiting: outside CI the federation tests skip themselves when Synapse is
# missing; in CI scripts/test fails on it.
AXON_SYNAPSE_VERSION=1.163.2

synapse_venv() { echo "${AXON_PEERS_DIR:-$PWD/.peers}/synapse-venv"; }

synapse_installed() { pypi_venv_installed "$(synapse_venv)" synapse "$AXON_SYNAPSE_VERSION" bin/python; }

ensure_synapse() {
  if synapse_installed; then return 0; fi
  if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
      echo "axon: installing python3 and python3-venv from Debian's packages..." >&2
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq >&2 && apt-get install -y -qq python3 python3-venv >&2 || return 1
    else
      echo "axon: Synapse needs python3 with venv; the federation tests against Synapse will be skipped." >&2
      echo "      Install it with: sudo apt-get install -y python3 python3-venv" >&2
      return 1
    fi
  fi
  ensure_pypi_venv "$(synapse_venv)" synapse Synapse "matrix-synapse" "$AXON_SYNAPSE_VERSION" bin/python \
    "the federation tests against Synapse will be skipped" "$(synapse_venv)/bin/python" -c 'import synapse.app.homeserver'
}

# One PyPI package (and what it pulls in) in a virtualenv of its own under $AXON_PEERS_DIR, installed
# once: a marker file with the version is written only after the install and its check succeeded,
# so later calls cost a file read, and a failed or interrupted install is redone from scratch.
# One installer at a time per venv (worktrees may share a peers dir through AXON_PEERS_DIR).
#   pypi_venv_installed VENV MARKER VERSION EXECUTABLE
#   ensure_pypi_venv VENV MARKER LABEL PIP_NAME VERSION EXECUTABLE SKIP_WHAT CHECK_CMD...
# MARKER names the file (.axon-MARKER-version), EXECUTABLE is a path inside the venv that must exist,
# CHECK_CMD a command proving the install works. Returns non-zero (never exits) when it fails.
pypi_venv_installed() {
  [ -x "$1/$4" ] && [ "$(cat "$1/.axon-$2-version" 2>/dev/null)" = "$3" ]
}

ensure_pypi_venv() {
  local venv="$1" marker="$2" label="$3" pip_name="$4" version="$5" exe="$6" skip_what="$7"
  shift 7
  if pypi_venv_installed "$venv" "$marker" "$version" "$exe"; then return 0; fi
  mkdir -p "$(dirname "$venv")"
  ( flock 9 || true
    if pypi_venv_installed "$venv" "$marker" "$version" "$exe"; then exit 0; fi
    started=$SECONDS
    echo "axon: installing $pip_name==$version from PyPI into $venv (once per machine)..." >&2
    rm -rf "$venv"
    if python3 -m venv "$venv" >&2 \
      && "$venv/bin/pip" install -q --disable-pip-version-check "$pip_name==$version" >&2 \
      && [ -x "$venv/$exe" ] && "$@" >&2; then
      echo "$version" > "$venv/.axon-$marker-version"
      echo "axon: $label $version installed in $((SECONDS - started))s" >&2
    else
      rm -rf "$venv"
      echo "axon: installing $label failed after $((SECONDS - started))s; $skip_what." >&2
      echo "      Retry with: . scripts/lib/ensure.sh && ensure_$marker" >&2
      exit 1
    fi
  ) 9>"$(dirname "$venv")/.$marker-install.lock"
}

# openssl makes the dev server's self-signed federation certificate (src/federation/tls.ts) and the
# tests' private CA (test/peers/test-ca.ts). Debian images have it; install it when one does not.
ensure_openssl() {
  if command -v openssl >/dev/null 2>&1; then return 0; fi
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "axon: installing openssl from Debian's packages..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq openssl >&2
  else
    echo "axon: openssl is not installed (needed for a self-signed federation certificate); install it, or set federation.tlsCertPath/tlsKeyPath, or AXON_FEDERATION_ENABLED=false" >&2
  fi
}

# moto's S3 server (PyPI `moto[server]`), one of the two real S3-compatible servers the media store
# tests run the S3 backend against (test/media/store.test.ts; the other is s3rver from npm).
# Installed like Synapse into its own virtualenv, $AXON_PEERS_DIR/moto-venv, once (marker file).
# Returns non-zero rather than exiting: outside CI the moto half of the store suite skips itself.
AXON_MOTO_VERSION=5.2.5

moto_venv() { echo "${AXON_PEERS_DIR:-$PWD/.peers}/moto-venv"; }

moto_installed() { pypi_venv_installed "$(moto_venv)" moto "$AXON_MOTO_VERSION" bin/moto_server; }

ensure_moto() {
  ensure_pypi_venv "$(moto_venv)" moto moto "moto[server]" "$AXON_MOTO_VERSION" bin/moto_server \
    "the S3 store tests against moto will be skipped" true
}

# Debian's chromium-headless-shell, the real browser the Hydrogen web-client test drives through
# puppeteer-core (test/browser/hydrogen.e2e.test.ts; puppeteer-core never downloads a browser).
# test/browser/chromium.ts looks for the same names on PATH (or AXON_CHROMIUM).
# Returns non-zero rather than exiting: outside CI the browser test skips itself when it is missing.
chromium_installed() {
  if [ -n "${AXON_CHROMIUM:-}" ]; then [ -x "$AXON_CHROMIUM" ]; return; fi
  command -v chromium-headless-shell >/dev/null 2>&1 || command -v chromium >/dev/null 2>&1
}

ensure_chromium() {
  if chromium_installed; then return 0; fi
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "axon: installing chromium-headless-shell from Debian's packages..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq chromium-headless-shell >&2 || return 1
    chromium_installed
  else
    echo "axon: no headless Chromium is installed; the Hydrogen browser test will be skipped." >&2
    echo "      Install it with: sudo apt-get install -y chromium-headless-shell" >&2
    return 1
  fi
}

# Prometheus and promtool (Debian's `prometheus` package), for the metrics tests: `promtool check
# metrics` on every process's /metrics and a real Prometheus scraping a cluster
# (test/ops/metrics-prometheus.e2e.test.ts). Not installed on the system: the .deb is downloaded
# and unpacked into $AXON_PEERS_DIR/prometheus (no root, no service started), once (marker file).
# test/peers/prometheus.ts finds the binaries there (or AXON_PROMETHEUS_DIR).
# Returns non-zero rather than exiting: outside CI the metrics tests that need it skip themselves.
prometheus_dir() { echo "${AXON_PROMETHEUS_DIR:-${AXON_PEERS_DIR:-$PWD/.peers}/prometheus}"; }

prometheus_installed() {
  local dir; dir="$(prometheus_dir)"
  [ -x "$dir/usr/bin/prometheus" ] && [ -x "$dir/usr/bin/promtool" ] && [ -f "$dir/.axon-prometheus-installed" ]
}

ensure_prometheus() {
  if prometheus_installed; then return 0; fi
  local dir; dir="$(prometheus_dir)"
  mkdir -p "$(dirname "$dir")"
  ( flock 9 || true
    if prometheus_installed; then exit 0; fi
    if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
      echo "axon: apt-get/dpkg-deb not found; the Prometheus metrics tests will be skipped." >&2
      exit 1
    fi
    echo "axon: unpacking Debian's prometheus package into $dir (once per machine)..." >&2
    local tmp; tmp="$(mktemp -d)"; chmod 755 "$tmp"  # readable by apt's _apt user
    # `apt-get download` needs no root, but the package lists must exist; refresh them when it fails.
    if ! ( cd "$tmp" && apt-get download prometheus >&2 ); then
      if [ "$(id -u)" = "0" ]; then apt-get update -qq >&2; fi
      ( cd "$tmp" && apt-get download prometheus >&2 ) || { rm -rf "$tmp"; echo "axon: could not download Debian's prometheus package; the metrics tests that need it will be skipped." >&2; exit 1; }
    fi
    rm -rf "$dir"
    if dpkg-deb -x "$tmp"/prometheus_*.deb "$dir" && [ -x "$dir/usr/bin/prometheus" ] && [ -x "$dir/usr/bin/promtool" ]; then
      "$dir/usr/bin/prometheus" --version 2>&1 | head -1 > "$dir/.axon-prometheus-installed"
      echo "axon: $(cat "$dir/.axon-prometheus-installed")" >&2
    else
      rm -rf "$dir"
      echo "axon: unpacking prometheus failed; the metrics tests that need it will be skipped." >&2
      rm -rf "$tmp"; exit 1
    fi
    rm -rf "$tmp"
  ) 9>"$(dirname "$dir")/.prometheus-install.lock"
}

# Heisenbridge (PyPI), the real IRC bridge the appservice journey runs against Axon (issue 22.4),
# installed like Synapse into its own virtualenv, $AXON_PEERS_DIR/heisenbridge-venv, once (marker file).
# Returns non-zero rather than exiting: outside CI the bridge test skips itself when it is missing.
AXON_HEISENBRIDGE_VERSION=1.15.4

heisenbridge_venv() { echo "${AXON_PEERS_DIR:-$PWD/.peers}/heisenbridge-venv"; }

heisenbridge_installed() { pypi_venv_installed "$(heisenbridge_venv)" heisenbridge "$AXON_HEISENBRIDGE_VERSION" bin/python; }

ensure_heisenbridge() {
  ensure_pypi_venv "$(heisenbridge_venv)" heisenbridge Heisenbridge heisenbridge "$AXON_HEISENBRIDGE_VERSION" bin/python \
    "the IRC bridge test will be skipped" "$(heisenbridge_venv)/bin/python" -c 'import heisenbridge'
}

# ngIRCd (Debian's package), the IRC server Heisenbridge bridges to in that test: the package and
# libident are downloaded with `apt-get download` and unpacked with `dpkg-deb -x` into
# $AXON_PEERS_DIR/ngircd (no system install, no service started); run it with
# LD_LIBRARY_PATH=$AXON_PEERS_DIR/ngircd/usr/lib/x86_64-linux-gnu (libident.so.0).
ngircd_dir() { echo "${AXON_PEERS_DIR:-$PWD/.peers}/ngircd"; }

ngircd_installed() { [ -x "$(ngircd_dir)/usr/sbin/ngircd" ]; }

ensure_ngircd() {
  if ngircd_installed; then return 0; fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "axon: ngIRCd needs Debian's apt-get to download; the IRC bridge test will be skipped." >&2
    return 1
  fi
  local dir; dir="$(ngircd_dir)"
  mkdir -p "$dir"
  ( flock 9 || true
    if ngircd_installed; then exit 0; fi
    local tmp; tmp="$(mktemp -d)"
    echo "axon: downloading ngircd and libident from Debian's packages into $dir..." >&2
    if [ "$(id -u)" = "0" ]; then apt-get update -qq >&2 || true; fi
    if (cd "$tmp" && apt-get download -qq ngircd libident >&2) && for d in "$tmp"/*.deb; do dpkg-deb -x "$d" "$dir" || exit 1; done && [ -x "$dir/usr/sbin/ngircd" ]; then
      rm -rf "$tmp"
      echo "axon: ngIRCd unpacked in $dir" >&2
    else
      rm -rf "$tmp"
      echo "axon: downloading ngIRCd failed; the IRC bridge test will be skipped." >&2
      exit 1
    fi
  ) 9>"$dir/../.ngircd-install.lock"
}
