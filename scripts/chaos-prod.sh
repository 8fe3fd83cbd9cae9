# Scenarios 10 and 11 of scripts/chaos.sh (sourced by it, not run on its own): production
# deployments (issue 12).
#
# 10 tls: the suite's RabbitMQ node gets a TLS listener that requires a client certificate, and
#    its PostgreSQL runs with ssl=on; certificates (a CA, server certificates for 127.0.0.1 and
#    localhost, a client certificate, and a second, wrong CA) are made here with openssl. Workers
#    and producers run over TLS on both with verification on (amqps:// with --amqp-ca-file and
#    a client certificate; sslmode=verify-full with sslrootcert=). Mid-run, the wrong CA is tried
#    against the broker (enqueue, consume) and the database (jobs stats): each must be refused
#    with exit 2 and one line naming the certificate problem.
# 11 cluster-leader-kill9: a private 3-node RabbitMQ cluster (the work queue is a quorum queue
#    with a member on every node); workers get all three URLs. Under load the node leading the
#    work queue is killed with kill -9, then started again. Reported: how long until a job
#    created after the kill was consumed, and until the node was back.
#
# Uses from chaos.sh: log, note, now, q, rmqctl, pg_restart_fast, PGOPTS, PGD, RD, NODE, AMQP,
# WORK, SD, S, BASE, DB, PG_PORT and the hooks it calls (prod_* below).

TLS_PORT=${CHAOS_TLS_PORT:-5674}
CL_PORTS=(5681 5682 5683)
CL_NODES=(chaosc1@localhost chaosc2@localhost chaosc3@localhost)
CERTS=$WORK/certs
CL=$WORK/cluster
PGOPTS_PLAIN=$PGOPTS

prod_wanted() { # scenario: is it in this run?
  local s
  for s in "${SCENARIOS[@]}"; do [ "$s" = "$1" ] && return 0; done
  return 1
}

# Ports scenarios 10 and 11 need, to refuse a start that would collide with another run.
prod_ports() {
  prod_wanted 10 && echo "$TLS_PORT"
  if prod_wanted 11; then
    printf '%s\n' "${CL_PORTS[@]}"
    printf '2%s\n' "${CL_PORTS[@]}"
  fi
}

# ---- certificates -----------------------------------------------------------------------------
prod_certs() { # dir: ca, wrong-ca, server (127.0.0.1, localhost), client
  local d=$1 ca
  mkdir -p "$d"
  (
    set -e
    cd "$d"
    for ca in ca wrong-ca; do
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -keyout "$ca.key" -out "$ca.pem" -subj "/CN=decay chaos $ca" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
    done
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' >server.ext
    printf 'extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n' >client.ext
    for who in server client; do
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$who.key" -out "$who.csr" -subj "/CN=decay chaos $who"
      openssl x509 -req -in "$who.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
        -extfile "$who.ext" -out "$who.pem"
    done
  ) >"$d/openssl.log" 2>&1
}

# Called by chaos.sh before the services start: certificates and the TLS listener of the node.
prod_prepare() {
  if prod_wanted 10; then
    command -v openssl >/dev/null || { echo "chaos: openssl not found (scenario 10)" >&2; return 1; }
    prod_certs "$CERTS" || { log "openssl failed: $(tail -3 "$CERTS/openssl.log")"; return 1; }
    chmod 755 "$CERTS"; chmod 644 "$CERTS"/*.pem "$CERTS"/*.key
    # The broker's copy (its user reads it) and the database's (PostgreSQL wants its key 0600).
    mkdir -p "$RD/tls" "$PGD/tls"
    cp "$CERTS"/{ca.pem,server.pem,server.key} "$RD/tls/"
    cp "$CERTS"/{ca.pem,server.pem,server.key} "$PGD/tls/"
    chown -R postgres "$PGD/tls"; chmod 600 "$PGD/tls/server.key"
  fi
}

# Called by chaos.sh right after rmq_init: a TLS listener on the suite's node (scenario 10).
prod_rmq_conf() {
  prod_wanted 10 || return 0
  cat >>"$RD/etc/rabbitmq.conf" <<EOF
listeners.ssl.default = 127.0.0.1:$TLS_PORT
ssl_options.cacertfile = $RD/tls/ca.pem
ssl_options.certfile = $RD/tls/server.pem
ssl_options.keyfile = $RD/tls/server.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = true
EOF
  chown -R rabbitmq:rabbitmq "$RD"
}

# ---- the cluster (scenario 11) ----------------------------------------------------------------
cl_env() { # i (1..3): run the rest of the command line with node i's environment
  local i=$1 d=$CL/n$1; shift
  env RABBITMQ_NODENAME="${CL_NODES[i - 1]}" RABBITMQ_DIST_PORT="2${CL_PORTS[i - 1]}" \
    RABBITMQ_MNESIA_BASE="$d/mnesia" RABBITMQ_LOG_BASE="$d/log" \
    RABBITMQ_CONFIG_FILE="$d/rabbitmq.conf" RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins" \
    RABBITMQ_PID_FILE="$d/node.pid" "$@"
}
cl_start() { # i
  local i=$1 d=$CL/n$1
  if [ ! -d "$d" ]; then
    mkdir -p "$d/mnesia" "$d/log"
    printf 'listeners.tcp.default = 127.0.0.1:%s\nloopback_users = none\n' "${CL_PORTS[i - 1]}" >"$d/rabbitmq.conf"
    echo '[].' >"$d/enabled_plugins"
    chown -R rabbitmq:rabbitmq "$d"
  fi
  rm -f "$d/node.pid"
  cl_env "$i" rabbitmq-server -detached </dev/null >/dev/null 2>&1 || return 1
  cl_env "$i" timeout 120 rabbitmqctl -n "${CL_NODES[i - 1]}" wait --timeout 100 "$d/node.pid" >/dev/null
}
cl_pid() { cat "$CL/n$1/node.pid" 2>/dev/null; }
cl_up() {
  local i
  mkdir -p "$CL"; chmod 755 "$CL"
  for i in 1 2 3; do cl_start "$i" || return 1; done
  for i in 2 3; do
    timeout 120 rabbitmqctl -n "${CL_NODES[i - 1]}" stop_app >/dev/null &&
      timeout 120 rabbitmqctl -n "${CL_NODES[i - 1]}" join_cluster "${CL_NODES[0]}" >/dev/null 2>&1 &&
      timeout 120 rabbitmqctl -n "${CL_NODES[i - 1]}" start_app >/dev/null || return 1
  done
  timeout 60 rabbitmqctl -n "${CL_NODES[0]}" cluster_status >"$CL/cluster_status.txt" 2>&1
}
cl_down() {
  local i p
  [ -d "$CL" ] || return 0
  for i in 1 2 3; do
    p=$(cl_pid "$i") || continue
    [ -n "$p" ] && kill -0 "$p" 2>/dev/null || continue
    timeout 60 rabbitmqctl -n "${CL_NODES[i - 1]}" stop "$CL/n$i/node.pid" >/dev/null 2>&1
    kill -0 "$p" 2>/dev/null && kill -9 "$p" 2>/dev/null
  done
  for i in 1 2 3; do
    [ -d "$CL/n$i/log" ] && cp -r "$CL/n$i/log" "$OUT/cluster-n$i-log" 2>/dev/null
  done
  rm -rf "$CL"
}
# The index (1..3) of the node leading quorum queue $1, asked of any live node.
cl_leader() {
  local i out
  for i in 1 2 3; do
    out=$(timeout 30 rabbitmq-queues -n "${CL_NODES[i - 1]}" quorum_status "$1" --formatter json 2>/dev/null) || continue
    printf '%s' "$out" | python3 -c '
import json, sys
names = sys.argv[1:]
for m in json.load(sys.stdin):
    if str(m.get("Raft State", "")).lower() == "leader":
        print(names.index(m["Node Name"]) + 1)
        break' "${CL_NODES[@]}" && return 0
  done
  return 1
}

# ---- per-scenario hooks -----------------------------------------------------------------------
# Before the scenario's database is made: switch the suite to TLS / to the cluster.
prod_setup() { # scenario
  case $1 in
    10)
      PGOPTS="$PGOPTS_PLAIN -c ssl=on -c ssl_cert_file=$PGD/tls/server.pem -c ssl_key_file=$PGD/tls/server.key -c ssl_ca_file=$PGD/tls/ca.pem"
      pg_restart_fast || return 1
      DBURL="$DBURL?sslmode=verify-full&sslrootcert=$CERTS/ca.pem"
      DECAY_AMQP="amqps://guest:guest@127.0.0.1:$TLS_PORT/%2f"
      export DECAY_AMQP_CA_FILE=$CERTS/ca.pem DECAY_AMQP_CLIENT_CERT=$CERTS/client.pem \
        DECAY_AMQP_CLIENT_KEY=$CERTS/client.key
      ;;
    11)
      log "s11: starting a 3-node RabbitMQ cluster on ${CL_PORTS[*]}"
      local t; t=$(now)
      cl_up || { log "s11: the cluster did not form (see $CL)"; return 1; }
      note FAULTS "cluster of 3 formed in $(awk "BEGIN { printf \"%.0f\", $(now) - $t }") s"
      SAVED_NODE=$NODE SAVED_RD=$RD SAVED_AMQP=$AMQP
      NODE=${CL_NODES[0]} RD=$CL/n1
      # Our Python probe speaks to one node; the product gets them all.
      AMQP="amqp://guest:guest@127.0.0.1:${CL_PORTS[0]}/%2f"
      DECAY_AMQP=$(printf 'amqp://guest:guest@127.0.0.1:%s/%%2f,' "${CL_PORTS[@]}")
      DECAY_AMQP=${DECAY_AMQP%,}
      ;;
  esac
  return 0
}

# After the scenario was judged: back to the plain single node.
prod_teardown() { # scenario
  case $1 in
    10)
      unset DECAY_AMQP DECAY_AMQP_CA_FILE DECAY_AMQP_CLIENT_CERT DECAY_AMQP_CLIENT_KEY
      PGOPTS=$PGOPTS_PLAIN
      pg_restart_fast
      ;;
    11)
      cl_down
      if [ -n "${SAVED_NODE:-}" ]; then
        NODE=$SAVED_NODE RD=$SAVED_RD AMQP=$SAVED_AMQP
        unset SAVED_NODE
      fi
      unset DECAY_AMQP
      ;;
  esac
}

# Expect `$@` to fail with exit 2 and exactly one error line (`decay-worker: ...`, the last
# line of stderr) containing $want; before it only the log lines of a process that started
# (consume logs at info). Note the outcome.
expect_refusal() { # label want cmd...
  local label=$1 want=$2 err rc errors last; shift 2
  err=$(timeout 90 "$@" 2>&1 >/dev/null); rc=$?
  errors=$(printf '%s\n' "$err" | grep -c '^decay-worker: ')
  last=$(printf '%s\n' "$err" | tail -1)
  printf '%s rc=%s: %s\n' "$label" "$rc" "$err" >>"$SD/refusals.txt"
  if [ "$rc" = 2 ] && [ "$errors" = 1 ] && [[ "$last" == "decay-worker: "*"$want"* ]]; then
    note FAULTS "$label refused: exit 2, \"$(printf '%s' "$last" | cut -c1-150)...\""
    return 0
  fi
  note FAULTS "$label NOT refused as expected: exit $rc, $errors error line(s)"
  return 1
}

# The fault of scenarios 10 and 11 (called from inject).
prod_inject() {
  case $S in
    10)
      sleep 6
      # Really over TLS: every database session of the workers, every broker connection but
      # the suite's own plain probe.
      local db_tls db_plain amqp_tls
      db_tls=$(q -c "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'decay-worker' AND s.ssl")
      db_plain=$(q -c "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'decay-worker' AND NOT s.ssl")
      amqp_tls=$(rmqctl list_connections name ssl --no-table-headers -q 2>/dev/null | grep -c 'true$')
      note FAULTS "over TLS: $db_tls database session(s) ($db_plain plain), $amqp_tls broker connection(s) with a client certificate"
      local ok=1 id=""
      while [ -z "$id" ]; do id=$(head -1 "$SD/manifest.txt"); [ -n "$id" ] || sleep 0.5; done
      ((db_tls > 0 && db_plain == 0 && amqp_tls > 0)) || ok=0
      expect_refusal "broker, wrong CA (enqueue)" "invalid peer certificate" \
        env DECAY_AMQP_CA_FILE="$CERTS/wrong-ca.pem" "$W" enqueue "$id" || ok=0
      expect_refusal "broker, wrong CA (consume)" "invalid peer certificate" \
        env DECAY_AMQP_CA_FILE="$CERTS/wrong-ca.pem" DECAY_HTTP_ADDR=127.0.0.1:0 "$W" consume || ok=0
      expect_refusal "database, wrong CA (jobs stats)" "invalid peer certificate" \
        env DATABASE_URL="${DBURL%%\?*}?sslmode=verify-full&sslrootcert=$CERTS/wrong-ca.pem" "$W" jobs stats || ok=0
      echo "$ok" >"$SD/tls_ok"
      healed
      ;;
    11)
      sleep 6
      local leader pid t_kill t_res="" t_back deadline
      leader=$(cl_leader "$BASE") || { note FAULTS "no leader found for $BASE FAILED"; healed; return; }
      pid=$(cl_pid "$leader")
      t_kill=$(now); kill -9 "$pid"
      note FAULTS "kill -9 ${CL_NODES[leader - 1]}, leader of $BASE"
      # Consumption resumed: a job created after the kill is terminal.
      deadline=$((SECONDS + 120))
      while ((SECONDS < deadline)); do
        t_res=$(q -c "SELECT extract(epoch FROM min(updated_at)) FROM decay_jobs
                       WHERE state IN ('completed', 'failed') AND created_at > to_timestamp($t_kill)" 2>/dev/null)
        [ -n "$t_res" ] && break
        sleep 0.5
      done
      sleep 3
      cl_start "$leader" || note FAULTS "restart of ${CL_NODES[leader - 1]} FAILED"
      t_back=$(now)
      local newleader; newleader=$(cl_leader "$BASE")
      if [ -n "$t_res" ]; then
        local took; took=$(awk "BEGIN { printf \"%.1f\", $t_res - $t_kill }")
        echo "$took" >"$SD/resumed_s"
        note FAULTS "consumption resumed ${took} s after the kill (first job created after it settled); node back after $(awk "BEGIN { printf \"%.0f\", $t_back - $t_kill }") s; leader now ${CL_NODES[${newleader:-1} - 1]}"
      else
        note FAULTS "consumption did not resume within 120 s of the kill FAILED"
      fi
      healed
      ;;
  esac
}

# Did the fault hit? Prints the why; returns 1 when not.
prod_exercised() { # scenario
  case $1 in
    10)
      echo "TLS on both with verification; wrong CA refused three times"
      [ "$(cat "$SD/tls_ok" 2>/dev/null)" = 1 ]
      ;;
    11)
      local r; r=$(cat "$SD/resumed_s" 2>/dev/null)
      echo "leader killed; consumption resumed after ${r:-?} s"
      [ -n "$r" ] && ! grep -q FAILED "$SD/notes.FAULTS" 2>/dev/null
      ;;
  esac
}
