#!/usr/bin/env bash
# A local liveseg cluster on loopback: one redis-server on 127.0.0.1, the
# model service (`liveseg model serve`) on 127.0.0.5 and three
# `liveseg serve --cluster` nodes on 127.0.0.2, 127.0.0.3 and 127.0.0.4.
#
#   deploy/local/cluster.sh [up]         start whatever is not running (default)
#   deploy/local/cluster.sh down         SIGTERM the nodes (graceful handoff), then the model, then Redis
#   deploy/local/cluster.sh status       pids, addresses, liveness, shards held, API key
#   deploy/local/cluster.sh logs [NAME]  follow the logs (NAME: n1 n2 n3 model redis; default all)
#
# Settings (environment):
#   LIVESEG_BIN                  liveseg binary [target/release/liveseg, built if missing]
#   LIVESEG_LOCAL_DIR            state dir [deploy/local/.state]
#   LIVESEG_LOCAL_REDIS_PORT     Redis port on 127.0.0.1 [6390]
#   LIVESEG_LOCAL_PORT           node port on each loopback address [7070]
#   LIVESEG_LOCAL_SHARDS         shard count, fixed for the life of the state dir [16]
#   LIVESEG_LOCAL_MODEL          'on' runs the model service, 'off' does not [on]
#   LIVESEG_LOCAL_MODEL_PORT     model service port on 127.0.0.5 [7080]
#   LIVESEG_LOCAL_MODEL_DIR      model files [models/all-MiniLM-L6-v2, fetched if missing]
#   LIVESEG_LOCAL_START_TIMEOUT  seconds to wait for a process to come up [60]
#   LIVESEG_LOCAL_STOP_TIMEOUT   seconds to wait for a node to drain and exit [60]
#   LIVESEG_LOCAL_LOG_LINES      lines `logs` shows before following [40]
# Any other LIVESEG_* variable (LIVESEG_LEASE_TTL, LIVESEG_LOG_FORMAT,
# LIVESEG_CONFIG=file, ...) and RUST_LOG reach the nodes unchanged; the flags
# this script passes (cluster, Redis URL, shards, listen, data dir, node name,
# ownership journal) take precedence over them. The nodes also get
# LIVESEG_MODEL_SERVER=http://127.0.0.5:PORT, the model service's address.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
state=${LIVESEG_LOCAL_DIR:-$here/.state}
case $state in
    /*) ;;
    *) state=$PWD/$state ;;
esac
redis_port=${LIVESEG_LOCAL_REDIS_PORT:-6390}
node_port=${LIVESEG_LOCAL_PORT:-7070}
shards=${LIVESEG_LOCAL_SHARDS:-16}
start_timeout=${LIVESEG_LOCAL_START_TIMEOUT:-60}
stop_timeout=${LIVESEG_LOCAL_STOP_TIMEOUT:-60}
bin=${LIVESEG_BIN:-$root/target/release/liveseg}
case $bin in
    /*) ;;
    */*) bin=$PWD/$bin ;;
    *) bin=$(command -v "$bin" || echo "$bin") ;;
esac
redis_dir=$state/redis
nodes=(n1 n2 n3)
model_mode=${LIVESEG_LOCAL_MODEL:-on}
case $model_mode in
    on | off) ;;
    *)
        printf 'cluster.sh: LIVESEG_LOCAL_MODEL must be on or off, not %s\n' "$model_mode" >&2
        exit 2
        ;;
esac
model_host=127.0.0.5
model_port=${LIVESEG_LOCAL_MODEL_PORT:-7080}
model_addr=$model_host:$model_port
model_files=${LIVESEG_LOCAL_MODEL_DIR:-$root/models/all-MiniLM-L6-v2}
case $model_files in
    /*) ;;
    *) model_files=$PWD/$model_files ;;
esac
model_dir=$state/model

say() { printf '%s\n' "$*" >&2; }
starting=0
die() {
    say "cluster.sh: $*"
    if [ "$starting" -eq 1 ]; then
        say "what did start keeps running; '$0 status' shows it, '$0 down' stops it"
    fi
    exit 1
}

# n1 -> 127.0.0.2, n2 -> 127.0.0.3, n3 -> 127.0.0.4
node_host() { echo "127.0.0.$((${1#n} + 1))"; }
node_addr() { echo "$(node_host "$1"):$node_port"; }

# The command line of a live process, or failure.
cmdline() {
    if [ -r "/proc/$1/cmdline" ]; then
        tr '\0' ' ' <"/proc/$1/cmdline"
    else
        ps -o args= -p "$1" 2>/dev/null
    fi
}

# Prints the pid in FILE when that process is alive and its command line
# contains MATCH (so a recycled pid is never mistaken for ours).
live_pid() {
    local file=$1 match=$2 pid
    [ -f "$file" ] || return 1
    pid=$(cat "$file" 2>/dev/null) || return 1
    case $pid in '' | *[!0-9]*) return 1 ;; esac
    kill -0 "$pid" 2>/dev/null || return 1
    case $(cmdline "$pid") in *"$match"*) ;; *) return 1 ;; esac
    echo "$pid"
}

node_pid() { live_pid "$state/$1/node.pid" "$state/$1"; }
redis_pid() { live_pid "$redis_dir/redis.pid" "redis-server"; }
model_pid() { live_pid "$model_dir/model.pid" "$model_dir"; }

# Whether Redis answers PING on its port (bash /dev/tcp; no redis-cli needed).
redis_ping() {
    (
        exec 3<>"/dev/tcp/127.0.0.1/$redis_port" || exit 1
        printf 'PING\r\n' >&3
        IFS= read -r -t 2 reply <&3 || exit 1
        [ "${reply%$'\r'}" = "+PONG" ]
    ) 2>/dev/null
}

# Whether HOST:PORT answers GET /healthz with 200.
healthz() {
    local host=${1%:*} port=${1##*:}
    (
        exec 3<>"/dev/tcp/$host/$port" || exit 1
        printf 'GET /healthz HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$1" >&3
        IFS= read -r -t 2 line <&3 || exit 1
        case $line in "HTTP/1."?" 200"*) exit 0 ;; *) exit 1 ;; esac
    ) 2>/dev/null
}

# The tenant API key in DIR/credentials.json (python3 if present, else sed).
api_key() {
    local file=$1/credentials.json
    [ -s "$file" ] || return 1
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["api_key"])' "$file"
    else
        tr -d '\n' <"$file" | sed -n 's/.*"api_key"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p'
    fi
}

# The shards node NAME believes it holds now, from its ownership journal (the
# last record of each shard; CLOCK_MONOTONIC is shared on one machine), as
# "COUNT LIST", e.g. "5 0 6 11 12 13". Needs python3.
shards_held() {
    command -v python3 >/dev/null 2>&1 || return 1
    [ -f "$state/$1/ownership.jsonl" ] || return 1
    python3 - "$state/$1/ownership.jsonl" <<'EOF'
import json, sys, time
last = {}
with open(sys.argv[1]) as f:
    for line in f:
        try:
            r = json.loads(line)
            last[r["shard"]] = r
        except (ValueError, KeyError, TypeError):
            pass
now = time.monotonic_ns()
held = sorted(
    s
    for s, r in last.items()
    if r.get("kind") == "draining"
    or (r.get("kind") in ("acquire", "renew") and r.get("deadline_ns", 0) > now)
)
print(len(held), *held)
EOF
}

# The tenant id in n1's credentials.json and its shard (FNV-1a 64 of the id
# mod the shard count, as liveseg_cluster::placement::shard_of), "TENANT SHARD".
tenant_shard() {
    command -v python3 >/dev/null 2>&1 || return 1
    [ -s "$state/n1/credentials.json" ] || return 1
    python3 - "$state/n1/credentials.json" "$shards" <<'EOF'
import json, sys
tenant = json.load(open(sys.argv[1]))["tenant"]
h = 0xCBF29CE484222325
for b in tenant.encode():
    h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
print(tenant, h % max(int(sys.argv[2]), 1))
EOF
}

tail_log() {
    [ -f "$1" ] || return 0
    say "--- last lines of $1:"
    tail -n 20 "$1" >&2
}

ensure_bin() {
    if [ -x "$bin" ]; then
        return 0
    fi
    if [ -n "${LIVESEG_BIN:-}" ]; then
        die "LIVESEG_BIN=$LIVESEG_BIN is not an executable file"
    fi
    command -v cargo >/dev/null 2>&1 ||
        die "$bin is missing and cargo is not on PATH; build it with: cargo build --release -p liveseg-cli"
    say "building liveseg (release): cargo build --release -p liveseg-cli"
    (cd "$root" && cargo build --release -p liveseg-cli)
    [ -x "$bin" ] || die "the build did not produce $bin"
}

ensure_redis_server() {
    command -v redis-server >/dev/null 2>&1 && return 0
    if [ "$(id -u)" -eq 0 ] || sudo -n true 2>/dev/null; then
        say "redis-server is missing; installing it with scripts/install-deps.sh"
        "$root/scripts/install-deps.sh"
    fi
    command -v redis-server >/dev/null 2>&1 ||
        die "redis-server is not installed. Install it (Debian/Ubuntu: sudo $root/scripts/install-deps.sh, or sudo apt-get install redis-server; macOS: brew install redis) and run this again."
}

start_redis() {
    local pid deadline
    if pid=$(redis_pid); then
        say "redis  127.0.0.1:$redis_port already running (pid $pid)"
        starting=1
        return 0
    fi
    if redis_ping; then
        die "something else answers on 127.0.0.1:$redis_port; stop it or set LIVESEG_LOCAL_REDIS_PORT"
    fi
    starting=1
    mkdir -p "$redis_dir"
    rm -f "$redis_dir/redis.pid"
    # A short AOF tail keeps a restart's reload short, and expired dedupe
    # buckets are freed off Redis's main thread (README, "Redis settings").
    redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$redis_dir" \
        --appendonly yes --appendfsync always --save "" \
        --auto-aof-rewrite-percentage 25 --lazyfree-lazy-expire yes \
        --daemonize yes --pidfile "$redis_dir/redis.pid" --logfile "$redis_dir/redis.log" ||
        die "redis-server did not start; see $redis_dir/redis.log"
    deadline=$((SECONDS + start_timeout))
    until redis_ping && redis_pid >/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail_log "$redis_dir/redis.log"
            die "redis did not answer PING on 127.0.0.1:$redis_port within ${start_timeout}s"
        fi
        sleep 0.1
    done
    say "redis  127.0.0.1:$redis_port up (pid $(redis_pid))"
}

# Whether the model service answers an Embed call: a real gRPC round trip
# through the model, so it holds only once health is SERVING (before that
# the service refuses calls with UNAVAILABLE).
model_answers() {
    printf 'ready check\n' | "$bin" embed --model-server "http://$model_addr" >/dev/null 2>&1
}

ensure_model_files() {
    local f missing=
    for f in model.safetensors tokenizer.json config.json; do
        [ -s "$model_files/$f" ] || missing="$missing $f"
    done
    [ -z "$missing" ] && return 0
    if [ -n "${LIVESEG_LOCAL_MODEL_DIR:-}" ]; then
        die "LIVESEG_LOCAL_MODEL_DIR=$LIVESEG_LOCAL_MODEL_DIR lacks$missing"
    fi
    say "model files missing ($missing ); fetching them: scripts/fetch-model.sh"
    "$root/scripts/fetch-model.sh" "$model_files" ||
        die "scripts/fetch-model.sh failed; run it by hand, or start without the model: LIVESEG_LOCAL_MODEL=off $0 up"
}

# Starts the model service and waits until it answers (the model loads and
# warms up after the port is bound).
start_model() {
    local pid deadline launched launcher=(nohup)
    if pid=$(model_pid); then
        say "model  $model_addr already running (pid $pid)"
        return 0
    fi
    ensure_model_files
    mkdir -p "$model_dir"
    rm -f "$model_dir/model.addr" "$model_dir/model.pid"
    if command -v setsid >/dev/null 2>&1; then
        launcher=(setsid nohup)
    fi
    printf '\n=== %s starting the model service\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >>"$model_dir/model.log"
    # --addr-file doubles as the process's mark: model_pid() matches the
    # state dir in its command line.
    # RUST_LOG=info unless set: "model ready" or the load error in its log.
    RUST_LOG=${RUST_LOG:-info} "${launcher[@]}" "$bin" model serve --listen "$model_addr" --model-dir "$model_files" \
        --addr-file "$model_dir/model.addr" \
        </dev/null >>"$model_dir/model.log" 2>&1 &
    launched=$!
    echo "$launched" >"$model_dir/model.pid"
    deadline=$((SECONDS + start_timeout))
    until [ -s "$model_dir/model.addr" ] && model_answers; do
        # kill -0, not model_pid: until the launcher has exec'd the binary,
        # the command line is still this script's.
        if ! kill -0 "$launched" 2>/dev/null; then
            tail_log "$model_dir/model.log"
            die "the model service exited during startup (log: $model_dir/model.log)"
        fi
        # A model that fails to load leaves the service up, NOT_SERVING.
        if grep -q "the model failed to load" "$model_dir/model.log" 2>/dev/null; then
            tail_log "$model_dir/model.log"
            die "the model service could not load $model_files (log: $model_dir/model.log)"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail_log "$model_dir/model.log"
            die "the model service did not answer on $model_addr within ${start_timeout}s"
        fi
        sleep 0.2
    done
    say "model  $model_addr up (pid $(model_pid))"
}

# Starts node NAME in the background unless it is running.
launch_node() {
    local name=$1 dir=$state/$1 pid launcher=(nohup)
    if pid=$(node_pid "$name"); then
        say "$name     $(node_addr "$name") already running (pid $pid)"
        return 0
    fi
    mkdir -p "$dir"
    # node.addr is the node's "I am listening" signal: drop the previous run's.
    rm -f "$dir/node.addr" "$dir/node.pid"
    # Its own session: a later Ctrl-C in this terminal does not reach it.
    if command -v setsid >/dev/null 2>&1; then
        launcher=(setsid nohup)
    fi
    printf '\n=== %s starting %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$name" >>"$dir/node.log"
    # Only with the model service running. A variable the node does not know
    # yet is ignored (clap reads just the variables of its flags); only a
    # config file (LIVESEG_CONFIG) rejects unknown names, and this is not one.
    if [ "$model_mode" = on ]; then
        launcher=(env "LIVESEG_MODEL_SERVER=http://$model_addr" "${launcher[@]}")
    fi
    "${launcher[@]}" "$bin" serve --cluster \
        --redis-url "redis://127.0.0.1:$redis_port/" \
        --shards "$shards" \
        --listen "$(node_addr "$name")" \
        --data-dir "$dir" \
        --node-name "$name" \
        --ownership-journal "$dir/ownership.jsonl" \
        --redis-durable \
        </dev/null >>"$dir/node.log" 2>&1 &
    echo "$!" >"$dir/node.pid"
}

# Waits until node NAME has written each FILE in its data dir (and is alive).
await_files() {
    local name=$1 dir=$state/$1 deadline f missing
    shift
    deadline=$((SECONDS + start_timeout))
    while :; do
        missing=
        for f in "$@"; do
            [ -s "$dir/$f" ] || missing="$missing $f"
        done
        [ -z "$missing" ] && return 0
        if ! node_pid "$name" >/dev/null; then
            tail_log "$dir/node.log"
            die "$name exited during startup (log: $dir/node.log)"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail_log "$dir/node.log"
            if [ "$name" = n1 ] && [ ! -s "$dir/credentials.json" ]; then
                say "n1 wrote no credentials.json: the first node of a new cluster writes it. If Redis"
                say "kept a cluster from an earlier run whose n1 data dir is gone, run 'down' and"
                say "remove $state to start fresh."
            fi
            die "$name did not write$missing within ${start_timeout}s (log: $dir/node.log)"
        fi
        sleep 0.1
    done
}

# Waits until every node answers an authenticated query.
await_queries() {
    local key=$1 name deadline
    deadline=$((SECONDS + start_timeout))
    for name in "${nodes[@]}"; do
        until "$bin" --server "http://$(node_addr "$name")" --api-key "$key" \
            segments list >/dev/null 2>&1; do
            node_pid "$name" >/dev/null || {
                tail_log "$state/$name/node.log"
                die "$name exited during startup (log: $state/$name/node.log)"
            }
            if [ "$SECONDS" -ge "$deadline" ]; then
                tail_log "$state/$name/node.log"
                die "$name did not answer queries within ${start_timeout}s"
            fi
            sleep 0.2
        done
    done
}

cmd_up() {
    local key name
    ensure_redis_server
    ensure_bin
    mkdir -p "$state"
    start_redis
    if [ "$model_mode" = on ]; then
        start_model
    fi
    # The first node bootstraps the catalog and writes credentials.json.
    launch_node n1
    await_files n1 node.addr credentials.json
    launch_node n2
    launch_node n3
    await_files n2 node.addr
    await_files n3 node.addr
    key=$(api_key "$state/n1") || die "cannot read the API key from $state/n1/credentials.json"
    await_queries "$key"
    starting=0
    for name in "${nodes[@]}"; do
        say "$name     $(node_addr "$name") up (pid $(node_pid "$name"))"
    done
    local model_line="model service: off (LIVESEG_LOCAL_MODEL=off)"
    if [ "$model_mode" = on ]; then
        model_line="model service on $model_addr (the nodes get LIVESEG_MODEL_SERVER=http://$model_addr)"
    fi
    cat <<EOF

liveseg local cluster is up: Redis on 127.0.0.1:$redis_port, nodes n1 n2 n3 on
$(node_addr n1), $(node_addr n2), $(node_addr n3) ($shards shards), $model_line.
State: $state

API key: field api_key of $state/n1/credentials.json
(admin_key is beside it). Any node answers; it forwards to the shard owner:

  $bin --server http://$(node_addr n2) --api-key "\$(jq -r .api_key $state/n1/credentials.json)" ingest events.jsonl
  $bin --server http://$(node_addr n3) --data-dir $state/n1 segments list

(--data-dir makes the CLI read the key from credentials.json itself.)
  $0 status     # pids, liveness, shards held per node
  $0 logs       # follow all logs
  $0 down       # graceful stop
EOF
}

# SIGTERMs PID, waits up to TIMEOUT seconds, then SIGKILLs it.
stop_pid() {
    local label=$1 pid=$2 timeout=$3 deadline
    kill -TERM "$pid" 2>/dev/null || return 0
    deadline=$((SECONDS + timeout))
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            say "$label (pid $pid) still running after ${timeout}s: kill -9"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.1
    done
}

cmd_down() {
    local name pid i started
    # One at a time, last first, so each drains its shards to nodes that stay.
    for ((i = ${#nodes[@]} - 1; i >= 0; i--)); do
        name=${nodes[i]}
        if pid=$(node_pid "$name"); then
            started=$SECONDS
            stop_pid "$name" "$pid" "$stop_timeout"
            say "$name stopped ($((SECONDS - started))s)"
        else
            say "$name not running"
        fi
        rm -f "$state/$name/node.pid"
    done
    # After the nodes: they may call it while they drain.
    if pid=$(model_pid); then
        stop_pid model "$pid" "$stop_timeout"
        say "model stopped"
    else
        say "model not running"
    fi
    rm -f "$model_dir/model.pid"
    if pid=$(redis_pid); then
        stop_pid redis "$pid" "$stop_timeout"
        say "redis stopped"
    else
        say "redis not running"
    fi
    rm -f "$redis_dir/redis.pid"
}

cmd_status() {
    local name pid addr health held count list all_up=0 total=0 any_held=0
    local tenant='' tshard='' towner=''
    if held=$(tenant_shard); then
        tenant=${held% *}
        tshard=${held##* }
    fi
    if pid=$(redis_pid); then
        if redis_ping; then health="up (PONG)"; else
            health="NOT ANSWERING"
            all_up=1
        fi
        printf '%-6s %-16s pid %-8s %s\n' redis "127.0.0.1:$redis_port" "$pid" "$health"
    else
        printf '%-6s %-16s %-12s %s\n' redis "127.0.0.1:$redis_port" "-" down
        all_up=1
    fi
    for name in "${nodes[@]}"; do
        addr=$(node_addr "$name")
        if pid=$(node_pid "$name"); then
            if healthz "$addr"; then health="up (healthz ok)"; else
                health="NOT SERVING"
                all_up=1
            fi
            if held=$(shards_held "$name"); then
                count=${held%% *}
                list=${held#"$count"}
                health="$health, holds $count shards:${list:- none}"
                total=$((total + count))
                any_held=1
                case " $list " in *" $tshard "*) [ -z "$tshard" ] || towner=$name ;; esac
            fi
            printf '%-6s %-16s pid %-8s %s\n' "$name" "$addr" "$pid" "$health"
        else
            printf '%-6s %-16s %-12s %s\n' "$name" "$addr" "-" down
            all_up=1
        fi
    done
    if pid=$(model_pid); then
        if model_answers; then health="up (answers Embed)"; else
            health="NOT SERVING (loading, or failed: see its log)"
            all_up=1
        fi
        printf '%-6s %-16s pid %-8s %s\n' model "$model_addr" "$pid" "$health"
    elif [ "$model_mode" = on ]; then
        printf '%-6s %-16s %-12s %s\n' model "$model_addr" "-" down
        all_up=1
    else
        printf '%-6s %-16s %-12s %s\n' model "$model_addr" "-" "off (LIVESEG_LOCAL_MODEL=off)"
    fi
    if [ "$any_held" -eq 1 ]; then
        echo "shards held: $total of $shards"
    fi
    if [ -n "$tenant" ]; then
        echo "tenant '$tenant' lives in shard $tshard, held by ${towner:-no live node right now}"
    fi
    if [ -s "$state/n1/credentials.json" ]; then
        echo "API key: field api_key of $state/n1/credentials.json"
    else
        echo "API key: none yet ($state/n1/credentials.json appears on the first 'up')"
    fi
    echo "logs: $state/{n1,n2,n3}/node.log, $model_dir/model.log, $redis_dir/redis.log"
    return "$all_up"
}

cmd_logs() {
    local files=() name
    if [ $# -eq 0 ]; then
        set -- "${nodes[@]}" redis
        [ "$model_mode" = off ] || set -- "$@" model
    fi
    for name in "$@"; do
        case $name in
            n1 | n2 | n3) files+=("$state/$name/node.log") ;;
            model) files+=("$model_dir/model.log") ;;
            redis) files+=("$redis_dir/redis.log") ;;
            *) die "logs: unknown name '$name' (n1, n2, n3, model, redis)" ;;
        esac
    done
    exec tail -n "${LIVESEG_LOCAL_LOG_LINES:-40}" -F "${files[@]}"
}

usage() {
    sed -n '2,9s/^# \{0,1\}//p' "$0"
}

main() {
    local cmd=${1:-up}
    [ $# -eq 0 ] || shift
    case $cmd in
        up) cmd_up ;;
        down) cmd_down ;;
        status) cmd_status ;;
        logs) cmd_logs "$@" ;;
        -h | --help | help) usage ;;
        *)
            usage >&2
            exit 2
            ;;
    esac
}

main "$@"
