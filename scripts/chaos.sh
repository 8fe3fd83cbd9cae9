#!/usr/bin/env bash
# Fault-injection suite of decay-worker (issue 7): real worker processes against a private
# RabbitMQ node and a private PostgreSQL cluster that this script starts, breaks and always
# tears down. The machine's own services (5672 / 5432) are never touched.
#
#   bash scripts/chaos.sh            # full: ~3000 jobs per scenario, the issue's outage lengths
#   bash scripts/chaos.sh --short    # ~8-10 minutes on 2 cores: fewer jobs, shorter outages
#   bash scripts/chaos.sh --only 1,7 # a subset of the scenarios
#
# Scenarios: 1 kill -9 of random workers · 2 broker kill -9 + restart, three times ·
# 3 broker stop_app / start_app · 4 PostgreSQL fast restart, then stopped and started ·
# 5 malformed messages, ghost ids and jobs whose sources are missing · 6 every id published three
# times, interleaved · 7 consumer_timeout low with one job slower than it · 8 SIGTERM to workers
# under load · 9 broker frozen with SIGSTOP, then SIGCONT · 10 TLS to the broker (mutual) and the
# database with verification on, and a wrong CA refused · 11 a 3-node RabbitMQ cluster whose
# work-queue leader is killed with kill -9 (scenarios 10 and 11: scripts/chaos-prod.sh) ·
# 12 PostgreSQL switchover (primary stopped, streaming standby promoted behind a TCP proxy) ·
# 13 asynchronous replication loses settles acked on the old primary; the reconciler brings
# those jobs back.
#
# Per scenario: a fresh database and queue base, seeded memories, 3 supervised workers (w3 also
# runs the reconciler every 5 s), a producer that inserts jobs in batches and republishes
# whatever was not confirmed, the fault, a drain, a graceful stop, then tests/chaos/check.py
# judges with the database as the truth. The table goes to stdout; the exit code is non-zero
# when any count is non-zero. Logs stay in $CHAOS_OUT (default /tmp/chaos-<time>).
#
# Needs root (the PostgreSQL and RabbitMQ wrappers drop to their users), rabbitmq-server,
# PostgreSQL 15 server binaries, psql, python3, openssl (scenario 10), and a built
# target/debug/decay-worker (built with `cargo build --locked` when missing; CHAOS_BIN overrides).
# Workers run with batches on (DECAY_BATCH_SIZE, default 16 = the prefetch; CHAOS_BATCH_SIZE=1 turns
# them off), so the kill scenarios kill mid-batch.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CHAOS=$ROOT/tests/chaos
MODE=full
ONLY=""
while (($#)); do
  case "$1" in
    --short) MODE=short ;;
    --full) MODE=full ;;
    --only) ONLY=$2; shift ;;
    --only=*) ONLY=${1#--only=} ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "chaos: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

# ---- settings ---------------------------------------------------------------------------------
# Fixed by default, so runs take turns under `flock -o /tmp/chaos.lock` (-o: the daemonized broker
# and database must not inherit the lock); CHAOS_NODE, CHAOS_RMQ_PORT, CHAOS_RMQ_DIST_PORT,
# CHAOS_PG_PORT and CHAOS_TLS_PORT move a run to other ports.
NODE=${CHAOS_NODE:-chaos@localhost}
RMQ_PORT=${CHAOS_RMQ_PORT:-5673}
RMQ_DIST_PORT=${CHAOS_RMQ_DIST_PORT:-25673}
PG_PORT=${CHAOS_PG_PORT:-5433}
AMQP="amqp://guest:guest@127.0.0.1:$RMQ_PORT/%2f"
WORKERS=(w1 w2 w3)

if [ "$MODE" = short ]; then
  N_JOBS=480 BATCH=40 INTERVAL=1.5 SCHED_PER_BATCH=1 DRAIN_TIMEOUT=150
  S1_KILL_EVERY=3 S1_KILLS=10 S3_DOWN=10 S4_DOWN=10 S7_JOBS=120 S7_HOLD=14 S8_TERMS=2 S9_FROZEN=12
  S5_MISSING=20 S4_RESERVE=200
else
  N_JOBS=3000 BATCH=100 INTERVAL=2.5 SCHED_PER_BATCH=2 DRAIN_TIMEOUT=400
  S1_KILL_EVERY=3 S1_KILLS=20 S3_DOWN=15 S4_DOWN=20 S7_JOBS=600 S7_HOLD=75 S8_TERMS=5 S9_FROZEN=20
  S5_MISSING=60 S4_RESERVE=800
fi
# Overrides for exploring: CHAOS_S7_HOLD (seconds the slow job of scenario 7 is held).
S7_HOLD=${CHAOS_S7_HOLD:-$S7_HOLD}
S5_MALFORMED=50
S5_GHOSTS=5
PULSE_JOBS=4     # per batch, 4 jobs whose row and 4 whose sources are locked for PULSE_SECS,
PULSE_SECS=2     # so that faults catch jobs in flight (scenarios 1-4, 8, 9)

SCENARIO_NAMES=("" worker-kill9 broker-kill9 broker-stop-app pg-restart poison triple-publish
  consumer-timeout sigterm broker-sigstop tls cluster-leader-kill9)
SCENARIO_NAMES[12]=pg-switchover SCENARIO_NAMES[13]=pg-async-loss

log() { printf '%s chaos: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
now() { date +%s.%N; }

if [ "$(id -u)" != 0 ]; then
  echo "chaos: must run as root (the PostgreSQL and RabbitMQ wrappers switch users)" >&2
  exit 2
fi
for tool in rabbitmq-server rabbitmqctl psql python3; do
  command -v "$tool" >/dev/null || { echo "chaos: $tool not found" >&2; exit 2; }
done
PGBIN=/usr/lib/postgresql/$(ls /usr/lib/postgresql | sort -n | tail -1)/bin
[ -x "$PGBIN/initdb" ] || { echo "chaos: no PostgreSQL server binaries under $PGBIN" >&2; exit 2; }
SCENARIOS=(1 2 3 4 5 6 7 8 9 10 11 12 13)
[ -n "$ONLY" ] && IFS=, read -r -a SCENARIOS <<<"$ONLY"
WORK=$(mktemp -d /tmp/chaos-data.XXXXXX)
chmod 755 "$WORK"
RD=$WORK/rabbitmq
PGD=$WORK/pg
PGOPTS="-p $PG_PORT -k $PGD -c listen_addresses=127.0.0.1"
# shellcheck source=scripts/chaos-prod.sh
source "$ROOT/scripts/chaos-prod.sh"
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in $RMQ_PORT $RMQ_DIST_PORT $PG_PORT $(prod_ports) 5450 5451 5452; do
  if port_open "$port"; then
    echo "chaos: port $port is in use (another chaos run?); refusing to start" >&2
    rm -rf "$WORK"
    exit 2
  fi
done

BIN_SRC=${CHAOS_BIN:-$ROOT/target/debug/decay-worker}
if [ ! -x "$BIN_SRC" ]; then
  log "building decay-worker"
  (cd "$ROOT" && nice cargo build --locked --bin decay-worker) || { rm -rf "$WORK"; exit 2; }
fi

OUT=${CHAOS_OUT:-/tmp/chaos-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
# A private copy: other builds may replace target/debug/decay-worker while the suite runs.
cp "$BIN_SRC" "$OUT/decay-worker"
W=$OUT/decay-worker
export PGHOST=127.0.0.1 PGPORT=$PG_PORT PGUSER=postgres PGCONNECT_TIMEOUT=3
export AMQP_URL=$AMQP
# Never let a command fall back to the machine's database on 5432: every decay-worker command of
# this script reads DATABASE_URL, set per scenario (this placeholder names no database).
export DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/chaos_unset"
unset DECAY_QUEUE
log "mode $MODE; logs in $OUT; binary $(sha256sum "$W" | cut -c1-12) from $BIN_SRC"

# ---- RabbitMQ node ----------------------------------------------------------------------------
rmq_env() {
  export RABBITMQ_NODENAME=$NODE RABBITMQ_DIST_PORT=$RMQ_DIST_PORT \
    RABBITMQ_MNESIA_BASE=$RD/mnesia RABBITMQ_LOG_BASE=$RD/log \
    RABBITMQ_CONFIG_FILE=$RD/etc/rabbitmq.conf \
    RABBITMQ_ENABLED_PLUGINS_FILE=$RD/etc/enabled_plugins RABBITMQ_PID_FILE=$RD/node.pid
}
rmq_init() {
  mkdir -p "$RD/mnesia" "$RD/log" "$RD/etc"
  printf 'listeners.tcp.default = 127.0.0.1:%s\nloopback_users = none\n' "$RMQ_PORT" \
    >"$RD/etc/rabbitmq.conf"
  echo '[].' >"$RD/etc/enabled_plugins"
  chown -R rabbitmq:rabbitmq "$RD"
}
rmq_pid() { cat "$RD/node.pid" 2>/dev/null; }
rmq_alive() { local p; p=$(rmq_pid) && [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }
rmqctl() { timeout 120 rabbitmqctl -n "$NODE" "$@"; }
rmq_start() {
  rm -f "$RD/node.pid"
  (rmq_env; rabbitmq-server -detached </dev/null >/dev/null 2>&1) || return 1
  (rmq_env; rmqctl wait --timeout 90 "$RD/node.pid") >/dev/null || return 1
}
rmq_kill9() {
  local p; p=$(rmq_pid)
  kill -9 "$p" 2>/dev/null
  for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
}
rmq_teardown() {
  local p; p=$(rmq_pid) || return 0
  [ -n "$p" ] || return 0
  kill -CONT "$p" 2>/dev/null
  if kill -0 "$p" 2>/dev/null; then
    (rmq_env; timeout 60 rabbitmqctl -n "$NODE" stop "$RD/node.pid") >/dev/null 2>&1
    kill -0 "$p" 2>/dev/null && kill -9 "$p" 2>/dev/null
  fi
}
rmq_set_consumer_timeout() { # consumer_timeout_ms channel_tick_ms (read by channels opened later)
  rmqctl eval "application:set_env(rabbit, consumer_timeout, $1), application:set_env(rabbit, channel_tick_interval, $2)." >/dev/null
}
list_queues() { # file
  rmqctl list_queues name messages_ready messages_unacknowledged --no-table-headers -q >"$1" 2>&1
}

# ---- PostgreSQL cluster -----------------------------------------------------------------------
pgctl() { su postgres -c "$PGBIN/pg_ctl -D $PGD/data $*"; }
pg_init() {
  mkdir -p "$PGD"; chown postgres "$PGD"
  su postgres -c "$PGBIN/initdb -D $PGD/data -A trust -U postgres" >"$WORK/initdb.log" 2>&1
}
pg_start() { pgctl "-o '$PGOPTS' -l $PGD/log -w start" >/dev/null; }
pg_restart_fast() { pgctl "-m fast -w restart -o '$PGOPTS'" >/dev/null; }
pg_stop_fast() { pgctl "-m fast -w stop" >/dev/null; }
pg_teardown() { [ -f "$PGD/data/postmaster.pid" ] && pgctl "-m immediate -w stop" >/dev/null 2>&1; }

# ---- PostgreSQL failover (scenarios 12, 13) ---------------------------------------------------
# A primary (FO_A) and a streaming standby (FO_B, pg_basebackup -R) of their own, behind
# tests/chaos/pgproxy.py on FO_PROXY, the stable endpoint every client of these scenarios uses
# (workers, producer, checker). 12: a switchover under load (fast stop of the primary, promote,
# point the proxy at the standby). 13: asynchronous replication's honest loss — replication is
# cut, a batch is settled and acked on the primary, the primary dies, the standby is promoted:
# those jobs are `pending` again in the surviving history and only the reconciler (w3, stale
# after 20 s) brings them back; each then runs exactly once there (the checker's counts).
FO_A=5450 FO_B=5451 FO_PROXY=5452 FOD=""
FO_CUT_BATCH=3      # scenario 13: the batch published after replication is cut
fo_scenario() { [ "$1" = 12 ] || [ "$1" = 13 ]; }
fo_pgctl() { local dir=$1; shift; su postgres -c "$PGBIN/pg_ctl -D $dir $*"; }
fo_opts() { echo "-p $1 -k $FOD -c listen_addresses=127.0.0.1"; }
fo_psql() { local port=$1; shift; psql -X -q -At -h 127.0.0.1 -p "$port" -U postgres "$@"; }
fo_setup() {
  FOD=$WORK/pgfo.$1
  mkdir -p "$FOD"; chown postgres "$FOD"
  su postgres -c "$PGBIN/initdb -D $FOD/a -A trust -U postgres" >"$FOD/initdb.log" 2>&1 || return 1
  fo_pgctl "$FOD/a" "-o '$(fo_opts $FO_A)' -l $FOD/a.log -w start" >/dev/null || return 1
  su postgres -c "$PGBIN/pg_basebackup -h 127.0.0.1 -p $FO_A -U postgres -D $FOD/b -R -X stream" \
    >>"$FOD/initdb.log" 2>&1 || return 1
  fo_pgctl "$FOD/b" "-o '$(fo_opts $FO_B)' -l $FOD/b.log -w start" >/dev/null || return 1
  echo "127.0.0.1:$FO_A" >"$FOD/target"
  python3 "$CHAOS/pgproxy.py" --listen $FO_PROXY --target-file "$FOD/target" \
    --pid-file "$FOD/proxy.pid" 2>>"$FOD/proxy.log" &
  local k
  for k in $(seq 1 50); do port_open $FO_PROXY && break; sleep 0.1; done
  for k in $(seq 1 100); do
    [ "$(fo_psql $FO_A -d postgres -c "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")" = 1 ] && break
    sleep 0.1
  done
  ((k < 100)) || return 1
  port_open $FO_PROXY || return 1
  export PGPORT=$FO_PROXY
}
fo_teardown() {
  [ -n "${FOD:-}" ] || return 0
  [ -f "$FOD/proxy.pid" ] && kill "$(cat "$FOD/proxy.pid")" 2>/dev/null
  local d
  for d in a b; do
    [ -f "$FOD/$d/postmaster.pid" ] && fo_pgctl "$FOD/$d" "-m immediate -w stop" >/dev/null 2>&1
    [ -f "$FOD/$d.log" ] && cp "$FOD/$d.log" "$OUT/s$S/pg-$d.log" 2>/dev/null
  done
  [ -f "$FOD/proxy.log" ] && cp "$FOD/proxy.log" "$OUT/s$S/proxy.log" 2>/dev/null
  rm -f "$FOD/proxy.pid"
  FOD=""
  export PGPORT=$PG_PORT
}
# Point the endpoint at the standby; the proxy drops every open connection.
fo_switch() {
  echo "127.0.0.1:$FO_B" >"$FOD/target"
  kill -USR1 "$(cat "$FOD/proxy.pid")"
}
fo_promote() { fo_pgctl "$FOD/b" "-w promote" >/dev/null || { note FAULTS "promote FAILED"; return 1; }; }
fo_promote_and_switch() { fo_promote && fo_switch; }
# Seconds from $1 until a job settles on the new primary (writes resumed), or "never".
fo_resumed_after() {
  local t=$1 k
  for k in $(seq 1 600); do
    if [ "$(q -c "SELECT count(*) FROM decay_jobs WHERE state = 'completed'
                   AND updated_at > to_timestamp($t)" 2>/dev/null)" -gt 0 ] 2>/dev/null; then
      awk "BEGIN { printf \"%.1f\", $(now) - $t }"; return 0
    fi
    sleep 0.1
  done
  echo never
}
# Scenario 13's producer stops before publishing batch FO_CUT_BATCH until replication is cut,
# and before the next batch until the promotion is done: rows inserted on the doomed primary
# after the cut would vanish with it (the producer's loss, not a worker's), so none are.
fo_producer_hook() { # batch pre|post: after the batch's rows are inserted | after its publish
  [ "$S" = 13 ] && (($1 == FO_CUT_BATCH)) || return 0
  local k
  if [ "$2" = pre ]; then
    touch "$SD/fo.cut.request"
    for k in $(seq 1 600); do [ -e "$SD/fo.cut.done" ] && break; sleep 0.1; done
  else
    for k in $(seq 1 1200); do [ -e "$SD/fo.resume" ] && break; sleep 0.1; done
  fi
}
fo_inject() {
  local t_stop resumed
  if [ "$S" = 12 ]; then
    sleep 5
    t_stop=$(now)
    # A fast stop: the primary's walsender sends its shutdown checkpoint to the standby first,
    # so a switchover loses nothing.
    fo_pgctl "$FOD/a" "-m fast -w stop" >/dev/null
    note FAULTS "primary stopped (fast) under load"
    # The endpoint moves before the standby is promoted (a health check that only tests for a
    # live server does): for 2 s every new connection lands on a read-only standby.
    fo_switch
    sleep 2   # the time a failover manager takes to notice and decide
    fo_promote && note FAULTS "proxy on the standby at once, standby promoted $(awk "BEGIN { printf \"%.1f\", $(now) - $t_stop }") s after the stop"
    healed
    resumed=$(fo_resumed_after "$t_stop")
    note FAULTS "first job settled on the new primary ${resumed} s after the old one stopped"
    echo "$resumed" >"$SD/fo.resumed"
    return 0
  fi
  # 13: wait for the producer to stand at the cut batch, its rows on both servers.
  local k lsn reverted n pending_now t_prom
  for k in $(seq 1 1200); do [ -e "$SD/fo.cut.request" ] && break; sleep 0.1; done
  lsn=$(fo_psql $FO_A -d postgres -c "SELECT pg_current_wal_lsn()")
  for k in $(seq 1 300); do
    [ "$(fo_psql $FO_B -d postgres -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'")" = t ] && break
    sleep 0.1
  done
  # Cut replication: the standby's walreceiver stops (primary_conninfo is reloadable).
  su postgres -c "sed -i '/^primary_conninfo/d' $FOD/b/postgresql.auto.conf"
  fo_psql $FO_B -d postgres -c "SELECT pg_reload_conf()" >/dev/null
  for k in $(seq 1 100); do
    [ "$(fo_psql $FO_A -d postgres -c 'SELECT count(*) FROM pg_stat_replication')" = 0 ] && break
    sleep 0.1
  done
  note FAULTS "replication cut before batch $FO_CUT_BATCH was published"
  touch "$SD/fo.cut.done"
  # The batch is published, run, settled and acked on the primary alone.
  local lo=$((FO_CUT_BATCH * BATCH)) hi=$((FO_CUT_BATCH * BATCH + BATCH - 1))
  for k in $(seq 1 300); do
    [ "$(fo_psql $FO_A -d "$DB" -c "SELECT count(*) FROM decay_jobs WHERE state = 'completed'
          AND id BETWEEN chaos_cid('dcy', $S, $lo) AND chaos_cid('dcy', $S, $hi)")" -ge $((BATCH / 2)) ] && break
    sleep 0.1
  done
  sleep 1
  fo_psql $FO_A -d "$DB" -c "SELECT id FROM decay_jobs WHERE state = 'completed' ORDER BY id" >"$SD/fo.primary.txt"
  fo_psql $FO_B -d "$DB" -c "SELECT id FROM decay_jobs WHERE state = 'completed' ORDER BY id" >"$SD/fo.standby.txt"
  comm -23 "$SD/fo.primary.txt" "$SD/fo.standby.txt" >"$SD/fo.reverted.txt"
  n=$(wc -l <"$SD/fo.reverted.txt")
  # The primary dies with those commits; the standby never saw them.
  fo_pgctl "$FOD/a" "-m immediate -w stop" >/dev/null
  t_prom=$(now)
  fo_promote_and_switch
  note FAULTS "$n job(s) settled and acked on the old primary never reached the standby; primary killed, standby promoted"
  reverted=$(paste -sd, "$SD/fo.reverted.txt" | sed "s/[^,]*/'&'/g")
  pending_now=0
  ((n > 0)) && pending_now=$(q -c "SELECT count(*) FROM decay_jobs WHERE state = 'pending' AND id IN ($reverted)")
  note FAULTS "right after the promotion $pending_now of them are pending again"
  echo "$n $pending_now" >"$SD/fo.reverted"
  healed
  touch "$SD/fo.resume"
  ((n > 0)) || return 0
  for k in $(seq 1 1200); do
    [ "$(q -c "SELECT count(*) FROM decay_jobs WHERE state = 'completed' AND id IN ($reverted)" 2>/dev/null)" = "$n" ] && break
    sleep 0.1
  done
  note FAULTS "all $n back to completed $(awk "BEGIN { printf \"%.1f\", $(now) - $t_prom }") s after the promotion (the reconciler, stale after 20 s)"
}
# Did the fault hit? Sets `hit` and `why` of run_scenario.
fo_hit() {
  local tr; tr=$(cat "$SD"/w[123].log | grep -c 'why="transient"')
  grep -q FAILED "$SD/notes.FAULTS" 2>/dev/null && { hit=0; why="a failover step failed"; return; }
  if [ "$S" = 12 ]; then
    local ro re
    ro=$(cat "$SD"/w[123].log | grep -c 'cannot write')
    re=$(cat "$SD"/w[123].log | grep -c 'why="runner_error"')
    why="$tr transient retr(ies), $ro connection(s) on the standby refused, $re runner-error retr(ies); writes resumed $(cat "$SD/fo.resumed" 2>/dev/null) s after the stop"
    # A failover error retried as a runner error counts against the job's retry budget.
    ((tr > 0 && ro > 0 && re == 0)) || hit=0
    [ "$(cat "$SD/fo.resumed" 2>/dev/null)" = never ] && hit=0
  else
    local n p; read -r n p <"$SD/fo.reverted"
    why="$n settle(s) lost with the old primary, $p pending after the promotion, $republished republished by the reconciler"
    ((n > 0 && p == n && republished > 0)) || hit=0
  fi
}

# ---- teardown, always -------------------------------------------------------------------------
SUP_PIDS=()
BG_PIDS=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "${SD:-}" ]; then touch "$SD/stop"; fi
  for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null; done
  if [ -n "${SD:-}" ]; then
    for w in "${WORKERS[@]}"; do
      [ -f "$SD/$w.pid" ] && kill -9 "$(cat "$SD/$w.pid")" 2>/dev/null
    done
  fi
  for p in "${SUP_PIDS[@]}"; do kill "$p" 2>/dev/null; done
  fo_teardown
  rmq_teardown
  cl_down
  pg_teardown
  if [ -d "$RD/log" ]; then cp -r "$RD/log" "$OUT/rabbitmq-log" 2>/dev/null; fi
  [ -f "$PGD/log" ] && cp "$PGD/log" "$OUT/postgresql.log" 2>/dev/null
  rm -rf "$WORK"
  log "torn down; logs in $OUT"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- helpers for one scenario -----------------------------------------------------------------
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$DB" "$@"; }
cid() { printf '%s_0%02X%023X' "$1" "$2" "$3"; }   # deterministic ids: prefix, scenario, index
note() { local k=$1; shift; printf '%s\n' "$*" >>"$SD/notes.$k"; }  # joined into params.env

worker_env() { # name incarnation
  local reconcile=0
  [ "$1" = w3 ] && reconcile=5s
  exec env DATABASE_URL="$DBURL" AMQP_URL="${DECAY_AMQP:-$AMQP}" DECAY_QUEUE="$BASE" DECAY_WORKER_ID="$1.$2" \
    DECAY_LEASE=4s DECAY_HEARTBEAT=1s DECAY_SHUTDOWN_GRACE=20s DECAY_CONCURRENCY=8 \
    DECAY_PREFETCH=16 DECAY_BATCH_SIZE=${CHAOS_BATCH_SIZE:-16} DECAY_BATCH_LINGER=2ms \
    DECAY_AMQP_HEARTBEAT=2 DECAY_BROKER_TIMEOUT=5s \
    DECAY_RECONCILE_EVERY=$reconcile DECAY_RECONCILE_STALE_AFTER=20s \
    DECAY_HTTP_ADDR=127.0.0.1:0 RUST_LOG="info,cortex_memory::decay::runner=warn" \
    "$W" consume
}

# Restart a worker whenever it exits, until $SD/stop exists. Record every exit; for a worker we
# sent SIGTERM, also how many jobs it left in_progress.
supervise() { # name
  local name=$1 gen=0 pid rc id sig inprog
  while [ ! -e "$SD/stop" ]; do
    gen=$((gen + 1)); id=$name.$gen
    worker_env "$name" "$gen" >>"$SD/$name.log" 2>&1 &
    pid=$!
    echo "$pid" >"$SD/$name.pid"; echo "$id" >"$SD/$name.id"
    wait "$pid"; rc=$?
    sig=none; inprog=-
    [ -e "$SD/sig.$id.KILL" ] && sig=KILL
    if [ -e "$SD/sig.$id.TERM" ]; then
      sig=TERM
      inprog=$(q -c "SELECT count(*) FROM decay_jobs WHERE state = 'in_progress' AND claimed_by = '$id'" 2>/dev/null || echo unknown)
    fi
    echo "$id rc=$rc sig=$sig inprog=$inprog t=$(now)" >>"$SD/exits.log"
    [ -e "$SD/stop" ] && break
    sleep 0.5
  done
}
# A worker one of whose database statements waits on a lock (a claim or settle caught by
# hold_locks), so that a signal sent to it hits a job in flight; fails when there is none.
busy_worker() {
  local ports port pid w
  ports=$(q -c "SELECT client_port FROM pg_stat_activity WHERE application_name = 'decay-worker'
                  AND wait_event_type = 'Lock' AND client_port IS NOT NULL" 2>/dev/null) || return 1
  for port in $(printf '%s\n' $ports | shuf); do
    pid=$(ss -tnpH state established "( sport = :$port and dport = :$PG_PORT )" |
      grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
    for w in "${WORKERS[@]}"; do
      [ -n "$pid" ] && [ "$pid" = "$(cat "$SD/$w.pid")" ] && { echo "$w"; return 0; }
    done
  done
  return 1
}
# Every other victim is a busy worker when there is one, else a random one.
victim() { # k
  if ((($1 % 2) == 0)) && busy_worker; then return 0; fi
  echo "${WORKERS[RANDOM % ${#WORKERS[@]}]}"
}
signal_worker() { # name SIG
  local id pid
  id=$(cat "$SD/$1.id"); pid=$(cat "$SD/$1.pid")
  touch "$SD/sig.$id.$2"
  kill -"$2" "$pid" 2>/dev/null && echo "$id"
}

# Publish ids with `enqueue` until every one is confirmed; `enqueue` prints each confirmed id in
# order and exits non-zero at the first publish the broker did not confirm.
enqueue_confirmed() {
  local todo=("$@") out rc k tries=0
  while ((${#todo[@]})); do
    out=$("$W" enqueue "${todo[@]}" 2>>"$SD/producer.err"); rc=$?
    k=$(printf '%s\n' "$out" | grep -c '^dcy_')
    todo=("${todo[@]:k}")
    if ((rc != 0)); then
      echo x >>"$SD/producer.retries"
      tries=$((tries + 1))
      if ((tries > 240)); then log "s$S producer: giving up on ${#todo[@]} id(s)"; return 1; fi
      sleep 1
    fi
  done
}

# `schedule` one job over memory slot $1 (insert + confirmed publish); on an unconfirmed publish
# the id is printed anyway and republished with `enqueue`.
schedule_one() {
  local m1 m2 out rc id tries=0
  m1=$(cid mem "$S" $((2 * $1))); m2=$(cid mem "$S" $((2 * $1 + 1)))
  while ((tries < 120)); do
    out=$("$W" schedule --kind candidate-compression --memory-ids "$m1,$m2" --json 2>>"$SD/producer.err"); rc=$?
    id=$(printf '%s\n' "$out" | grep -o 'dcy_[0-9A-HJKMNP-TV-Z]\{26\}' | head -1)
    if [ -n "$id" ]; then
      echo "$id" >>"$SD/manifest.txt"
      if ((rc != 0)); then echo x >>"$SD/producer.retries"; enqueue_confirmed "$id"; fi
      return 0
    fi
    tries=$((tries + 1)); sleep 1
  done
  log "s$S producer: schedule kept failing"
}

# Insert jobs lo..hi (SQL jobs over slots 2i, 2i+1), retrying through database outages.
insert_jobs() { # lo hi created_by memory_offset
  local tries=0
  until q -c "INSERT INTO decay_jobs (id, kind, summary_method, source_ids_json, state, scheduled_for, created_at, created_by, updated_at)
      SELECT chaos_cid('dcy', $S, i), 'candidate_compression', 'deterministic_concatenate',
             jsonb_build_array(chaos_cid('mem', $S, $4 + 2 * (i - $1)), chaos_cid('mem', $S, $4 + 2 * (i - $1) + 1)),
             'pending', now(), now(), '$3', now()
        FROM generate_series($1, $2) i ON CONFLICT (id) DO NOTHING" >/dev/null 2>>"$SD/producer.err"; do
    tries=$((tries + 1))
    ((tries > 120)) && { log "s$S producer: insert kept failing"; return 1; }
    sleep 1
  done
}

# Hold row locks for a while so that jobs are in flight when a fault hits. On source memories:
# the job's settle (the edges' foreign-key check needs a key-share lock) waits. On job rows: the
# worker's claim waits, and if the worker dies meanwhile, the claim still commits afterwards and
# only lease recovery can finish the job.
hold_locks() { # table seconds ids...
  local table=$1 secs=$2; shift 2
  local list; list=$(printf "'%s'," "$@"); list=${list%,}
  (printf "BEGIN; SELECT id FROM %s WHERE id IN (%s) FOR UPDATE; SELECT pg_sleep(%s); COMMIT;\n" \
    "$table" "$list" "$secs" | q >/dev/null 2>&1) &
}

# Publish raw bodies (a JSON file of them) through our own AMQP client, confirmed, retrying
# whatever the broker did not confirm.
publish_raw() { # file indexes (comma-separated)
  local out tries=0 file=$1 todo=$2
  while [ -n "$todo" ]; do
    out=$(python3 "$CHAOS/amqp.py" --url "$AMQP" publish --exchange "$BASE" --routing-key "$BASE" \
      --bodies "$file" --only "$todo" 2>>"$SD/producer.err") && return 0
    # drop the confirmed ones and retry the rest
    local done_list; done_list=" $(echo $out) "
    todo=$(echo "$todo" | tr ',' '\n' | while read -r i; do [[ "$done_list" == *" $i "* ]] || echo "$i"; done | paste -sd,)
    echo x >>"$SD/producer.retries"
    tries=$((tries + 1)); ((tries > 120)) && return 1
    sleep 1
  done
}

producer() {
  local nb=$((N / BATCH)) b lo hi i id ids=() list=() prev1=() prev2=() mems=() slot=$N slow_pid=""
  local poison_total=0 per_batch=0 missing_per_batch=0 next_poison=0 next_missing=0
  if [ "$S" = 5 ]; then
    poison_total=$(python3 -c "import json; print(len(json.load(open('$SD/poison.json'))))")
    per_batch=$(((poison_total + nb - 1) / nb))
    missing_per_batch=$(((S5_MISSING + nb - 1) / nb))
  fi
  for ((b = 0; b < nb; b++)); do
    [ -e "$SD/stop" ] && break
    lo=$((b * BATCH)); hi=$((lo + BATCH - 1))
    insert_jobs "$lo" "$hi" operator:chaos $((2 * lo)) || break
    ids=()
    for ((i = lo; i <= hi; i++)); do printf -v id '%s_0%02X%023X' dcy "$S" "$i"; ids+=("$id"); done
    printf '%s\n' "${ids[@]}" >>"$SD/manifest.txt"
    fo_producer_hook "$b" pre
    if [ "$PULSE" = 1 ]; then
      hold_locks decay_jobs "$PULSE_SECS" "${ids[@]:0:PULSE_JOBS}"
      mems=()
      for ((i = lo + PULSE_JOBS; i < lo + 2 * PULSE_JOBS; i++)); do printf -v id '%s_0%02X%023X' mem "$S" $((2 * i)); mems+=("$id"); done
      hold_locks memories "$PULSE_SECS" "${mems[@]}"; sleep 0.2
    fi
    if [ "$S" = 7 ] && ((b == 0)); then
      # The slow job: its settle waits S7_HOLD s for the lock, longer than consumer_timeout.
      # Published three times like any id may be (duplicates are meant to be harmless), by an
      # enqueue of its own: enqueue's mark_published waits for that job's row, so it would
      # hold up the rest of the producer.
      hold_locks memories "$S7_HOLD" "$(cid mem "$S" 0)" "$(cid mem "$S" 1)"; sleep 0.3
      enqueue_confirmed "${ids[0]}" "${ids[0]}" "${ids[0]}" & slow_pid=$!
      ids=("${ids[@]:1}")
      note FAULTS "job $(cid dcy "$S" 0) (published 3 times) held ${S7_HOLD}s by a row lock, consumer_timeout 5 s"
    fi
    if [ "$S" = 6 ]; then
      # Every id three times: this batch, then the previous two batches again, shuffled.
      list=("${ids[@]}" $(printf '%s\n' "${prev1[@]}" | shuf) $(printf '%s\n' "${prev2[@]}" | shuf))
      prev2=("${prev1[@]}"); prev1=("${ids[@]}")
      enqueue_confirmed "${list[@]}"
    else
      enqueue_confirmed "${ids[@]}"
    fi
    fo_producer_hook "$b" post
    if [ "$S" = 5 ]; then
      if ((next_missing < S5_MISSING)); then
        local mlo=$((0x100000 + next_missing)) mhi=$((0x100000 + next_missing + missing_per_batch - 1))
        ((mhi >= 0x100000 + S5_MISSING)) && mhi=$((0x100000 + S5_MISSING - 1))
        insert_jobs "$mlo" "$mhi" operator:chaos-missing $((0x800000 + 2 * next_missing))
        local mids=()
        for ((i = mlo; i <= mhi; i++)); do printf -v id '%s_0%02X%023X' dcy "$S" "$i"; mids+=("$id"); done
        printf '%s\n' "${mids[@]}" >>"$SD/manifest.txt"
        enqueue_confirmed "${mids[@]}"
        next_missing=$((mhi - 0x100000 + 1))
      fi
      if ((next_poison < poison_total)); then
        local end=$((next_poison + per_batch)); ((end > poison_total)) && end=$poison_total
        publish_raw "$SD/poison.json" "$(seq -s, "$next_poison" $((end - 1)))"
        next_poison=$end
      fi
    fi
    for ((i = 0; i < SCHED_PER_BATCH; i++)); do
      schedule_one "$slot"; slot=$((slot + 1))
      # scenario 6: the scheduled job's id twice more
      [ "$S" = 6 ] && id=$(tail -1 "$SD/manifest.txt") && enqueue_confirmed "$id" "$id"
    done
    sleep "$INTERVAL"
  done
  if [ "$S" = 6 ]; then
    enqueue_confirmed $(printf '%s\n' "${prev1[@]}" | shuf) $(printf '%s\n' "${prev2[@]}" | shuf)
    enqueue_confirmed $(printf '%s\n' "${prev1[@]}" | shuf)
  fi
  [ -n "$slow_pid" ] && wait "$slow_pid"
  now >"$SD/producer.done"
}

drained_once() {
  local nt recorded counts
  nt=$(q -c "SELECT count(*) FROM decay_jobs WHERE state IN ('pending', 'in_progress')" 2>/dev/null) || return 1
  [ "$nt" = 0 ] || return 1
  # Dead letters are recorded in the database; the dead queue only holds those not yet moved.
  recorded=$(q -c "SELECT count(*) FROM dead_letters WHERE queue = '$BASE'" 2>/dev/null) || return 1
  counts=$(python3 "$CHAOS/amqp.py" --url "$AMQP" --timeout 3 counts "$BASE" "$BASE.retry.1s" \
    "$BASE.retry.10s" "$BASE.retry.1m" "$BASE.retry.10m" "$BASE.retry.1h" "$BASE.dead" 2>/dev/null) || return 1
  echo "$counts" | awk -v base="$BASE" -v dead="$EXPECT_DEAD" -v recorded="$recorded" '
    $1 == base ".dead" { if ($2 + recorded < dead) bad = 1; next }
    { if ($2 != 0) bad = 1 }
    END { exit bad }'
}

wait_drain() {
  local deadline=$((SECONDS + DRAIN_TIMEOUT)) streak=0 first=""
  while ((SECONDS < deadline)); do
    if drained_once; then
      [ -z "$first" ] && first=$(now)
      streak=$((streak + 1)); ((streak >= 2)) && { echo "$first"; return 0; }
    else
      streak=0; first=""
    fi
    sleep 1
  done
  return 1
}

stop_workers() {
  local w deadline
  touch "$SD/stop"
  for w in "${WORKERS[@]}"; do signal_worker "$w" TERM >/dev/null; done
  deadline=$((SECONDS + 45))
  for p in "${SUP_PIDS[@]}"; do
    while kill -0 "$p" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    if kill -0 "$p" 2>/dev/null; then
      log "s$S: a worker did not stop within 45 s of SIGTERM; killing it"
      for w in "${WORKERS[@]}"; do kill -9 "$(cat "$SD/$w.pid")" 2>/dev/null; done
      echo "hung rc=timeout sig=TERM inprog=unknown" >>"$SD/exits.log"
      wait "$p" 2>/dev/null
    fi
  done
  SUP_PIDS=()
}

# ---- the faults -------------------------------------------------------------------------------
healed() { now >"$SD/t_fault_healed"; }   # the last call marks when the last fault ended
inject() {
  healed
  case $S in
    1)
      local k w id
      for ((k = 0; k < S1_KILLS; k++)); do
        sleep "$S1_KILL_EVERY"
        w=$(victim "$k")
        id=$(signal_worker "$w" KILL) && note FAULTS "kill -9 $id"
        healed
      done
      ;;
    2)
      local k
      for k in 1 2 3; do
        sleep 4
        rmq_kill9; note FAULTS "broker kill -9 #$k"
        sleep 2
        rmq_start || { log "s2: broker did not come back"; note FAULTS "broker restart #$k FAILED"; }
        healed
        sleep 6
      done
      ;;
    3)
      sleep 5
      rmqctl stop_app >/dev/null; note FAULTS "stop_app for ${S3_DOWN}s"
      sleep "$S3_DOWN"
      rmqctl start_app >/dev/null || note FAULTS "start_app FAILED"
      healed
      ;;
    4)
      sleep 5
      pg_restart_fast; note FAULTS "pg fast restart"
      sleep 8
      pg_stop_fast; note FAULTS "pg stopped ${S4_DOWN}s"
      local t_down; t_down=$SECONDS
      publish_raw "$SD/reserve.json" "$(seq -s, 0 $((S4_RESERVE - 1)))" &&
        note FAULTS "$S4_RESERVE job ids published while the database was down"
      local rest=$((S4_DOWN - (SECONDS - t_down)))
      ((rest > 0)) && sleep "$rest"
      pg_start || note FAULTS "pg start FAILED"
      healed
      ;;
    7)
      # While the slow job is held, nothing may wait behind it. Late in the hold, publish 20
      # probe jobs; just before the lock goes, count (a) probes not yet terminal and (b) worker
      # statements piled up on the slow job's lock besides the one settling it: redeliveries
      # and duplicates of it that wait with their delivery unacked, each holding a permit.
      sleep $((S7_HOLD - 12))
      local probes=()
      mapfile -t probes < <(q -c "SELECT id FROM decay_jobs WHERE id BETWEEN chaos_cid('dcy', $S, $((0x200000))) AND chaos_cid('dcy', $S, $((0x2FFFFF))) ORDER BY id")
      enqueue_confirmed "${probes[@]}" &
      sleep 9
      local pending piled
      pending=$(q -c "SELECT count(*) FROM decay_jobs WHERE id BETWEEN chaos_cid('dcy', $S, $((0x200000))) AND chaos_cid('dcy', $S, $((0x2FFFFF)))
                        AND state IN ('pending', 'in_progress')")
      piled=$(q -c "SELECT greatest(count(*) - 1, 0) FROM pg_stat_activity
                     WHERE application_name = 'decay-worker' AND wait_event_type = 'Lock'
                       AND query NOT ILIKE '%last_published_at%'")
      echo $((pending + piled)) >"$SD/stalled"
      note FAULTS "just before the release: $pending of ${#probes[@]} probe job(s) not terminal, $piled delivery(ies) of the slow job waiting on its lock"
      sleep 4
      healed
      ;;
    8)
      local k w id
      for ((k = 0; k < S8_TERMS; k++)); do
        sleep 6
        w=$(victim "$k")
        id=$(signal_worker "$w" TERM) && note FAULTS "SIGTERM $id"
        healed
      done
      ;;
    9)
      sleep 5
      kill -STOP "$(rmq_pid)"; note FAULTS "broker SIGSTOP ${S9_FROZEN}s"
      sleep "$S9_FROZEN"
      kill -CONT "$(rmq_pid)"
      healed
      ;;
    10|11) prod_inject ;;
    12|13) fo_inject ;;
    *) : ;;
  esac
}

run_scenario() {
  S=$1
  SD=$OUT/s$S
  rm -rf "$SD"; mkdir -p "$SD"
  DB=chaos_s$S
  DBURL="postgres://postgres@127.0.0.1:$PGPORT/$DB"   # PGPORT: the proxy in 12, 13
  BASE="chaos.s$S.$(date +%s)"
  prod_setup "$S" || return 1   # scenarios 10, 11: TLS URLs, the cluster
  # for schedule / enqueue / dead-letters
  export DATABASE_URL=$DBURL DECAY_QUEUE=$BASE AMQP_URL=${DECAY_AMQP:-$AMQP}
  N=$N_JOBS
  [ "$S" = 7 ] && N=$S7_JOBS
  PULSE=0
  case $S in 1|2|3|4|8|9|12) PULSE=1 ;; esac
  local slots=$((N + (N / BATCH) * SCHED_PER_BATCH + 8)) reserve=0
  [ "$S" = 4 ] && reserve=$S4_RESERVE
  [ "$S" = 7 ] && reserve=20
  EXPECT_DEAD=0
  : >"$SD/manifest.txt"; : >"$SD/exits.log"
  if [ "$S" = 5 ]; then
    python3 "$CHAOS/poison.py" "$S" "$S5_MALFORMED" "$S5_GHOSTS" >"$SD/poison.json"
    EXPECT_DEAD=$((S5_MALFORMED + S5_GHOSTS))
  else
    echo '[]' >"$SD/poison.json"
  fi
  log "s$S ${SCENARIO_NAMES[$S]}: $N jobs, base $BASE"

  PGOPTIONS='--client-min-messages=warning' psql -X -q -d postgres \
    -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null || return 1
  DATABASE_URL=$DBURL "$W" migrate 2>>"$SD/setup.log" || return 1
  q >/dev/null <<SQL || return 1
CREATE FUNCTION chaos_cid(prefix text, s int, i bigint) RETURNS text LANGUAGE sql IMMUTABLE AS
\$\$ SELECT prefix || '_0' || lpad(upper(to_hex(s)), 2, '0') || lpad(upper(to_hex(i)), 23, '0') \$\$;
INSERT INTO memories (id, memory_type, status, claim, source_events_json, domains_json,
                      confidence, authority, created_at, updated_at)
SELECT chaos_cid('mem', $S, i), 'semantic', 'active', 'chaos claim ' || i,
       '["evt_01ARZ3NDEKTSV4RRFFQ69G5FAV"]', '["ops"]', 0.5 + (i % 5) / 10.0,
       (ARRAY['user', 'agent', 'tool', 'derived'])[1 + i % 4], now(), now()
  FROM generate_series(0, 2 * ($slots + $reserve) - 1) i;
SQL
  if ((reserve)); then
    # Jobs inserted now, published later by the fault injector: in scenario 4 straight to the
    # broker while PostgreSQL is down (any AMQP client can produce), in scenario 7 as probes
    # late in the slow job's hold. Their last_published_at lies in the future, so the
    # reconciler leaves them alone: if a message of theirs were lost, nothing would mask it.
    insert_jobs $((0x200000)) $((0x200000 + reserve - 1)) operator:chaos $((2 * slots)) || return 1
    q -c "UPDATE decay_jobs SET last_published_at = now() + interval '1 day' WHERE id BETWEEN chaos_cid('dcy', $S, $((0x200000))) AND chaos_cid('dcy', $S, $((0x2FFFFF)))" >/dev/null
    q -c "SELECT id FROM decay_jobs WHERE id BETWEEN chaos_cid('dcy', $S, $((0x200000))) AND chaos_cid('dcy', $S, $((0x2FFFFF))) ORDER BY id" >>"$SD/manifest.txt"
    q -c "SELECT id FROM decay_jobs WHERE id BETWEEN chaos_cid('dcy', $S, $((0x200000))) AND chaos_cid('dcy', $S, $((0x2FFFFF))) ORDER BY id" |
      python3 -c 'import json, sys; json.dump([json.dumps({"job_id": l.strip()}).encode().hex() for l in sys.stdin if l.strip()], sys.stdout)' \
      >"$SD/reserve.json"
  fi
  [ "$S" = 7 ] && rmq_set_consumer_timeout 5000 1000
  local bl_before
  bl_before=$(grep -c "delivery acknowledgement on channel" "$RD/log/$NODE.log" 2>/dev/null)

  SUP_PIDS=()
  for w in "${WORKERS[@]}"; do supervise "$w" 2>/dev/null & SUP_PIDS+=($!); done
  sleep 1
  local t0; t0=$(now)
  producer & local prod=$!; BG_PIDS+=("$prod")
  inject
  # Catch-up: from the end of the last fault until every job created before it is terminal.
  local t_fault t_caught="" deadline=$((SECONDS + DRAIN_TIMEOUT))
  t_fault=$(cat "$SD/t_fault_healed")
  while ((SECONDS < deadline)); do
    if [ "$(q -c "SELECT count(*) FROM decay_jobs WHERE state IN ('pending', 'in_progress')
                   AND created_at <= to_timestamp($t_fault)" 2>/dev/null)" = 0 ]; then
      t_caught=$(now); break
    fi
    sleep 0.5
  done
  wait "$prod"
  local t_heal; t_heal=$(now)
  log "s$S: faults over, producer done after $(awk "BEGIN { printf \"%.0f\", $t_heal - $t0 }") s; draining"
  local t_drained drained=0
  if t_drained=$(wait_drain); then drained=1; else t_drained=""; log "s$S: did not drain within $DRAIN_TIMEOUT s"; fi

  # Idle workers must hold nothing unacked; then stop them and look again.
  list_queues "$SD/queues_pre.txt"
  local tries
  for tries in 1 2 3; do
    awk -v b="$BASE" '$1 == b && $3 > 0 { bad = 1 } END { exit !bad }' "$SD/queues_pre.txt" || break
    sleep 2; list_queues "$SD/queues_pre.txt"
  done
  rmqctl list_connections name --no-table-headers -q >"$SD/connections_pre.txt" 2>&1
  stop_workers
  list_queues "$SD/queues_post.txt"
  DATABASE_URL=$DBURL "$W" dead-letters list --json --limit 100000 --queue "$BASE" \
    >"$SD/dead.json" 2>>"$SD/setup.log"
  [ "$S" = 7 ] && rmq_set_consumer_timeout 1800000 60000

  local bl_after; bl_after=$(grep -c "delivery acknowledgement on channel" "$RD/log/$NODE.log" 2>/dev/null)
  [ "$S" = 7 ] && note BROKER "$((bl_after - bl_before)) consumer_timeout channel closure(s) in the broker log"
  local reconnects=0 w
  for w in "${WORKERS[@]}"; do
    reconnects=$((reconnects + $(grep -c "reconnecting" "$SD/$w.log" 2>/dev/null)))
  done
  note WORKERS "$reconnects worker reconnect warning(s); $(wc -l <"$SD/connections_pre.txt") broker connection(s) open before the stop"
  local republished
  republished=$(grep -ho 'republished=[0-9]*' "$SD"/w3.log 2>/dev/null | cut -d= -f2 | awk '{ n += $1 } END { print n + 0 }')
  note WORKERS "$republished message(s) republished by the reconciler"
  # Did the fault really hit? A scenario that did not exercise its fault fails.
  local hit=1 why=""
  local logs=("$SD"/w1.log "$SD"/w2.log "$SD"/w3.log)
  case $S in
    1) why="$(grep -c 'sig=KILL' "$SD/exits.log") worker(s) killed"
       grep -q 'sig=KILL' "$SD/exits.log" || hit=0 ;;
    2|3) why="$reconnects reconnect(s)"
       ((reconnects > 0)) || hit=0
       grep -q FAILED "$SD/notes.FAULTS" 2>/dev/null && { hit=0; why="$why; a broker restart failed"; } ;;
    4) local tr; tr=$(cat "${logs[@]}" | grep -c 'why="transient"')
       why="$tr transient retr(ies) while the database was away"
       ((tr > 0)) || hit=0
       grep -q FAILED "$SD/notes.FAULTS" 2>/dev/null && { hit=0; why="$why; pg start failed"; } ;;
    5) why="$(python3 -c "import json; print(len(json.load(open('$SD/poison.json'))))") poison message(s) published" ;;
    6) why="every id published three times" ;;
    7) why="$((bl_after - bl_before)) consumer_timeout closure(s), $reconnects reconnect(s)"
       (((bl_after - bl_before) > 0 && reconnects > 0)) || hit=0 ;;
    8) local t; t=$(grep -c SIGTERM "$SD/notes.FAULTS" 2>/dev/null)
       why="$t worker(s) sent SIGTERM under load"
       ((t > 0)) || hit=0 ;;
    9) local hb; hb=$(cat "${logs[@]}" | grep -c "haven't received anything from the server")
       why="$hb connection(s) closed by the AMQP heartbeat"
       ((hb > 0)) || hit=0 ;;
    10|11) why=$(prod_exercised "$S") || hit=0 ;;
    12|13) fo_hit ;;
  esac
  local retries=0
  [ -f "$SD/producer.retries" ] && retries=$(wc -l <"$SD/producer.retries")
  note PRODUCER "$retries unconfirmed publish/insert attempt(s) retried by the producer"
  {
    echo "SCENARIO=$S"; echo "NAME=${SCENARIO_NAMES[$S]}"; echo "DB=$DB"; echo "BASE=$BASE"
    echo "PGHOST=127.0.0.1"; echo "PGPORT=$PGPORT"; echo "MODE=$MODE"
    echo "T_START=$t0"; echo "T_HEAL=$t_heal"; echo "T_DRAINED=$t_drained"; echo "DRAINED=$drained"
    echo "T_FAULT_HEALED=$t_fault"; echo "T_CAUGHT_UP=$t_caught"
    echo "EXERCISED=$hit"; echo "EXERCISED_WHY=$why"
    [ -f "$SD/stalled" ] && echo "STALLED=$(cat "$SD/stalled")"
    echo "DRAIN_TIMEOUT=$DRAIN_TIMEOUT"
    local k
    for k in FAULTS PRODUCER BROKER WORKERS; do
      [ -f "$SD/notes.$k" ] && echo "NOTE_$k=$(paste -sd';' "$SD/notes.$k" | sed 's/;/; /g')"
    done
  } >"$SD/params.env"
  python3 "$CHAOS/check.py" scenario "$SD" >&2
  BG_PIDS=()
  prod_teardown "$S"
  # The next scenario starts from a healthy broker.
  rmq_alive || rmq_start
  return 0
}

# ---- main -------------------------------------------------------------------------------------
log "starting RabbitMQ node $NODE on $RMQ_PORT and PostgreSQL on $PG_PORT"
rmq_init
prod_prepare || exit 2
prod_rmq_conf
rmq_start || { log "RabbitMQ did not start (see $RD/log)"; exit 2; }
pg_init || { log "initdb failed"; cat "$WORK/initdb.log" >&2; exit 2; }
pg_start || { log "PostgreSQL did not start"; exit 2; }

T_SUITE=$SECONDS
for s in "${SCENARIOS[@]}"; do
  if fo_scenario "$s"; then
    S=$s; mkdir -p "$OUT/s$s"
    fo_setup "$s" || { log "s$s: primary/standby/proxy setup failed (see $WORK/pgfo.$s)"; fo_teardown; continue; }
  fi
  run_scenario "$s" || { log "s$s: setup failed"; prod_teardown "$s"; }
  fo_scenario "$s" && fo_teardown
done
log "suite took $((SECONDS - T_SUITE)) s"
echo
echo "## chaos suite ($MODE), $(date -u +%Y-%m-%dT%H:%MZ), $((SECONDS - T_SUITE)) s"
echo
python3 "$CHAOS/check.py" table "$OUT"
