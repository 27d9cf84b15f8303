#!/usr/bin/env bash
# The relay on SQLite (one node, beside mosquitto) and on PostgreSQL with
# one, two and three nodes, in one command.
#
#   scripts/bench-relay-pg.sh [tacit-load flags...]   e.g. --scenarios a --messages-per-pair 1000
#
# First runs scripts/bench-relay.sh with the same flags: the relay on
# SQLite against mosquitto (installed from Debian's packages if missing;
# TACIT_BENCH_NO_MQTT=1 runs the relay alone). Then builds the relay and the
# load generator in release, starts a private PostgreSQL server (initdb
# into a temporary directory as the postgres user when run as root, a free
# port on 127.0.0.1; fsync and synchronous_commit on) and runs tacit-load
# against it with --nodes 1, 2 and 3 (TACIT_BENCH_NODES="1 2 3"). The
# wrapper given as --relay-bin maps the --db path tacit-load passes (one
# temporary path per scenario) to one database, created by the first node
# that starts on it: the nodes of a scenario share it, the next scenario
# gets a fresh one, and a node restarted on the same path (scenario c)
# finds its data again. tacit-load sums the CPU time of every node and of
# the PostgreSQL server (--db-pidfile: the postmaster, its children and its
# reaped children). While each run lasts, pg_stat_activity is sampled every
# 0.2 s and the wait events of active backends are counted. Everything is
# removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

bin=""
for dir in ${TACIT_PG_BIN:-} /usr/lib/postgresql/*/bin; do
  if [ -x "$dir/initdb" ]; then bin=$dir; fi
done
[ -n "$bin" ] || { echo "no PostgreSQL server binaries (apt-get install postgresql-15)" >&2; exit 1; }

cargo build --release --locked -q -p tacit-relay -p tacit-load

dir=$(mktemp -d "${TMPDIR:-/tmp}/tacit-bench-pg.XXXXXX")
as_pg=()
if [ "$(id -u)" = 0 ]; then
  chown postgres:postgres "$dir"
  as_pg=(runuser -u postgres --)
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cleanup() {
  "${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
"${as_pg[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-sync >/dev/null
"${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
  -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null

cat >"$dir/relay-on-pg" <<WRAP
#!/usr/bin/env bash
args=(); next=0
for a in "\$@"; do
  if [ \$next = 1 ]; then
    name="bench_\$(printf %s "\$a" | md5sum | cut -c1-16)"
    "$bin/createdb" -h 127.0.0.1 -p $port -U postgres "\$name" 2>/dev/null || true
    args+=("postgres://postgres@127.0.0.1:$port/\$name"); next=0; continue
  fi
  [ "\$a" = --db ] && next=1
  args+=("\$a")
done
exec "$CARGO_TARGET_DIR/release/tacit-relay" "\${args[@]}"
WRAP
chmod +x "$dir/relay-on-pg"

# Wait events of active backends (other than this sampler), every 0.2 s.
sample_waits() {
  while :; do
    "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -tA -F ' ' -c \
      "select coalesce(wait_event_type, 'CPU'), coalesce(wait_event, '-') from pg_stat_activity
       where state = 'active' and pid <> pg_backend_pid() and backend_type = 'client backend'" \
      2>/dev/null || true
    echo "--"
    sleep 0.2
  done >"$dir/waits"
}
report_waits() {
  awk '$0 == "--" { n++; next } { c[$0]++ } END {
    printf "active backends per sample (%d samples):", n
    for (k in c) printf " %s %.2f;", k, c[k] / (n ? n : 1); print "" }' "$dir/waits"
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== SQLite, 1 node"
if [ "${TACIT_BENCH_NO_MQTT:-0}" = 1 ]; then
  "$CARGO_TARGET_DIR/release/tacit-load" "$@"
else
  scripts/bench-relay.sh "$@"
fi
for n in ${TACIT_BENCH_NODES:-1 2 3}; do
  echo "== PostgreSQL, $n node(s)"
  sample_waits &
  sampler=$!
  "$CARGO_TARGET_DIR/release/tacit-load" --relay-bin "$dir/relay-on-pg" --nodes "$n" \
    --db-pidfile "$dir/data/postmaster.pid" "$@"
  kill "$sampler"
  wait "$sampler" 2>/dev/null || true
  report_waits
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
