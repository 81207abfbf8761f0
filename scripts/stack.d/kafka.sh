# The `kafka` service of scripts/stack: Apache Kafka at the release pinned in scripts/stack.d/kafka/pom.xml, its
# jars from Maven Central, one KRaft node that is both broker and controller, on 127.0.0.1:$PAKAURA_KAFKA_PORT
# (controller on $PAKAURA_KAFKA_CONTROLLER_PORT). Defines kafka_assemble, up_kafka, down_kafka, status_kafka and
# env_kafka. Sourced, not run.
# shellcheck shell=bash

KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$STACK_D/kafka/pom.xml")
KAFKA_HOME=$PAKAURA_CACHE_DIR/kafka/$KAFKA_VERSION-$(short_hash "$STACK_D/kafka/pom.xml")
KAFKA_STATE=$PAKAURA_STATE_DIR/kafka
KAFKA_PIDFILE=$RUN_DIR/kafka.pid
KAFKA_TOPICS=(task-events task-updates reminders)
KAFKA_PARTITIONS=3

# Copy the broker's class path into the cache (once per pom.xml; concurrent callers wait on a lock).
kafka_assemble() {
    [[ -f $KAFKA_HOME/complete ]] && return 0
    command -v java >/dev/null || die "kafka: java is not installed (Java 17 or newer is needed)"
    command -v mvn >/dev/null || die "kafka: mvn is not installed (apt-get install -y maven)"
    mkdir -p "$PAKAURA_CACHE_DIR/kafka"
    exec 8>"$PAKAURA_CACHE_DIR/kafka/assemble.lock"
    flock 8
    if [[ ! -f $KAFKA_HOME/complete ]]; then
        local start=$SECONDS work=$KAFKA_HOME.tmp
        log "kafka: assembling Kafka $KAFKA_VERSION from Maven Central into $KAFKA_HOME (first time only; log: $LOG_DIR/kafka-assemble.log)"
        rm -rf "$work"
        mkdir -p "$work"
        cp "$STACK_D/kafka/pom.xml" "$work/pom.xml"
        if ! (cd "$work" && mvn -B -ntp -Dmaven.repo.local="$PAKAURA_CACHE_DIR/maven/repository" \
            dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$work/libs") \
            >"$LOG_DIR/kafka-assemble.log" 2>&1; then
            show_log_tail "$LOG_DIR/kafka-assemble.log"
            die "kafka: assembling the class path with Maven failed"
        fi
        rm -rf "$KAFKA_HOME"
        mv "$work" "$KAFKA_HOME"
        touch "$KAFKA_HOME/complete"
        log "kafka: assembled in $((SECONDS - start)) s ($(du -sh "$KAFKA_HOME/libs" | cut -f1))"
    fi
    exec 8>&-
}

# Run one of Kafka's command line tools (a main class) quietly: a small heap, fast start.
kafka_tool() {
    java -Xshare:auto -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xms32m -Xmx256m \
        -Dlog4j2.configurationFile="$STACK_D/kafka/log4j2-tools.properties" \
        -cp "$KAFKA_HOME/libs/*" "$@"
}

kafka_write_config() {
    mkdir -p "$KAFKA_STATE/data"
    cat >"$KAFKA_STATE/server.properties" <<PROPERTIES
# Written by scripts/stack (scripts/stack.d/kafka.sh) on every start; edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$PAKAURA_KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PAKAURA_KAFKA_PORT,CONTROLLER://127.0.0.1:$PAKAURA_KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PAKAURA_KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$KAFKA_STATE/data
num.partitions=$KAFKA_PARTITIONS
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
PROPERTIES
}

kafka_running() { pid_alive "$KAFKA_PIDFILE" kafka.Kafka; }

# Wait until the broker answers admin requests (not just until its port is open); leaves the topic list in
# topics.list.
kafka_wait_healthy() {
    local deadline=$((SECONDS + ${1:-120}))
    while ((SECONDS < deadline)); do
        pid_exists "$KAFKA_PIDFILE" || { show_log_tail "$LOG_DIR/kafka.log"; die "kafka: the broker exited during start"; }
        if port_open "$PAKAURA_KAFKA_PORT" &&
            kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$PAKAURA_KAFKA_PORT" --list \
                >"$KAFKA_STATE/topics.list" 2>/dev/null; then
            return 0
        fi
        sleep 1
    done
    show_log_tail "$LOG_DIR/kafka.log"
    die "kafka: not healthy after ${1:-120}s"
}

# Create the topics that the health check's listing (topics.list) lacks.
kafka_create_topics() {
    local topic
    for topic in "${KAFKA_TOPICS[@]}"; do
        grep -qx -- "$topic" "$KAFKA_STATE/topics.list" && continue
        log "kafka: creating topic $topic ($KAFKA_PARTITIONS partitions)"
        kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$PAKAURA_KAFKA_PORT" --create \
            --if-not-exists --topic "$topic" --partitions "$KAFKA_PARTITIONS" --replication-factor 1 \
            >>"$LOG_DIR/kafka-tools.log" 2>&1 ||
            { show_log_tail "$LOG_DIR/kafka-tools.log"; die "kafka: creating topic $topic failed"; }
    done
}

up_kafka() {
    kafka_assemble
    if kafka_running; then return 0; fi
    command -v java >/dev/null || die "kafka: java is not installed (Java 17 or newer is needed)"
    kafka_write_config
    if [[ ! -f $KAFKA_STATE/data/meta.properties ]]; then
        log "kafka: formatting the log folder $KAFKA_STATE/data"
        local cluster_id
        cluster_id=$(kafka_tool kafka.tools.StorageTool random-uuid 2>>"$LOG_DIR/kafka-tools.log")
        kafka_tool kafka.tools.StorageTool format --cluster-id "$cluster_id" \
            --config "$KAFKA_STATE/server.properties" >>"$LOG_DIR/kafka-tools.log" 2>&1 ||
            { show_log_tail "$LOG_DIR/kafka-tools.log"; die "kafka: formatting the storage failed"; }
    fi
    require_free_port kafka "$PAKAURA_KAFKA_PORT"
    require_free_port kafka "$PAKAURA_KAFKA_CONTROLLER_PORT"
    log "kafka: starting Kafka $KAFKA_VERSION on 127.0.0.1:$PAKAURA_KAFKA_PORT"
    spawn "$LOG_DIR/kafka.log" "$KAFKA_PIDFILE" \
        java -Xms256m -Xmx1g -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$STACK_D/kafka/log4j2.properties" -Dkafka.logs.dir="$LOG_DIR" \
        -cp "$KAFKA_HOME/libs/*" kafka.Kafka "$KAFKA_STATE/server.properties"
    kafka_wait_healthy 120
    kafka_create_topics
    note_started kafka
}

down_kafka() {
    kafka_running || { rm -f "$KAFKA_PIDFILE"; return 0; }
    log "kafka: stopping"
    stop_pid "$KAFKA_PIDFILE" kafka.Kafka 60 || true
}

status_kafka() {
    if kafka_running; then
        echo "kafka     running  127.0.0.1:$PAKAURA_KAFKA_PORT  Kafka $KAFKA_VERSION  pid $(<"$KAFKA_PIDFILE")"
    else
        echo "kafka     stopped"
    fi
}

env_kafka() {
    if kafka_running; then
        echo "export PAKAURA_KAFKA_BOOTSTRAP=127.0.0.1:$PAKAURA_KAFKA_PORT"
    else
        echo "# kafka is not running: scripts/stack up kafka"
    fi
}
