# Shared setup for scripts/demo, scripts/test and benchmarks/run: system packages, the virtual
# environment, and a Docker engine when none answers. Sourced, not run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${NIMRUNBOOK_VENV:-$ROOT/.venv}"
ENGINE_DIR="${NIMRUNBOOK_ENGINE_DIR:-/tmp/nimrunbook-engine}"

say() { printf '==> %s\n' "$*" >&2; }

# Debian packages the runbook drives for real (plus any named as arguments, e.g. chromium for the tests).
ensure_system_packages() {
  local missing=() extra
  command -v python3 >/dev/null || missing+=(python3)
  python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
  command -v dockerd >/dev/null || missing+=(docker.io)
  dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)  # static: the stand-in NIM image is FROM scratch
  command -v docker-registry >/dev/null || missing+=(docker-registry)
  command -v skopeo >/dev/null || missing+=(skopeo)
  command -v nginx >/dev/null || missing+=(nginx-light)
  command -v ssh-keygen >/dev/null || missing+=(openssh-client)  # signs and verifies bundles
  for extra in "$@"; do dpkg -s "$extra" >/dev/null 2>&1 || missing+=("$extra"); done
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
      say "missing system packages: ${missing[*]}; run as root or install them with apt-get"; return 1
    fi
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

ensure_venv() {  # $1: pip extras, e.g. "[test]"
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip >/dev/null 2>&1 || true
  fi
  say "installing nimrunbook$1 into $VENV"
  if ! "$VENV/bin/pip" install -q -e "$ROOT$1" >"$VENV/install.log" 2>&1; then
    cat "$VENV/install.log" >&2; say "pip install failed (log above, kept in $VENV/install.log)"; return 1
  fi
}

docker_answers() { docker ${1:+-H "$1"} version --format '{{.Server.Version}}' >/dev/null 2>&1; }

# Use the user's engine (DOCKER_HOST or the default socket) as it is; else, as root, start one of
# our own on a socket under /tmp (vfs, no bridge, no iptables) and stop it on exit.
ensure_docker_engine() {
  if [ -n "${DOCKER_HOST:-}" ] && docker_answers "$DOCKER_HOST"; then return 0; fi
  if docker_answers "unix:///var/run/docker.sock"; then export DOCKER_HOST=unix:///var/run/docker.sock; return 0; fi
  export DOCKER_HOST="unix://$ENGINE_DIR/docker.sock"
  if docker_answers "$DOCKER_HOST"; then return 0; fi
  if [ "$(id -u)" != 0 ]; then
    say "no Docker engine answers; start one, or set DOCKER_HOST"; return 1
  fi
  mkdir -p "$ENGINE_DIR"
  say "starting a Docker engine on $DOCKER_HOST"
  dockerd --host "$DOCKER_HOST" --storage-driver=vfs --bridge=none --iptables=false --ip6tables=false \
    --data-root "$ENGINE_DIR/data" --exec-root "$ENGINE_DIR/exec" --pidfile "$ENGINE_DIR/dockerd.pid" \
    >"$ENGINE_DIR/dockerd.log" 2>&1 &
  STARTED_ENGINE_PID=$!
  for _ in $(seq 1 60); do
    docker_answers "$DOCKER_HOST" && return 0
    kill -0 "$STARTED_ENGINE_PID" 2>/dev/null || break
    sleep 1
  done
  say "the Docker engine did not start; its log:"; tail -20 "$ENGINE_DIR/dockerd.log" >&2; return 1
}

stop_started_engine() {
  if [ -n "${STARTED_ENGINE_PID:-}" ]; then
    say "stopping the Docker engine we started"
    kill "$STARTED_ENGINE_PID" 2>/dev/null || true
    wait "$STARTED_ENGINE_PID" 2>/dev/null || true
  fi
}
