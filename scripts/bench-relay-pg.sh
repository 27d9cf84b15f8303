#!/usr/bin/env bash
# The relay on SQLite and on PostgreSQL (one node), side by side.
#
#   scripts/bench-relay-pg.sh [tacit-load flags...]   e.g. --scenarios a --messages-per-pair 1000
#
# Builds the relay and the load generator in release, starts a private
# PostgreSQL server (initdb into a temporary directory as the postgres
# user when run as root, a free port on 127.0.0.1; fsync and
# synchronous_commit on), runs tacit-load against the relay on SQLite, then
# against the relay on PostgreSQL (a wrapper given as --relay-bin creates a
# fresh database for every relay tacit-load starts and passes its URL as
# --db), and prints the server's CPU time over that run (utime + stime of
# the postmaster, its children and its reaped children). Everything is
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
name="bench_\$(date +%s%N)"
"$bin/createdb" -h 127.0.0.1 -p $port -U postgres "\$name"
args=(); next=0
for a in "\$@"; do
  if [ \$next = 1 ]; then args+=("postgres://postgres@127.0.0.1:$port/\$name"); next=0; continue; fi
  [ "\$a" = --db ] && next=1
  args+=("\$a")
done
exec "$CARGO_TARGET_DIR/release/tacit-relay" "\${args[@]}"
WRAP
chmod +x "$dir/relay-on-pg"

server_cpu() {
  local pm total tck
  pm=$(head -1 "$dir/data/postmaster.pid")
  tck=$(getconf CLK_TCK)
  total=$(awk '{print $14+$15+$16+$17}' "/proc/$pm/stat")
  for p in $(pgrep -P "$pm"); do
    total=$((total + $(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  python3 -c "print($total / $tck)"
}

echo "== SQLite"
"$CARGO_TARGET_DIR/release/tacit-load" "$@"
echo "== PostgreSQL, one node"
before=$(server_cpu)
"$CARGO_TARGET_DIR/release/tacit-load" --relay-bin "$dir/relay-on-pg" "$@"
sleep 1
after=$(server_cpu)
python3 -c "print('PostgreSQL server CPU over the run: %.2f s' % ($after - $before))"
