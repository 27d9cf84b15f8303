#!/usr/bin/env bash
# The relay against mosquitto, side by side, in one command.
#
#   scripts/bench-relay.sh [--unsafe-no-fsync-column] [tacit-load flags...]
#       e.g. --rounds 3, --tiny
#
# --unsafe-no-fsync-column also runs the relay with --unsafe-no-fsync
# (SQLite synchronous=OFF: loses acknowledged messages on power loss;
# benchmarks only) each round, as a third column: a lower bound on the
# relay's cost without its fsyncs, which mosquitto does not make either.
#
# Builds the relay and the load generator in release, installs mosquitto
# from Debian's packages if it is missing, starts it on a free loopback
# port with a temporary configuration (persistence on, in a temporary
# directory; not the system service), runs every scenario against both and
# prints one table. Everything stays on 127.0.0.1 and is cleaned up.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

unsafe_column=0
if [ "${1:-}" = "--unsafe-no-fsync-column" ]; then
  unsafe_column=1
  shift
fi

cargo build --release --locked -q -p tacit-relay -p tacit-load

find_mosquitto() {
  command -v mosquitto 2>/dev/null || { [ -x /usr/sbin/mosquitto ] && echo /usr/sbin/mosquitto; } || true
}
mosquitto_bin=$(find_mosquitto)
if [ -z "$mosquitto_bin" ]; then
  echo "installing mosquitto from Debian's packages" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null
  mosquitto_bin=$(find_mosquitto)
fi
[ -n "$mosquitto_bin" ] || { echo "mosquitto is not installed" >&2; exit 1; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/tacit-bench-mosquitto.XXXXXX")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$dir/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
persistence true
persistence_location $dir/
pid_file $dir/mosquitto.pid
log_dest none
# Queue every message for offline persistent sessions (scenario b).
max_queued_messages 0
max_queued_bytes 0
max_inflight_messages 100
CONF
# Run as root, mosquitto drops to its own user: let it write the directory.
if id mosquitto >/dev/null 2>&1; then
  chown -R mosquitto "$dir"
fi

cleanup() {
  if [ -f "$dir/mosquitto.pid" ]; then
    pid=$(cat "$dir/mosquitto.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -rf "$dir"
}
trap cleanup EXIT

start_broker="$mosquitto_bin -d -c $dir/mosquitto.conf"
$start_broker
for _ in $(seq 100); do
  [ -s "$dir/mosquitto.pid" ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done

extra=()
if [ "$unsafe_column" = 1 ]; then
  cat >"$dir/tacit-relay-no-fsync" <<WRAP
#!/bin/sh
exec "$CARGO_TARGET_DIR/release/tacit-relay" --unsafe-no-fsync "\$@"
WRAP
  chmod +x "$dir/tacit-relay-no-fsync"
  extra=(--unsafe-relay-bin "$dir/tacit-relay-no-fsync")
fi

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); $("$mosquitto_bin" -h 2>&1 | head -1)" >&2
"$CARGO_TARGET_DIR/release/tacit-load" \
  --relay-bin "$CARGO_TARGET_DIR/release/tacit-relay" \
  --mqtt "127.0.0.1:$port" \
  --mqtt-pidfile "$dir/mosquitto.pid" \
  --mqtt-restart "$start_broker" \
  --mqtt-name "$("$mosquitto_bin" -h 2>&1 | head -1 | awk '{print $1 " " $3}')" \
  "${extra[@]}" "$@"
