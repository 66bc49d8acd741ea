#!/usr/bin/env bash
# Real MQTT (Mosquitto) and Kafka (KRaft, single node) brokers on 127.0.0.1, without Docker.
#
#   scripts/brokers.sh start|stop|status|env
#   scripts/brokers.sh start-mqtt|stop-mqtt|start-kafka|stop-kafka
#
# Mosquitto comes from the Debian package; Kafka from its Maven Central jars (cached).
# See docs/brokers.md for the environment variables and how tests and CI use it.
set -euo pipefail

# ---------------------------------------------------------------------------------------------
# Settings (environment overrides)
# ---------------------------------------------------------------------------------------------
KAFKA_VERSION="${BROKERS_KAFKA_VERSION:-4.4.0}"   # newest 4.x on Maven Central when pinned
LOG4J_VERSION="${BROKERS_LOG4J_VERSION:-2.24.3}"  # log4j2 binding for Kafka's slf4j 1.7 API
MAVEN_DEPENDENCY_PLUGIN_VERSION="3.6.1"

STATE="${BROKERS_STATE:-/tmp/vision-events-brokers}"
CACHE="${BROKERS_CACHE:-${HOME:-/root}/.cache/vision-events-brokers}"
START_TIMEOUT="${BROKERS_START_TIMEOUT:-90}"
KEEP_DATA="${BROKERS_KEEP_DATA:-0}"

MQTT_PORT="${MQTT_PORT:-1883}"
MQTT_MAX_QUEUED_MESSAGES="${MQTT_MAX_QUEUED_MESSAGES:-1000}"
MQTT_STOP_TIMEOUT="${MQTT_STOP_TIMEOUT:-10}"

KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_SASL_PORT="${KAFKA_SASL_PORT:-9094}"
KAFKA_SASL="${KAFKA_SASL:-1}"
KAFKA_SASL_USERNAME="${KAFKA_SASL_USERNAME:-vec}"
KAFKA_SASL_PASSWORD="${KAFKA_SASL_PASSWORD:-vec-secret}"
KAFKA_PARTITIONS="${KAFKA_PARTITIONS:-4}"
KAFKA_INTERNAL_PARTITIONS="${KAFKA_INTERNAL_PARTITIONS:-4}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xmx1g -Xms256m}"
KAFKA_LOG_LEVEL="${KAFKA_LOG_LEVEL:-INFO}"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"

HOST=127.0.0.1
MQTT_DIR="$STATE/mqtt"
KAFKA_DIR="$STATE/kafka"
KAFKA_HOME="$CACHE/kafka-$KAFKA_VERSION"
KAFKA_LIBS="$KAFKA_HOME/libs"

# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
say() { printf 'brokers: %s\n' "$*" >&2; }
die() {
    printf 'brokers: ERROR: %s\n' "$*" >&2
    exit 1
}

sasl_enabled() { [[ "$KAFKA_SASL" == 1 || "$KAFKA_SASL" == true ]]; }

# Seconds since the epoch with millisecond precision (for progress timings).
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# A TCP connect to 127.0.0.1:PORT succeeds.
port_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
}

# The process whose pid is in FILE is alive (not a zombie) and its command line contains PATTERN.
pid_alive() {
    local file="$1" pattern="$2" pid cmdline state
    [[ -s "$file" ]] || return 1
    pid="$(<"$file")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    cmdline="$( { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null)" || return 1
    [[ "$cmdline" == *"$pattern"* ]] || return 1
    state="$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" || return 1
    [[ "$state" != Z ]]
}

# Tail of a log file, indented, for error messages.
show_log() {
    local file="$1"
    [[ -f "$file" ]] || return 0
    printf 'brokers: --- last lines of %s ---\n' "$file" >&2
    tail -n "${2:-40}" "$file" | sed 's/^/    /' >&2
    printf 'brokers: --- end of %s ---\n' "$file" >&2
}

# Start COMMAND... detached (own session, no stdin, output appended to LOG), pid written to PIDFILE.
# The inner shell writes its own pid and then execs the command, so the pid is the broker's.
# fd 9 (the state lock) is closed so the broker does not hold the lock forever.
launch() {
    local pidfile="$1" log="$2"
    shift 2
    rm -f "$pidfile"
    # shellcheck disable=SC2016  # expanded by the inner shell
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" </dev/null >>"$log" 2>&1 9>&- &
    local i
    for i in $(seq 1 50); do
        [[ -s "$pidfile" ]] && return 0
        sleep 0.1
    done
    die "could not launch $1"
}

# SIGTERM the process in PIDFILE (matching PATTERN), wait up to TIMEOUT s, then SIGKILL.
terminate() {
    local name="$1" pidfile="$2" pattern="$3" timeout="$4" pid i
    if ! pid_alive "$pidfile" "$pattern"; then
        rm -f "$pidfile"
        say "$name: not running"
        return 0
    fi
    pid="$(<"$pidfile")"
    say "$name: stopping (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 10; i++)); do
        pid_alive "$pidfile" "$pattern" || break
        sleep 0.1
    done
    if pid_alive "$pidfile" "$pattern"; then
        say "$name: still running after ${timeout}s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            pid_alive "$pidfile" "$pattern" || break
            sleep 0.1
        done
    fi
    rm -f "$pidfile"
    say "$name: stopped"
}

# Serialise start/stop calls (tests may run several at once). The lock fd is 9.
take_lock() {
    mkdir -p "$STATE"
    exec 9>>"$STATE/.lock"
    flock -w 600 9 || die "another brokers.sh holds $STATE/.lock"
}

require_ports_free() {
    local name="$1" port
    shift
    for port in "$@"; do
        if port_open "$port"; then
            die "$name: port $HOST:$port is already in use by another process (not started by this script; state dir $STATE)"
        fi
    done
}

# ---------------------------------------------------------------------------------------------
# Mosquitto
# ---------------------------------------------------------------------------------------------
MOSQUITTO_BIN=/usr/sbin/mosquitto

ensure_mosquitto() {
    if [[ -x "$MOSQUITTO_BIN" ]] && command -v mosquitto_pub >/dev/null && command -v mosquitto_sub >/dev/null; then
        return 0
    fi
    [[ "$(id -u)" == 0 ]] || die "mosquitto is not installed; run: sudo apt-get install -y mosquitto mosquitto-clients"
    say "mqtt: installing mosquitto and mosquitto-clients (Debian packages)"
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends mosquitto mosquitto-clients)
    if ! apt-cache show mosquitto mosquitto-clients >/dev/null 2>&1 || ! "${apt[@]}" </dev/null >"$STATE/apt.log" 2>&1; then
        say "mqtt: running apt-get update first"
        apt-get update -q </dev/null >>"$STATE/apt.log" 2>&1 || {
            show_log "$STATE/apt.log"
            die "apt-get update failed"
        }
        "${apt[@]}" </dev/null >>"$STATE/apt.log" 2>&1 || {
            show_log "$STATE/apt.log"
            die "apt-get install mosquitto failed"
        }
    fi
    # The package may start the system service (where init scripts run); we run our own instance.
    if [[ -s /run/mosquitto/mosquitto.pid ]] && command -v service >/dev/null; then
        service mosquitto stop </dev/null >/dev/null 2>&1 || true
    fi
    [[ -x "$MOSQUITTO_BIN" ]] || die "mosquitto still missing after install (see $STATE/apt.log)"
}

mqtt_running() { pid_alive "$MQTT_DIR/mosquitto.pid" "$MQTT_DIR/mosquitto.conf"; }

write_mqtt_config() {
    mkdir -p "$MQTT_DIR/data"
    cat >"$MQTT_DIR/mosquitto.conf" <<EOF
# Generated by scripts/brokers.sh; rewritten on every start.
# Started as root, mosquitto switches to this user; the current user keeps the state dir writable.
user $(id -un)
listener $MQTT_PORT $HOST
allow_anonymous true
persistence true
persistence_location $MQTT_DIR/data/
autosave_interval 60
max_queued_messages $MQTT_MAX_QUEUED_MESSAGES
log_dest stderr
log_type error
log_type warning
log_type notice
log_type information
log_timestamp_format %Y-%m-%dT%H:%M:%S
EOF
}

# A retained message published with MQTT 5 and read back with MQTT 3.1.1.
mqtt_round_trip() {
    local topic="vision-events-brokers/selftest/$$" got
    mosquitto_pub -h "$HOST" -p "$MQTT_PORT" -V mqttv5 -q 1 -r -t "$topic" -m ready </dev/null >/dev/null 2>&1 || return 1
    got="$(timeout 10 mosquitto_sub -h "$HOST" -p "$MQTT_PORT" -V mqttv311 -q 1 -t "$topic" -C 1 -W 5 </dev/null 2>/dev/null)" || return 1
    mosquitto_pub -h "$HOST" -p "$MQTT_PORT" -V mqttv5 -q 1 -r -n -t "$topic" </dev/null >/dev/null 2>&1 || true
    [[ "$got" == ready ]]
}

start_mqtt() {
    local keep="$1" t0 deadline
    t0="$(now)"
    if mqtt_running; then
        # A broker started earlier with other settings (say the default queue limit of 1000, where
        # the tests need more) would lose messages in ways no test names: refuse to reuse it.
        local running_queue
        running_queue="$(awk '$1 == "max_queued_messages" { print $2 }' "$MQTT_DIR/mosquitto.conf")"
        if [[ "$running_queue" != "$MQTT_MAX_QUEUED_MESSAGES" ]]; then
            die "mqtt: the running broker (pid $(<"$MQTT_DIR/mosquitto.pid"), state $MQTT_DIR) has max_queued_messages $running_queue, $MQTT_MAX_QUEUED_MESSAGES wanted; stop it first (MQTT_PORT=$MQTT_PORT BROKERS_STATE=$STATE scripts/brokers.sh stop-mqtt)"
        fi
        say "mqtt: already running (pid $(<"$MQTT_DIR/mosquitto.pid")) on mqtt://$HOST:$MQTT_PORT"
        return 0
    fi
    ensure_mosquitto
    require_ports_free mqtt "$MQTT_PORT"
    if [[ "$keep" != 1 ]]; then
        rm -rf "$MQTT_DIR"
    fi
    mkdir -p "$MQTT_DIR"
    # A restart keeping the data keeps the broker's settings too (e.g. a raised queue limit).
    if [[ "$keep" != 1 || ! -f "$MQTT_DIR/mosquitto.conf" ]]; then
        write_mqtt_config
    fi
    printf '=== %s start (keep data: %s)\n' "$(date -Is)" "$keep" >>"$MQTT_DIR/mosquitto.log"
    launch "$MQTT_DIR/mosquitto.pid" "$MQTT_DIR/mosquitto.log" "$MOSQUITTO_BIN" -c "$MQTT_DIR/mosquitto.conf"
    deadline=$((SECONDS + START_TIMEOUT))
    while :; do
        if ! mqtt_running; then
            show_log "$MQTT_DIR/mosquitto.log"
            rm -f "$MQTT_DIR/mosquitto.pid"
            die "mqtt: mosquitto exited during start-up"
        fi
        if port_open "$MQTT_PORT" && mqtt_round_trip; then
            break
        fi
        if ((SECONDS >= deadline)); then
            show_log "$MQTT_DIR/mosquitto.log"
            stop_mqtt
            die "mqtt: not ready after ${START_TIMEOUT}s"
        fi
        sleep 0.2
    done
    say "mqtt: ready on mqtt://$HOST:$MQTT_PORT (pid $(<"$MQTT_DIR/mosquitto.pid"), $(elapsed "$t0")s)"
}

stop_mqtt() { terminate mqtt "$MQTT_DIR/mosquitto.pid" "$MQTT_DIR/mosquitto.conf" "$MQTT_STOP_TIMEOUT"; }

# ---------------------------------------------------------------------------------------------
# Kafka
# ---------------------------------------------------------------------------------------------
java_bin() {
    if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
        echo "$JAVA_HOME/bin/java"
    else
        command -v java || true
    fi
}

ensure_java_and_maven() {
    local java major
    java="$(java_bin)"
    if [[ -z "$java" ]] || { [[ ! -f "$KAFKA_LIBS/.complete" ]] && ! command -v mvn >/dev/null; }; then
        [[ "$(id -u)" == 0 ]] || die "kafka: needs Java 17+ and Maven (apt-get install openjdk-17-jre-headless maven)"
        say "kafka: installing Java 17 / Maven (Debian packages)"
        {
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends openjdk-17-jdk-headless maven ||
                { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends openjdk-17-jdk-headless maven; }
        } </dev/null >"$STATE/apt.log" 2>&1 || {
            show_log "$STATE/apt.log"
            die "kafka: installing Java/Maven failed"
        }
        java="$(java_bin)"
    fi
    major="$("$java" -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ { print $2 }')"
    [[ "${major%%.*}" =~ ^[0-9]+$ && "${major%%.*}" -ge 17 ]] || die "kafka: needs Java 17+, $java is '$major'"
    JAVA="$java"
}

# Kafka's broker jars and their runtime dependencies, copied once from Maven Central into the cache.
ensure_kafka_libs() {
    if [[ -f "$KAFKA_LIBS/.complete" ]]; then
        return 0
    fi
    local t0
    t0="$(now)"
    say "kafka: fetching org.apache.kafka:kafka_2.13:$KAFKA_VERSION and its runtime dependencies (first run only)"
    mkdir -p "$KAFKA_HOME"
    cat >"$KAFKA_HOME/pom.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Throwaway pom written by scripts/brokers.sh: only used to copy the broker's runtime jars. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.vision-events-brokers</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>$KAFKA_VERSION</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
      <version>$LOG4J_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>$LOG4J_VERSION</version>
    </dependency>
  </dependencies>
  <build>
    <pluginManagement>
      <plugins>
        <plugin>
          <groupId>org.apache.maven.plugins</groupId>
          <artifactId>maven-dependency-plugin</artifactId>
          <version>$MAVEN_DEPENDENCY_PLUGIN_VERSION</version>
        </plugin>
      </plugins>
    </pluginManagement>
  </build>
</project>
EOF
    rm -rf "$KAFKA_LIBS.tmp"
    if ! mvn -B -q -f "$KAFKA_HOME/pom.xml" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS.tmp" </dev/null >"$KAFKA_HOME/mvn.log" 2>&1; then
        show_log "$KAFKA_HOME/mvn.log"
        die "kafka: mvn dependency:copy-dependencies failed"
    fi
    [[ -f "$KAFKA_LIBS.tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] || die "kafka: kafka_2.13-$KAFKA_VERSION.jar missing after copy"
    touch "$KAFKA_LIBS.tmp/.complete"
    rm -rf "$KAFKA_LIBS"
    mv "$KAFKA_LIBS.tmp" "$KAFKA_LIBS"
    say "kafka: $(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars cached in $KAFKA_LIBS ($(elapsed "$t0")s)"
}

kafka_running() { pid_alive "$KAFKA_DIR/kafka.pid" "$KAFKA_DIR/server.properties"; }

write_kafka_config() {
    local listeners advertised protocols
    listeners="PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT"
    protocols="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    if sasl_enabled; then
        listeners="$listeners,SASL_PLAINTEXT://$HOST:$KAFKA_SASL_PORT"
        protocols="$protocols,SASL_PLAINTEXT:SASL_PLAINTEXT"
    fi
    advertised="$listeners"
    mkdir -p "$KAFKA_DIR/data"
    cat >"$KAFKA_DIR/server.properties" <<EOF
# Generated by scripts/brokers.sh; rewritten on every start.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=$HOST:$KAFKA_CONTROLLER_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listeners=$listeners
advertised.listeners=$advertised
listener.security.protocol.map=$protocols
log.dirs=$KAFKA_DIR/data
num.partitions=$KAFKA_PARTITIONS
auto.create.topics.enable=true
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=$KAFKA_INTERNAL_PARTITIONS
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=$KAFKA_INTERNAL_PARTITIONS
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=$KAFKA_INTERNAL_PARTITIONS
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.hours=24
EOF
    if sasl_enabled; then
        cat >>"$KAFKA_DIR/server.properties" <<EOF
sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="$KAFKA_SASL_USERNAME" password="$KAFKA_SASL_PASSWORD" user_$KAFKA_SASL_USERNAME="$KAFKA_SASL_PASSWORD";
EOF
    fi
    cat >"$KAFKA_DIR/log4j2.properties" <<EOF
status = warn
# Kafka logs its own shutdown from a JVM hook: keep log4j alive until the JVM ends.
shutdownHook = disable
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = $KAFKA_LOG_LEVEL
rootLogger.appenderRef.out.ref = OUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.controller.name = org.apache.kafka.controller
logger.controller.level = INFO
EOF
}

# Kafka's cluster id format: 16 random bytes, URL-safe base64 without padding, not starting with '-'.
new_cluster_id() {
    python3 -c '
import base64, uuid
while True:
    s = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    if not s.startswith("-"):
        print(s)
        break
'
}

# The JVM command line shared by the storage tool and the broker (into the array KAFKA_JAVA).
set_kafka_java() {
    local heap
    read -r -a heap <<<"$KAFKA_HEAP_OPTS"
    KAFKA_JAVA=("$JAVA" "${heap[@]}" -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true
        "-Dlog4j2.configurationFile=file:$KAFKA_DIR/log4j2.properties" -cp "$KAFKA_LIBS/*")
}

format_kafka_storage() {
    local cluster_id
    cluster_id="$(new_cluster_id)"
    echo "$cluster_id" >"$KAFKA_DIR/cluster-id"
    if ! "${KAFKA_JAVA[@]}" kafka.tools.StorageTool format --cluster-id "$cluster_id" \
        --config "$KAFKA_DIR/server.properties" --standalone </dev/null >>"$KAFKA_DIR/format.log" 2>&1; then
        show_log "$KAFKA_DIR/format.log"
        die "kafka: storage format failed"
    fi
}

# A real metadata request (confluent_kafka AdminClient.list_topics), on the plain and the SASL listener.
kafka_ready() {
    local pid
    pid="$(<"$KAFKA_DIR/kafka.pid")"
    if python3 -c 'import confluent_kafka' 2>/dev/null; then
        python3 - "$pid" "$START_TIMEOUT" "$HOST:$KAFKA_PORT" "$(sasl_enabled && echo "$HOST:$KAFKA_SASL_PORT")" \
            "$KAFKA_SASL_USERNAME" "$KAFKA_SASL_PASSWORD" <<'EOF'
import os, sys, time
from confluent_kafka.admin import AdminClient

pid, timeout, plain, sasl, user, password = sys.argv[1:]
deadline = time.monotonic() + float(timeout)
confs = [{"bootstrap.servers": plain}]
if sasl:
    confs.append({"bootstrap.servers": sasl, "security.protocol": "SASL_PLAINTEXT",
                  "sasl.mechanism": "PLAIN", "sasl.username": user, "sasl.password": password})
last = ""
for conf in confs:
    admin = AdminClient({**conf, "log_level": 0, "socket.connection.setup.timeout.ms": 2000})
    while True:
        try:
            os.kill(int(pid), 0)
        except OSError:
            print("kafka process exited", file=sys.stderr)
            sys.exit(2)
        try:
            md = admin.list_topics(timeout=3)
            if md.brokers:
                break
            last = "no brokers in metadata"
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last = str(exc)
        if time.monotonic() >= deadline:
            print(f"metadata request to {conf['bootstrap.servers']} failed: {last}", file=sys.stderr)
            sys.exit(1)
        time.sleep(0.3)
EOF
    else
        # No confluent_kafka: wait for the server's own "started" line and an open port.
        local deadline=$((SECONDS + START_TIMEOUT))
        until grep -q 'Kafka Server started' "$KAFKA_DIR/kafka.log" && port_open "$KAFKA_PORT"; do
            kafka_running || return 2
            ((SECONDS < deadline)) || return 1
            sleep 0.3
        done
    fi
}

start_kafka() {
    local keep="$1" t0 rc=0
    t0="$(now)"
    if kafka_running; then
        say "kafka: already running (pid $(<"$KAFKA_DIR/kafka.pid")) on $HOST:$KAFKA_PORT"
        return 0
    fi
    ensure_java_and_maven
    ensure_kafka_libs
    local ports=("$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT")
    sasl_enabled && ports+=("$KAFKA_SASL_PORT")
    require_ports_free kafka "${ports[@]}"
    if [[ "$keep" != 1 ]]; then
        rm -rf "$KAFKA_DIR"
    fi
    mkdir -p "$KAFKA_DIR"
    write_kafka_config
    set_kafka_java
    if [[ ! -f "$KAFKA_DIR/data/meta.properties" ]]; then
        say "kafka: formatting fresh KRaft storage in $KAFKA_DIR/data"
        rm -rf "$KAFKA_DIR/data"
        format_kafka_storage
    else
        say "kafka: keeping data in $KAFKA_DIR/data (cluster $(cat "$KAFKA_DIR/cluster-id" 2>/dev/null || echo '?'))"
    fi
    printf '=== %s start (keep data: %s)\n' "$(date -Is)" "$keep" >>"$KAFKA_DIR/kafka.log"
    launch "$KAFKA_DIR/kafka.pid" "$KAFKA_DIR/kafka.log" "${KAFKA_JAVA[@]}" kafka.Kafka "$KAFKA_DIR/server.properties"
    say "kafka: started pid $(<"$KAFKA_DIR/kafka.pid"), waiting for a metadata response (up to ${START_TIMEOUT}s)"
    kafka_ready || rc=$?
    if ((rc != 0)); then
        show_log "$KAFKA_DIR/kafka.log" 60
        if ((rc == 2)); then
            rm -f "$KAFKA_DIR/kafka.pid"
            die "kafka: broker exited during start-up"
        fi
        stop_kafka
        die "kafka: not ready after ${START_TIMEOUT}s"
    fi
    local extra=""
    sasl_enabled && extra=", SASL PLAIN on $HOST:$KAFKA_SASL_PORT"
    say "kafka: ready on $HOST:$KAFKA_PORT$extra ($(elapsed "$t0")s)"
}

stop_kafka() { terminate kafka "$KAFKA_DIR/kafka.pid" "$KAFKA_DIR/server.properties" "$KAFKA_STOP_TIMEOUT"; }

# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------
status() {
    local rc=0
    if mqtt_running && port_open "$MQTT_PORT"; then
        echo "mqtt:  running  pid $(<"$MQTT_DIR/mosquitto.pid")  mqtt://$HOST:$MQTT_PORT"
    elif mqtt_running; then
        echo "mqtt:  starting pid $(<"$MQTT_DIR/mosquitto.pid")  (port $MQTT_PORT not accepting connections yet)"
        rc=1
    else
        echo "mqtt:  stopped$(port_open "$MQTT_PORT" && echo " (port $MQTT_PORT in use by another process)")"
        rc=1
    fi
    if kafka_running && port_open "$KAFKA_PORT"; then
        echo "kafka: running  pid $(<"$KAFKA_DIR/kafka.pid")  $HOST:$KAFKA_PORT$(sasl_enabled && echo "  sasl_plaintext $HOST:$KAFKA_SASL_PORT")"
    elif kafka_running; then
        echo "kafka: starting pid $(<"$KAFKA_DIR/kafka.pid")  (port $KAFKA_PORT not accepting connections yet)"
        rc=1
    else
        echo "kafka: stopped$(port_open "$KAFKA_PORT" && echo " (port $KAFKA_PORT in use by another process)")"
        rc=1
    fi
    return "$rc"
}

print_env() {
    echo "export KAFKA_BOOTSTRAP_SERVERS=$HOST:$KAFKA_PORT"
    echo "export MQTT_URL=mqtt://$HOST:$MQTT_PORT"
    if sasl_enabled; then
        echo "export KAFKA_SASL_BOOTSTRAP_SERVERS=$HOST:$KAFKA_SASL_PORT"
        printf 'export KAFKA_SASL_USERNAME=%q\n' "$KAFKA_SASL_USERNAME"
        printf 'export KAFKA_SASL_PASSWORD=%q\n' "$KAFKA_SASL_PASSWORD"
    fi
}

usage() {
    cat <<EOF
usage: $0 start|stop|status|env|start-mqtt|stop-mqtt|start-kafka|stop-kafka
  start        start both brokers (fresh data unless BROKERS_KEEP_DATA=1); no-op if running
  stop         stop both brokers
  status       print each broker's state; exit 0 only if both are up
  env          print export lines: eval "\$($0 env)"
  start-X      (re)start one broker keeping its data and settings; stop-X stops it (X = mqtt or kafka)
EOF
}

main() {
    local cmd="${1:-}"
    case "$cmd" in
    start)
        take_lock
        start_mqtt "$KEEP_DATA"
        start_kafka "$KEEP_DATA"
        ;;
    stop)
        take_lock
        stop_kafka
        stop_mqtt
        ;;
    start-mqtt)
        take_lock
        start_mqtt 1
        ;;
    stop-mqtt)
        take_lock
        stop_mqtt
        ;;
    start-kafka)
        take_lock
        start_kafka 1
        ;;
    stop-kafka)
        take_lock
        stop_kafka
        ;;
    status) status ;;
    env) print_env ;;
    -h | --help | help) usage ;;
    *)
        usage >&2
        exit 2
        ;;
    esac
}

main "$@"
