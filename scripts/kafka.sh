#!/usr/bin/env bash
# Single-node Apache Kafka 4.x broker (KRaft, combined broker+controller, 127.0.0.1) for development,
# tests and CI - no Docker, no tarball: the broker's jars come from Maven Central via scripts/kafka/pom.xml.
#
# usage: scripts/kafka.sh start [--fresh] | stop | status | fetch
#
#   fetch   copy the broker classpath into $KAFKA_LIB (skipped when its stamp matches the pom's hash)
#   start   fetch if needed, format KRaft storage if needed, start the broker in the background and wait
#           until it answers a Kafka admin request. Already running and ready -> says so, exits 0.
#           --fresh (or KAFKA_FRESH=1): stop a running broker, wipe $KAFKA_DIR/data, then start.
#   stop    SIGTERM, wait up to KAFKA_STOP_TIMEOUT s, then SIGKILL
#   status  exit 0 if the broker is running and answers, else 1
#
# env (defaults):
#   KAFKA_DIR (<repo>/.kafka)  state: data/, lib/, server.properties, kafka.log, kafka.pid
#   KAFKA_LIB ($KAFKA_DIR/lib)  jar cache      KAFKA_M2_REPO (unset -> ~/.m2/repository) maven local repo
#   KAFKA_PORT (9092)  KAFKA_CONTROLLER_PORT (9093)
#   KAFKA_SASL=1 adds a SASL_PLAINTEXT listener on KAFKA_SASL_PORT (9094) with the mechanisms PLAIN,
#       SCRAM-SHA-256 and SCRAM-SHA-512 for user KAFKA_SASL_USER (driftloop) / KAFKA_SASL_PASSWORD (driftloop-secret).
#       SCRAM credentials are stored in the cluster metadata: added when formatting, or (data formatted without
#       them, or another user/password) once after start through the admin API; $KAFKA_DIR/data/.scram remembers.
#   KAFKA_TLS=1 adds an SSL listener on KAFKA_TLS_PORT (9095), and with KAFKA_SASL=1 also a SASL_SSL listener
#       (same mechanisms) on KAFKA_SASL_SSL_PORT (9096). A dev CA and certificates are made with openssl once, in
#       $KAFKA_DIR/tls: ca.pem (clients trust it), broker.p12 (SAN 127.0.0.1, localhost), client.pem + client.key
#       (a client certificate; ssl.client.auth=requested, so it is optional). KAFKA_TLS_PASSWORD (driftloop-tls)
#       protects broker.p12 and client.key. Delete $KAFKA_DIR/tls to make new ones.
#   KAFKA_CLUSTER_ID (random, used when formatting)  KAFKA_FRESH=1  KAFKA_START_TIMEOUT (90)  KAFKA_STOP_TIMEOUT (20)  KAFKA_HEAP (512m)
#   KAFKA_JAVA_OPTS (extra JVM flags)  KAFKA_LOG_LEVEL (WARN; root log level)  KAFKA_PYTHON (readiness python)
#   JAVA (java)  MVN (mvn)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
POM="$SCRIPT_DIR/kafka/pom.xml"
LOG4J2="$SCRIPT_DIR/kafka/log4j2.properties"

KAFKA_DIR=${KAFKA_DIR:-$ROOT/.kafka}
KAFKA_LIB=${KAFKA_LIB:-$KAFKA_DIR/lib}
PORT=${KAFKA_PORT:-9092}
CPORT=${KAFKA_CONTROLLER_PORT:-9093}
SASL=${KAFKA_SASL:-0}
SASL_PORT=${KAFKA_SASL_PORT:-9094}
SASL_USER=${KAFKA_SASL_USER:-driftloop}
SASL_PASSWORD=${KAFKA_SASL_PASSWORD:-driftloop-secret}
TLS=${KAFKA_TLS:-0}
TLS_PORT=${KAFKA_TLS_PORT:-9095}
SASL_SSL_PORT=${KAFKA_SASL_SSL_PORT:-9096}
TLS_PASSWORD=${KAFKA_TLS_PASSWORD:-driftloop-tls}
FRESH=${KAFKA_FRESH:-0}
START_TIMEOUT=${KAFKA_START_TIMEOUT:-90}
STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-20}
HEAP=${KAFKA_HEAP:-512m}
LOG_LEVEL=${KAFKA_LOG_LEVEL:-WARN}
JAVA=${JAVA:-java}
MVN=${MVN:-mvn}

DATA="$KAFKA_DIR/data"
PROPS="$KAFKA_DIR/server.properties"
PIDFILE="$KAFKA_DIR/kafka.pid"
LOGFILE="$KAFKA_DIR/kafka.log"
STAMP="$KAFKA_LIB/.pom.sha256"
TLS_DIR="$KAFKA_DIR/tls"
SCRAM_MARK="$DATA/.scram"
SCRAM_MECHS=(SCRAM-SHA-256 SCRAM-SHA-512)

if [ -n "${KAFKA_PYTHON:-}" ]; then PY=$KAFKA_PYTHON
elif [ -x "$ROOT/.venv/bin/python" ]; then PY="$ROOT/.venv/bin/python"
else PY=python3; fi

say() { echo "kafka.sh: $*" >&2; }
die() {
  {
    echo
    echo "################################################################################"
    echo "kafka.sh: ERROR: $*"
    echo "################################################################################"
  } >&2
  exit 1
}

lock() {   # serialize kafka.sh invocations on the same KAFKA_DIR (fd 9; closed for the broker below)
  mkdir -p "$KAFKA_DIR"
  exec 9>"$KAFKA_DIR/.lock"
  flock -w 900 9 || die "could not lock $KAFKA_DIR/.lock within 900 s (another kafka.sh running?)"
}

pom_hash() { sha256sum "$POM" | cut -d' ' -f1; }

lib_ok() {
  [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(pom_hash)" ] && compgen -G "$KAFKA_LIB/kafka_2.13-*.jar" >/dev/null
}

do_fetch() {
  if lib_ok; then say "jars already in $KAFKA_LIB (pom unchanged)"; return 0; fi
  command -v "$MVN" >/dev/null || die "'$MVN' not found: Maven is needed to fetch the Kafka jars"
  command -v "$JAVA" >/dev/null || die "'$JAVA' not found: Java 17+ is needed"
  local tmp="$KAFKA_LIB.tmp.$$" t0=$SECONDS
  local -a repo=()
  [ -n "${KAFKA_M2_REPO:-}" ] && repo=("-Dmaven.repo.local=$KAFKA_M2_REPO")
  rm -rf "$tmp"; mkdir -p "$(dirname "$KAFKA_LIB")"
  say "fetching Kafka jars with maven into $KAFKA_LIB ..."
  # fd 9 (the lock) must not leak into children
  # output is kept and shown only on failure (mvn -q still emits stray ANSI resets)
  if ! "$MVN" -B -q -Dstyle.color=never -f "$POM" "${repo[@]}" dependency:copy-dependencies \
       -Dkafka.lib.dir="$tmp" >"$tmp.mvn.log" 2>&1 9>&-; then
    sed 's/\x1b\[[0-9;]*m//g' "$tmp.mvn.log" >&2
    rm -rf "$tmp" "$tmp.mvn.log"; die "maven could not fetch the Kafka jars (maven output above; pom: $POM)"
  fi
  rm -f "$tmp.mvn.log"
  compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null || { rm -rf "$tmp"; die "maven ran but $tmp has no kafka_2.13 jar"; }
  pom_hash > "$tmp/.pom.sha256"
  rm -rf "$KAFKA_LIB"
  if ! mv -T "$tmp" "$KAFKA_LIB" 2>/dev/null; then   # a parallel fetch (shared KAFKA_LIB) won the race
    rm -rf "$tmp"; lib_ok || die "could not move the fetched jars into $KAFKA_LIB"
  fi
  say "fetched $(ls "$KAFKA_LIB" | wc -l) jars in $((SECONDS - t0)) s"
}

# pid of our running broker, or nothing. Guards against stale pid files / pid reuse.
broker_pid() {
  [ -f "$PIDFILE" ] || return 0
  local pid; pid=$(cat "$PIDFILE" 2>/dev/null || true)
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "kafka.Kafka $PROPS"; then
    echo "$pid"
  fi
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Readiness: a real Kafka round trip (admin list_topics) through each listener given as a target:
#   plain | sasl:MECHANISM | ssl | sasl_ssl:MECHANISM      (MECHANISM: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)
# args: timeout_seconds pid target...   (pid: give up at once if that process dies)
ready_check() {
  KSH_PORT=$PORT KSH_SASL_PORT=$SASL_PORT KSH_TLS_PORT=$TLS_PORT KSH_SASL_SSL_PORT=$SASL_SSL_PORT \
  KSH_USER=$SASL_USER KSH_PASSWORD=$SASL_PASSWORD KSH_CA="$TLS_DIR/ca.pem" \
  "$PY" - "$@" 9>&- <<'PYEOF'
import os, socket, sys, time, logging
logging.disable(logging.CRITICAL)
try:
    from kafka import KafkaAdminClient
except ImportError as e:
    print(f"kafka.sh: readiness check needs kafka-python in {sys.executable}: {e}", file=sys.stderr)
    sys.exit(3)
timeout, pid, *targets = sys.argv[1:]
env = os.environ
deadline = time.monotonic() + float(timeout)


def client_config(target: str) -> dict:
    kind, _, mech = target.partition(":")
    port, protocol = {"plain": ("KSH_PORT", "PLAINTEXT"), "sasl": ("KSH_SASL_PORT", "SASL_PLAINTEXT"),
                      "ssl": ("KSH_TLS_PORT", "SSL"), "sasl_ssl": ("KSH_SASL_SSL_PORT", "SASL_SSL")}[kind]
    cfg = dict(bootstrap_servers=f"127.0.0.1:{env[port]}", security_protocol=protocol)
    if mech:
        cfg.update(sasl_mechanism=mech, sasl_plain_username=env["KSH_USER"], sasl_plain_password=env["KSH_PASSWORD"])
    if kind in ("ssl", "sasl_ssl"):
        cfg.update(ssl_cafile=env["KSH_CA"])
    return cfg


last = None
for target in targets:
    cfg = client_config(target)
    while True:
        try:
            os.kill(int(pid), 0)
        except (OSError, ValueError):
            print(f"kafka.sh: broker process {pid} is gone", file=sys.stderr)
            sys.exit(2)
        left = deadline - time.monotonic()
        if left <= 0:
            print(f"kafka.sh: not ready on {cfg['bootstrap_servers']} ({target}): {last!r}", file=sys.stderr)
            sys.exit(1)
        admin = None
        try:
            # cheap TCP probe first: the admin client backs off exponentially while the port is closed
            host, _, p = cfg["bootstrap_servers"].rpartition(":")
            socket.create_connection((host, int(p)), timeout=1).close()
            t = int(min(max(left, 1), 5) * 1000)
            admin = KafkaAdminClient(client_id="driftloop-kafka-sh", request_timeout_ms=t, bootstrap_timeout_ms=t,
                                     reconnect_backoff_ms=50, reconnect_backoff_max_ms=250, **cfg)
            admin.list_topics()
            break
        except Exception as e:  # NoBrokersAvailable, timeouts, auth errors while the broker starts ...
            last = e
            time.sleep(0.2)
        finally:
            if admin is not None:
                try:
                    admin.close()
                except Exception:
                    pass
PYEOF
}

# Readiness targets: phase 1 needs nothing but the broker; phase 2 needs the SCRAM credentials.
targets_base() {
  echo plain
  [ "$SASL" = 1 ] && echo sasl:PLAIN
  [ "$TLS" = 1 ] && echo ssl
  return 0
}
targets_scram() {
  [ "$SASL" = 1 ] || return 0
  local m; for m in "${SCRAM_MECHS[@]}"; do echo "sasl:$m"; done
  [ "$TLS" = 1 ] && echo "sasl_ssl:SCRAM-SHA-512" && echo "sasl_ssl:PLAIN"
  return 0
}
all_targets() { targets_base; targets_scram; }

scram_mark() { printf '%s\n' "$SASL_USER:$SASL_PASSWORD" "${SCRAM_MECHS[*]}" | sha256sum | cut -d' ' -f1; }

# SCRAM credentials for data formatted without them (or for another user/password): ConfigCommand (= kafka-configs)
# through the PLAINTEXT listener, once; $SCRAM_MARK remembers which credentials the metadata holds.
ensure_scram() {
  [ "$SASL" = 1 ] || return 0
  [ -f "$SCRAM_MARK" ] && [ "$(cat "$SCRAM_MARK")" = "$(scram_mark)" ] && return 0
  local m
  say "adding SCRAM credentials for '$SASL_USER' (not yet in this data, or another password) ..."
  for m in "${SCRAM_MECHS[@]}"; do   # one mechanism per request: the broker refuses two for one user at once
    "$JAVA" -Xmx256m -Dlog4j2.configurationFile="$LOG4J2" -cp "$KAFKA_LIB/*" kafka.admin.ConfigCommand \
      --bootstrap-server "127.0.0.1:$PORT" --alter --entity-type users --entity-name "$SASL_USER" \
      --add-config "$m=[password=$SASL_PASSWORD]" >>"$LOGFILE" 2>&1 9>&- || return 1
  done
  scram_mark > "$SCRAM_MARK"
}

# A dev CA, a broker certificate (SAN 127.0.0.1, localhost; broker.pem, and with its key in broker.p12), and a
# client certificate whose key (client.key, PKCS#8) is encrypted with $TLS_PASSWORD. Made once; kept while all
# files are there and the certificates are valid for another week (825 days from making).
make_tls() {
  local f ok=1
  command -v openssl >/dev/null || die "'openssl' not found: KAFKA_TLS=1 needs it to make the dev certificates (apt-get install openssl)"
  for f in ca.pem broker.pem broker.p12 client.pem client.key; do [ -s "$TLS_DIR/$f" ] || ok=0; done
  if [ $ok = 1 ]; then   # kept while the certificates have a week left
    for f in broker.pem client.pem; do openssl x509 -checkend 604800 -noout -in "$TLS_DIR/$f" >/dev/null || ok=0; done
    [ $ok = 1 ] && return 0
  fi
  local tmp="$TLS_DIR.tmp.$$" pw="pass:$TLS_PASSWORD"
  rm -rf "$tmp"; mkdir -p "$tmp"
  (
    set -e
    cd "$tmp"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 3650 -subj "/CN=driftloop dev CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
    printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost" > broker.ext
    openssl req -newkey rsa:2048 -nodes -keyout broker.key -out broker.csr -subj "/CN=localhost"
    openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 -extfile broker.ext -out broker.pem
    openssl pkcs12 -export -in broker.pem -inkey broker.key -certfile ca.pem -name broker -passout "$pw" -out broker.p12
    printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" "extendedKeyUsage=clientAuth" > client.ext
    openssl req -newkey rsa:2048 -nodes -keyout client.plain.key -out client.csr -subj "/CN=driftloop-client"
    openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 -extfile client.ext -out client.pem
    openssl pkcs8 -topk8 -v2 aes-256-cbc -in client.plain.key -passout "$pw" -out client.key
    rm -f ./*.csr ./*.ext ./*.srl broker.key client.plain.key
    chmod 600 ca.key broker.p12 client.key
  ) >"$tmp.log" 2>&1 || { cat "$tmp.log" >&2; rm -rf "$tmp" "$tmp.log"; die "openssl could not make the dev certificates"; }
  rm -rf "$TLS_DIR" "$tmp.log"
  mv -T "$tmp" "$TLS_DIR"
  say "made a dev CA and certificates in $TLS_DIR (clients trust $TLS_DIR/ca.pem)"
}

sasl_props() {   # listener name (lower case): its mechanisms and their JAAS entries
  local l=$1
  cat <<PROPS
listener.name.$l.sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.$l.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="$SASL_USER" password="$SASL_PASSWORD" user_$SASL_USER="$SASL_PASSWORD";
listener.name.$l.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.$l.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
PROPS
}

write_props() {   # target file
  local out=$1
  local listeners="PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT"
  local advertised="PLAINTEXT://127.0.0.1:$PORT"
  local protomap="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
  local name port
  for name in SASL_PLAINTEXT SSL SASL_SSL; do
    case $name in
      SASL_PLAINTEXT) [ "$SASL" = 1 ] || continue; port=$SASL_PORT ;;
      SSL) [ "$TLS" = 1 ] || continue; port=$TLS_PORT ;;
      SASL_SSL) [ "$SASL" = 1 ] && [ "$TLS" = 1 ] || continue; port=$SASL_SSL_PORT ;;
    esac
    listeners="$listeners,$name://127.0.0.1:$port"
    advertised="$advertised,$name://127.0.0.1:$port"
    protomap="$protomap,$name:$name"
  done
  cat > "$out" <<PROPS
# generated by scripts/kafka.sh on every start - edit the script, not this file
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CPORT
listeners=$listeners
advertised.listeners=$advertised
listener.security.protocol.map=$protomap
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$DATA

num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
background.threads=4

# single node: every replication factor / min ISR is 1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# fast tests
num.partitions=3
auto.create.topics.enable=true
delete.topic.enable=true
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
log.cleaner.dedupe.buffer.size=16777216
# after an unclean stop (SIGKILL) a restart waits for the old broker session to expire (default 9 s)
broker.session.timeout.ms=4000
broker.heartbeat.interval.ms=1000

# big messages (tests publish ~12 MB messages)
message.max.bytes=16777216
replica.fetch.max.bytes=16777216
PROPS
  if [ "$SASL" = 1 ]; then
    {
      echo
      echo "# SASL listeners: PLAIN (user in the JAAS line) and SCRAM (credentials in the cluster metadata); dev credentials"
      echo "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"
      sasl_props sasl_plaintext
      [ "$TLS" = 1 ] && sasl_props sasl_ssl
    } >> "$out"
  fi
  if [ "$TLS" = 1 ]; then
    cat >> "$out" <<PROPS

# TLS listeners (dev CA in $TLS_DIR); client certificates are optional on SSL, verified against the CA when sent
ssl.keystore.type=PKCS12
ssl.keystore.location=$TLS_DIR/broker.p12
ssl.keystore.password=$TLS_PASSWORD
ssl.key.password=$TLS_PASSWORD
ssl.truststore.type=PEM
ssl.truststore.location=$TLS_DIR/ca.pem
listener.name.ssl.ssl.client.auth=requested
PROPS
  fi
}

java_opts() {
  JOPTS=(-Xms"$HEAP" -Xmx"$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExplicitGCInvokesConcurrent
         -Djava.awt.headless=true
         -Dlog4j2.configurationFile="$LOG4J2" -Dkafka.root.loglevel="$LOG_LEVEL")
  # shellcheck disable=SC2206
  [ -n "${KAFKA_JAVA_OPTS:-}" ] && JOPTS+=($KAFKA_JAVA_OPTS)
  return 0
}

fail_start() {   # msg pid
  local msg=$1 pid=${2:-}
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    msg="$msg (broker pid $pid killed)"
  fi
  rm -f "$PIDFILE"
  if [ -f "$LOGFILE" ]; then
    echo "---------------- last 60 lines of $LOGFILE ----------------" >&2
    tail -n 60 "$LOGFILE" >&2 || true
    echo "---------------- end of $LOGFILE ----------------" >&2
  fi
  die "Kafka broker did not start: $msg"
}

do_stop() {
  local pid; pid=$(broker_pid)
  if [ -z "$pid" ]; then
    rm -f "$PIDFILE"; say "not running"; return 0
  fi
  local t0=$SECONDS
  say "stopping broker pid $pid (SIGTERM, up to ${STOP_TIMEOUT} s) ..."
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    say "still alive after ${STOP_TIMEOUT} s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
  rm -f "$PIDFILE"
  say "stopped in $((SECONDS - t0)) s"
}

do_start() {
  local pid; pid=$(broker_pid)
  if [ -n "$pid" ] && [ "$FRESH" = 1 ]; then
    say "--fresh: stopping the running broker first"
    do_stop; pid=""
  fi
  if [ -n "$pid" ]; then   # running with other settings (ports, SASL)? restart with the requested ones
    write_props "$PROPS.want"
    if ! cmp -s "$PROPS" "$PROPS.want"; then
      say "running broker (pid $pid) has different settings: restarting it"
      diff "$PROPS" "$PROPS.want" >&2 || true
      do_stop; pid=""
    fi
    rm -f "$PROPS.want"
  fi
  if [ -n "$pid" ]; then
    # shellcheck disable=SC2046
    if ready_check "$START_TIMEOUT" "$pid" $(targets_base) && ensure_scram \
       && ready_check "$START_TIMEOUT" "$pid" $(targets_scram); then
      say "already running (pid $pid) and ready on 127.0.0.1:$PORT"; return 0
    fi
    fail_start "already running (pid $pid) but not answering Kafka requests" "$pid"
  fi
  rm -f "$PIDFILE"
  command -v "$JAVA" >/dev/null || die "'$JAVA' not found: Java 17+ is needed"
  local -a ports=("$PORT" "$CPORT")
  [ "$SASL" = 1 ] && ports+=("$SASL_PORT")
  [ "$TLS" = 1 ] && ports+=("$TLS_PORT")
  [ "$SASL" = 1 ] && [ "$TLS" = 1 ] && ports+=("$SASL_SSL_PORT")
  for p in "${ports[@]}"; do
    port_busy "$p" && die "port 127.0.0.1:$p is already in use by another process (set KAFKA_PORT / KAFKA_CONTROLLER_PORT / KAFKA_SASL_PORT / KAFKA_TLS_PORT / KAFKA_SASL_SSL_PORT)"
  done
  do_fetch
  [ "$TLS" = 1 ] && make_tls

  if [ "$FRESH" = 1 ]; then say "--fresh: wiping $DATA"; rm -rf "$DATA"; fi
  mkdir -p "$DATA"
  write_props "$PROPS"
  java_opts
  local t0=$SECONDS cp="$KAFKA_LIB/*"
  [ -f "$LOGFILE" ] && mv -f "$LOGFILE" "$LOGFILE.prev"
  : > "$LOGFILE"
  if [ ! -f "$DATA/meta.properties" ]; then
    local cid=${KAFKA_CLUSTER_ID:-}
    while [ -z "$cid" ] || [ "${cid:0:1}" = "-" ]; do   # = kafka.tools.StorageTool random-uuid, minus a JVM start
      cid=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    done
    local -a scram=() m
    if [ "$SASL" = 1 ]; then
      for m in "${SCRAM_MECHS[@]}"; do scram+=(--add-scram "$m=[name=$SASL_USER,password=$SASL_PASSWORD]"); done
    fi
    "$JAVA" "${JOPTS[@]}" -cp "$cp" kafka.tools.StorageTool format -t "$cid" -c "$PROPS" --ignore-formatted \
      "${scram[@]}" >>"$LOGFILE" 2>&1 9>&- || fail_start "formatting KRaft storage in $DATA failed"
    [ "$SASL" = 1 ] && scram_mark > "$SCRAM_MARK"
    say "formatted $DATA (cluster id $cid${scram:+, SCRAM credentials for $SASL_USER})"
  fi

  # setsid: own session, survives the caller's terminal/job; the bash -c writes its pid, then execs java (same pid)
  nohup setsid bash -c 'echo $$ > "$0"; exec "$@"' "$PIDFILE" \
    "$JAVA" "${JOPTS[@]}" -cp "$cp" kafka.Kafka "$PROPS" >>"$LOGFILE" 2>&1 </dev/null 9>&- &
  local i=0
  while [ ! -s "$PIDFILE" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  pid=$(cat "$PIDFILE" 2>/dev/null || true)
  [ -n "$pid" ] || fail_start "no pid file written"
  say "broker pid $pid starting (log: $LOGFILE) ..."
  local rc=0
  # shellcheck disable=SC2046
  ready_check "$START_TIMEOUT" "$pid" $(targets_base) || rc=$?
  if [ $rc = 0 ]; then
    ensure_scram || fail_start "could not add the SCRAM credentials (see the log)" "$pid"
    # shellcheck disable=SC2046
    ready_check "$START_TIMEOUT" "$pid" $(targets_scram) || rc=$?
  fi
  case $rc in
    0) ;;
    2) fail_start "broker process exited during startup" ;;
    3) fail_start "cannot check readiness: kafka-python missing in $PY (set KAFKA_PYTHON)" "$pid" ;;
    *) fail_start "not ready within ${START_TIMEOUT} s" "$pid" ;;
  esac
  local extra=""
  [ "$SASL" = 1 ] && extra=", SASL_PLAINTEXT (PLAIN, SCRAM-SHA-256/512) on 127.0.0.1:$SASL_PORT"
  [ "$TLS" = 1 ] && extra="$extra, SSL on 127.0.0.1:$TLS_PORT (CA $TLS_DIR/ca.pem)"
  [ "$SASL" = 1 ] && [ "$TLS" = 1 ] && extra="$extra, SASL_SSL on 127.0.0.1:$SASL_SSL_PORT"
  say "ready in $((SECONDS - t0)) s: bootstrap 127.0.0.1:$PORT$extra (pid $pid, data $DATA)"
}

do_status() {
  local pid; pid=$(broker_pid)
  if [ -z "$pid" ]; then say "not running"; return 1; fi
  local rc=0
  # shellcheck disable=SC2046
  ready_check 5 "$pid" $(all_targets) || rc=$?
  case $rc in
    0) say "running (pid $pid) and ready on 127.0.0.1:$PORT"; return 0 ;;
    3) say "running (pid $pid), readiness unknown (no kafka-python in $PY)"; return 1 ;;
    *) say "running (pid $pid) but NOT answering on 127.0.0.1:$PORT"; return 1 ;;
  esac
}

cmd=${1:-}
[ $# -gt 0 ] && shift
for a in "$@"; do
  case $a in
    --fresh) FRESH=1 ;;
    *) die "unknown option '$a' (usage: $0 start [--fresh] | stop | status | fetch)" ;;
  esac
done
case $cmd in
  start)  lock; do_start ;;
  stop)   lock; do_stop ;;
  status) do_status ;;
  fetch)  lock; do_fetch ;;
  *) echo "usage: $0 start [--fresh] | stop | status | fetch" >&2; exit 2 ;;
esac
