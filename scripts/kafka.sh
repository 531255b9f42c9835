#!/usr/bin/env bash
# A single-node Apache Kafka broker (KRaft: broker + controller) for the tests,
# from Maven Central jars run on the machine's Java 17, on 127.0.0.1 only.
#
#   scripts/kafka.sh start   fetch jars if needed, format if needed, start; prints the address
#   scripts/kafka.sh stop    stop it
#   scripts/kafka.sh url     print the address
#
# HEADRACE_KAFKA_DIR (default .cache/kafka) holds jars, data and logs;
# HEADRACE_KAFKA_PORT (default 39092) the client port (controller: port + 1).
set -euo pipefail
cd "$(dirname "$0")/.."

DIR="${HEADRACE_KAFKA_DIR:-$PWD/.cache/kafka}"
PORT="${HEADRACE_KAFKA_PORT:-39092}"
CPORT=$((PORT + 1))
LIBS="$DIR/libs"
DATA="$DIR/data"
ADDR="127.0.0.1:$PORT"
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] && PY=.venv/bin/python

fetch() {
  if [ ! -f "$LIBS/.complete" ]; then
    command -v mvn >/dev/null || { echo "error: Maven is required to fetch the Kafka jars" >&2; exit 1; }
    echo "fetching Apache Kafka jars from Maven Central..." >&2
    rm -rf "$LIBS"
    mvn -q -B -f scripts/kafka/pom.xml dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$LIBS" >&2
    touch "$LIBS/.complete"
  fi
}

configure() {
  mkdir -p "$DATA"
  cat >"$DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CPORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT
advertised.listeners=PLAINTEXT://$ADDR
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DATA
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
PROPS
  cat >"$DIR/log4j.properties" <<PROPS
log4j.rootLogger=WARN, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$DIR/broker.log
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
PROPS
  if [ ! -f "$DATA/meta.properties" ]; then
    local id
    id="$(java -cp "$LIBS/*" kafka.tools.StorageTool random-uuid)"
    java -Dlog4j.configuration="file:$DIR/log4j.properties" -cp "$LIBS/*" \
      kafka.tools.StorageTool format -t "$id" -c "$DIR/server.properties" >"$DIR/format.log" 2>&1 \
      || { cat "$DIR/format.log" >&2; exit 1; }
  fi
}

running() {
  [ -f "$DIR/broker.pid" ] && kill -0 "$(cat "$DIR/broker.pid")" 2>/dev/null
}

ready() {
  "$PY" - "$ADDR" 2>/dev/null <<'PY'
import sys
from confluent_kafka.admin import AdminClient
try:
    AdminClient({"bootstrap.servers": sys.argv[1], "log_level": 0}).list_topics(timeout=1)
except Exception:
    sys.exit(1)
PY
}

launch() {
  nohup java -Xms256m -Xmx512m -XX:+UseSerialGC \
    -Dlog4j.configuration="file:$DIR/log4j.properties" \
    -cp "$LIBS/*" kafka.Kafka "$DIR/server.properties" >"$DIR/stdout.log" 2>&1 &
  echo $! >"$DIR/broker.pid"
}

start() {
  fetch
  configure
  running || launch
  local binds=0
  for _ in $(seq 1 240); do
    if ready; then echo "$ADDR"; return 0; fi
    if ! running; then
      # Right after a stop the port can still be held (TIME_WAIT): wait, relaunch.
      if grep -q "Address already in use" "$DIR/stdout.log" && [ "$binds" -lt 30 ]; then
        binds=$((binds + 1)); sleep 2; launch; continue
      fi
      echo "error: the broker exited; see $DIR/stdout.log and $DIR/broker.log" >&2
      tail -n 20 "$DIR/stdout.log" >&2
      exit 1
    fi
    sleep 0.5
  done
  echo "error: the broker did not become ready in 120 s; see $DIR/broker.log" >&2
  exit 1
}

stop() {
  if running; then
    local pid; pid="$(cat "$DIR/broker.pid")"
    kill "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$DIR/broker.pid"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  url) echo "$ADDR" ;;
  *) echo "usage: $0 start|stop|url" >&2; exit 2 ;;
esac
