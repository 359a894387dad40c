#!/usr/bin/env bash
# Apache Kafka 4.3.1 for the test bed: one KRaft node in combined mode
# (broker + controller) on 127.0.0.1, jars fetched from Maven Central with Maven.
#
# Two client listeners on the one broker (same topics):
#   PLAINTEXT       TESTBED_KAFKA_BOOTSTRAP, no authentication (what every test uses
#                   unless it needs a secured Kafka)
#   SASL_PLAINTEXT  TESTBED_KAFKA_SASL_BOOTSTRAP, mechanism PLAIN, one user
#                   TESTBED_KAFKA_SASL_USER with TESTBED_KAFKA_SASL_PASSWORD
#
#   install  jars (broker, CLI tools, MirrorMaker 2, log4j2 binding) into
#            $UNDERSTUDY_CACHE/kafka-4.3.1/libs (skipped while the marker matches pom.xml)
#   start    format the data dir once, start the broker, wait until both listeners
#            answer (the SASL one with the user's credentials). A broker that runs with
#            another configuration (started by an older kafka.sh, e.g. before the SASL
#            listener existed) is restarted with the current one: whoever shares the
#            broker must be kept off it meanwhile.
#   stop     TERM (clean shutdown, up to 60 s), then KILL
#
# Restarts (stop + start) keep the data dir $TESTBED_DIR/data/kafka, the ports stored in
# $TESTBED_DIR/data/kafka/ports and the SASL credentials in $TESTBED_DIR/data/kafka/sasl,
# so clients see the same broker come back.
# For a clean broker: stop, then `rm -rf "$TESTBED_DIR/data/kafka"`.
source "$(dirname "$0")/lib.sh"

KAFKA_VERSION=4.3.1
KAFKA_HOME="$UNDERSTUDY_CACHE/kafka-$KAFKA_VERSION"
KAFKA_LIBS="$KAFKA_HOME/libs"
KAFKA_MARKER="$KAFKA_HOME/.complete"
KAFKA_POM="$TESTBED_SCRIPTS/kafka/pom.xml"
KAFKA_LOG4J="$TESTBED_SCRIPTS/kafka/log4j2.properties"
DATA="$TESTBED_DIR/data/kafka"
PORTS_FILE="$DATA/ports"
SASL_FILE="$DATA/sasl"

# JVM flags for the short-lived CLI calls (health check): start fast, stay small.
TOOL_JVM=(java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -cp "$KAFKA_LIBS/*")

pom_hash() { sha256sum "$KAFKA_POM" | cut -d' ' -f1; }

install() {
  if [[ -f $KAFKA_MARKER && $(cat "$KAFKA_MARKER") == "$(pom_hash)" ]]; then
    log "kafka $KAFKA_VERSION already installed in $KAFKA_LIBS"
    return 0
  fi
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  command -v mvn >/dev/null || apt_install maven
  log "fetching kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_LIBS"
  local tmp="$KAFKA_HOME/libs.tmp" mvn_log="$TESTBED_DIR/logs/kafka-install.log"
  rm -rf "$tmp" && mkdir -p "$tmp"
  if ! mvn -B -q -Dstyle.color=never -f "$KAFKA_POM" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" \
      >"$mvn_log" 2>&1; then
    tail -n 40 "$mvn_log" >&2
    die "mvn dependency:copy-dependencies failed (full log: $mvn_log)"
  fi
  local jar
  for jar in "kafka_2.13-$KAFKA_VERSION" "kafka-tools-$KAFKA_VERSION" \
             "connect-mirror-$KAFKA_VERSION" "connect-runtime-$KAFKA_VERSION" \
             log4j-slf4j-impl- log4j-core- slf4j-api-; do
    compgen -G "$tmp/$jar*.jar" >/dev/null || die "kafka install: no $jar*.jar in $tmp"
  done
  # Exactly one SLF4J binding, or SLF4J picks one at random (and warns).
  local bindings
  bindings=$(find "$tmp" -name '*.jar' | grep -cE '/(log4j-slf4j2?-impl|slf4j-(simple|reload4j|log4j12|jdk14|nop)|logback-classic)-[0-9]' || true)
  [[ $bindings == 1 ]] || die "kafka install: expected 1 SLF4J binding, found $bindings in $tmp"
  rm -rf "$KAFKA_LIBS" && mv "$tmp" "$KAFKA_LIBS"
  pom_hash >"$KAFKA_MARKER"
  log "kafka $KAFKA_VERSION: $(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars in $KAFKA_LIBS"
}

# port_open PORT: something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Ports are chosen once and kept; a ports file written before the SASL listener existed
# gets a SASL_PORT added.
load_ports() {
  BROKER_PORT="" CONTROLLER_PORT="" SASL_PORT=""
  if [[ -f $PORTS_FILE ]]; then
    # shellcheck disable=SC1090
    source "$PORTS_FILE"
  fi
  [[ -n $BROKER_PORT ]] || BROKER_PORT=$(free_port)
  while [[ -z $CONTROLLER_PORT || $CONTROLLER_PORT == "$BROKER_PORT" ]]; do
    CONTROLLER_PORT=$(free_port)
  done
  while [[ -z $SASL_PORT || $SASL_PORT == "$BROKER_PORT" || $SASL_PORT == "$CONTROLLER_PORT" ]]; do
    SASL_PORT=$(free_port)
  done
  printf 'BROKER_PORT=%s\nCONTROLLER_PORT=%s\nSASL_PORT=%s\n' \
    "$BROKER_PORT" "$CONTROLLER_PORT" "$SASL_PORT" >"$PORTS_FILE.tmp"
  mv -f "$PORTS_FILE.tmp" "$PORTS_FILE"
}

# The SASL user and its password: generated once, kept with the data dir.
load_sasl() {
  if [[ ! -f $SASL_FILE ]]; then
    (umask 077
     printf 'SASL_USER=understudy\nSASL_PASSWORD=%s\n' \
       "$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" >"$SASL_FILE.tmp"
     mv -f "$SASL_FILE.tmp" "$SASL_FILE")
  fi
  # shellcheck disable=SC1090
  source "$SASL_FILE"
}

write_kafka_env() {
  write_env kafka \
    "TESTBED_KAFKA_BOOTSTRAP=127.0.0.1:$BROKER_PORT" \
    "TESTBED_KAFKA_SASL_BOOTSTRAP=127.0.0.1:$SASL_PORT" \
    "TESTBED_KAFKA_SASL_MECHANISM=PLAIN" \
    "TESTBED_KAFKA_SASL_USER=$SASL_USER" \
    "TESTBED_KAFKA_SASL_PASSWORD=$SASL_PASSWORD" \
    "TESTBED_KAFKA_LIBS=$KAFKA_LIBS" \
    "TESTBED_KAFKA_VERSION=$KAFKA_VERSION"
}

# properties FILE: the broker's configuration (the same for the same ports and user, so
# comparing it with the running broker's tells whether a restart is needed). Owner-only:
# it holds the SASL password.
properties() {
  rm -f "$1"
  (umask 077; properties_text >"$1")
}

properties_text() {
  cat <<EOF
# Generated by tests/testbed/kafka.sh on every start; ports from $PORTS_FILE,
# the SASL user from $SASL_FILE.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$BROKER_PORT,SASL_PLAINTEXT://127.0.0.1:$SASL_PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$BROKER_PORT,SASL_PLAINTEXT://127.0.0.1:$SASL_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$DATA/logs

# The SASL_PLAINTEXT listener: mechanism PLAIN, one user. No authorizer: an authenticated
# user may do what any client of the PLAINTEXT listener may.
sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$SASL_USER="$SASL_PASSWORD";

# Single node: every internal topic has one replica.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=5
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=5
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.partitions=1
default.replication.factor=1
min.insync.replicas=1

# Topics are created through the admin API only.
auto.create.topics.enable=false

# Index files of 1 MiB, not 10 MiB. Each partition's offset and time index is a sparse
# file mapped whole; the first write to a page of it faults, and the kernel reads around
# the fault (this machine's disk has read_ahead_kb 8192), zero-filling up to 8 MiB of page
# cache. With the fleet bench's 3,000 partitions that is 60 GB of mappings: the page cache
# filled, evicted index pages faulted again, and the broker spent 1-1.5 cores (92% of its
# samples) zeroing pages. At 1 MiB the whole set fits in memory (6 GB at most), and a segment
# still rolls only after about 350 MB.
log.index.size.max.bytes=1048576

# Make compaction observable within seconds (topics still need a small segment.ms /
# segment.bytes and min.cleanable.dirty.ratio: the active segment is never cleaned).
log.cleaner.enable=true
log.cleaner.threads=1
log.cleaner.backoff.ms=1000
log.cleaner.dedupe.buffer.size=33554432
log.segment.delete.delay.ms=1000
log.initial.task.delay.ms=1000
log.retention.check.interval.ms=5000
EOF
}

# Client settings of the health checks (the SASL one holds the password: owner only).
write_client_properties() {
  printf 'request.timeout.ms=3000\ndefault.api.timeout.ms=5000\n' >"$DATA/health-client.properties"
  (umask 077
   cat >"$DATA/health-sasl-client.properties" <<EOF
request.timeout.ms=3000
default.api.timeout.ms=5000
security.protocol=SASL_PLAINTEXT
sasl.mechanism=PLAIN
sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="$SASL_USER" password="$SASL_PASSWORD";
EOF
  )
}

kafka_listening() { { port_open "$BROKER_PORT" && port_open "$SASL_PORT"; } || ! is_running kafka; }

kafka_answers() {
  "${TOOL_JVM[@]}" org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "127.0.0.1:$BROKER_PORT" --list \
    --command-config "$DATA/health-client.properties"
}

# The SASL listener lets the user in (with a wrong password the listing fails).
kafka_sasl_answers() {
  "${TOOL_JVM[@]}" org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "127.0.0.1:$SASL_PORT" --list \
    --command-config "$DATA/health-sasl-client.properties"
}

start() {
  [[ -f $KAFKA_MARKER ]] || die "kafka is not installed; run $0 install"
  mkdir -p "$DATA"
  load_ports
  load_sasl
  if is_running kafka; then
    properties "$DATA/server.properties.next"
    if cmp -s "$DATA/server.properties.next" "$DATA/server.properties"; then
      rm -f "$DATA/server.properties.next"
      log "kafka already running on 127.0.0.1:$BROKER_PORT (SASL 127.0.0.1:$SASL_PORT)"
      write_client_properties
      write_kafka_env
      return 0
    fi
    rm -f "$DATA/server.properties.next"
    log "kafka runs with an older configuration; restarting it (same data, same ports)"
    stop
  fi
  local p
  for p in "$BROKER_PORT" "$CONTROLLER_PORT" "$SASL_PORT"; do
    port_open "$p" && die "port $p (stored in $PORTS_FILE) is taken by another process"
  done
  properties "$DATA/server.properties"
  write_client_properties

  if [[ ! -f $DATA/logs/meta.properties ]]; then
    local cluster_id
    cluster_id=$("${TOOL_JVM[@]}" kafka.tools.StorageTool random-uuid)
    log "formatting $DATA/logs (cluster id $cluster_id)"
    "${TOOL_JVM[@]}" kafka.tools.StorageTool format -t "$cluster_id" \
      -c "$DATA/server.properties" >>"$TESTBED_DIR/logs/kafka.log" 2>&1 \
      || die "kafka storage format failed (see $TESTBED_DIR/logs/kafka.log)"
    echo "$cluster_id" >"$DATA/cluster.id"
  fi

  log "starting kafka on 127.0.0.1:$BROKER_PORT (SASL 127.0.0.1:$SASL_PORT, controller 127.0.0.1:$CONTROLLER_PORT)"
  rotate_log "$TESTBED_DIR/logs/kafka.log"
  echo "=== $(date -Is) kafka.sh start ===" >>"$TESTBED_DIR/logs/kafka.log"
  start_bg kafka java -Xms256m -Xmx768m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$KAFKA_LOG4J" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$DATA/server.properties"

  # The client listeners open only once the broker is unfenced; then ask them for real.
  wait_for 120 "kafka listeners 127.0.0.1:$BROKER_PORT and :$SASL_PORT" kafka_listening || true
  if ! is_running kafka || ! port_open "$BROKER_PORT" || ! port_open "$SASL_PORT"; then
    tail -n 30 "$TESTBED_DIR/logs/kafka.log" >&2
    die "kafka did not start (log: $TESTBED_DIR/logs/kafka.log)"
  fi
  wait_for 60 "kafka to list topics" kafka_answers \
    || die "kafka does not answer the admin API (log: $TESTBED_DIR/logs/kafka.log)"
  wait_for 60 "kafka to list topics for the SASL user $SASL_USER" kafka_sasl_answers \
    || die "kafka's SASL listener refuses $SASL_USER (log: $TESTBED_DIR/logs/kafka.log)"
  write_kafka_env
  log "kafka ready: 127.0.0.1:$BROKER_PORT, SASL_PLAINTEXT 127.0.0.1:$SASL_PORT"
}

stop() {
  local f="$TESTBED_DIR/pids/kafka.pid" pid
  [[ -f $f ]] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null && grep -qa 'kafka.Kafka' "/proc/$pid/cmdline" 2>/dev/null; then
    log "stopping kafka (pid $pid)"
    kill "$pid" 2>/dev/null || true
    # A clean shutdown (controlled shutdown, flushing logs) can take several seconds;
    # a KILL would force log recovery on the next start.
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      log "kafka did not stop within 60 s; killing it"
      kill -9 "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$f"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  *) die "usage: $0 install|start|stop" ;;
esac
