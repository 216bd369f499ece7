#!/usr/bin/env bash
# The cluster benchmarks (docs/BENCHMARKS.md, "Cluster"): starts three
# nats-servers (one NATS cluster, JetStream on, temp dirs, free ports) and
# three achat nodes, node k connected to NATS server k, and runs:
#   ring-cluster   1,000 clients round-robin over the three nodes (so a
#                  client's neighbour is on another node), 2,000 messages
#                  each, window 16
#   ring-single    the same ring against one achat node (no cluster)
#   ring-baseline  the same ring against the tutorial-design baseline
#   crowd          57,000 idle users (19,000 per node, one hold process
#                  each), then probes between random cross-node pairs
#   churn          100,000 sessions at 1,000/s spread over the nodes, then
#                  a sample of the names logged in again on another node
# Reports go under target/cluster/; a summary is printed at the end.
#
#   benches/cluster.sh                 # about 10 minutes on the 2-core machine
#   RUNS=3 benches/cluster.sh          # each ring RUNS times, alternating
#   ONLY="ring crowd" benches/cluster.sh
#   CHURN="--sessions 20000 --rate 1000" benches/cluster.sh
#   NODE_ARGS="--workers 1" benches/cluster.sh   # extra flags for every node
#   RING_ARGS="--size 80" benches/cluster.sh      # extra flags for the rings
#   NATS_PROCS=2 benches/cluster.sh              # GOMAXPROCS of each NATS server (default 1)
#   ACHAT=other/achat-server benches/cluster.sh  # another build of the server
#
# (Three nodes share the two cores; one worker each instead of the default
# two made no difference beyond noise on 2026-12-07: docs/BENCHMARKS.md.)
#
# Needs nats-server on PATH (or NATS_SERVER=path) and release builds:
#   cargo build --release --bins --bench load
#   cargo build --release --manifest-path ../shared/baselines/tokio-achat/Cargo.toml \
#       --target-dir target/baselines
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/cluster
mkdir -p "$out"
runs=${RUNS:-1}
only=${ONLY:-ring crowd churn}
read -r -a node_args <<< "${NODE_ARGS:-}"
nats=${NATS_SERVER:-$(command -v nats-server || echo /usr/sbin/nats-server)}
# Three Go servers share two cores with the nodes and the generator: one
# OS thread of Go code each (GOMAXPROCS=1) cut NATS's CPU per delivery by
# 0.3 us in the ring (docs/BENCHMARKS.md, "NATS on one core each");
# NATS_PROCS=2 gives Go's default here (one per core).
nats_procs=${NATS_PROCS:-1}
achat=${ACHAT:-target/release/achat-server}
baseline=target/baselines/release/tokio-achat
cargo build --release --bins --bench load -q
for name in $only; do rm -f "$out/$name".txt "$out/$name"-*.txt; done
load=$(ls -t target/release/deps/load-* | grep -v '\.d$' | head -1)
tmp=$(mktemp -d /tmp/achat-cluster.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
log() { echo "cluster.sh: $*" >&2; }

# A free port on loopback (never 4222, NATS's default).
free_port() {
    python3 -c 'import socket
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close()
    if p != 4222: print(p); break'
}
# Waits until 127.0.0.1:$1 accepts connections (at most 20 s).
wait_port() {
    for _ in $(seq 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    log "nothing accepts on port $1"; return 1
}

# Waits until the server on 127.0.0.1:$1 welcomes a login (at most 20 s):
# a node binds its port before it has joined the cluster.
wait_login() {
    python3 - "$1" <<'PY'
import socket, sys, time
until = time.time() + 20
while time.time() < until:
    try:
        with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2) as s:
            s.sendall(b"ready-probe-%d\n/quit\n" % (time.time_ns() % 10**9))
            if b"server: welcome" in s.recv(4096):
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.1)
sys.exit(1)
PY
}

# --- NATS: three servers, one cluster ----------------------------------
client_ports=() route_ports=() mon_ports=() nats_pids=()
for k in 1 2 3; do
    client_ports+=("$(free_port)"); route_ports+=("$(free_port)"); mon_ports+=("$(free_port)")
done
routes=$(printf 'nats-route://127.0.0.1:%s, ' "${route_ports[@]}")
for k in 0 1 2; do
    mkdir -p "$tmp/store$k"
    cat > "$tmp/n$k.conf" <<EOF
server_name: n$k
listen: 127.0.0.1:${client_ports[$k]}
http: 127.0.0.1:${mon_ports[$k]}
jetstream { store_dir: $tmp/store$k }
cluster { name: c, listen: 127.0.0.1:${route_ports[$k]}, routes: [${routes%, }] }
EOF
    GOMAXPROCS=$nats_procs "$nats" -c "$tmp/n$k.conf" > "$out/nats$k.log" 2>&1 &
    pids+=($!) nats_pids+=($!)
done
for k in 0 1 2; do wait_port "${client_ports[$k]}"; done
for _ in $(seq 200); do
    grep -q "JetStream cluster new metadata leader" "$out"/nats*.log && break
    sleep 0.1
done
log "NATS up: client ports ${client_ports[*]}, pids ${nats_pids[*]}, GOMAXPROCS=$nats_procs"
nats_pid_list=$(IFS=,; echo "${nats_pids[*]}")

# --- achat nodes ----------------------------------------------------------
# start_nodes NAME: three nodes, node k on NATS server k; sets node_addrs,
# node_pid_list. stop_nodes kills them. Node 0 starts first, the others
# once it takes logins: started together on a fresh cluster name, two of
# the three nodes exit at start ("cannot open the cluster's name service:
# ... no stream found for given subject", or "jetstream request timed
# out"), a bug in the name service's set-up (docs/BENCHMARKS.md, "Cluster").
node_pids=()
start_nodes() {
    local name=$1 addrs=()
    node_pids=()
    for k in 0 1 2; do
        local port
        port=$(free_port)
        RUST_LOG=warn "$achat" --bind "127.0.0.1:$port" --http 127.0.0.1:0 \
            --cluster "nats://127.0.0.1:${client_ports[$k]}" \
            --cluster-name "$name" --node-id "node$k" "${node_args[@]}" \
            > "$out/$name-node$k.log" 2>&1 &
        pids+=($!) node_pids+=($!)
        addrs+=("127.0.0.1:$port")
        if [ "$k" = 0 ]; then
            wait_login "$port" || { log "node 0 of $name takes no logins"; return 1; }
        fi
    done
    for a in "${addrs[@]}"; do
        wait_login "${a##*:}" || { log "$a takes no logins"; return 1; }
    done
    node_addrs=$(IFS=,; echo "${addrs[*]}")
    node_pid_list=$(IFS=,; echo "${node_pids[*]}")
    log "cluster $name: nodes $node_addrs, pids $node_pid_list"
}
stop_nodes() {
    for pid in "${node_pids[@]}"; do
        kill -0 "$pid" 2>/dev/null || log "node $pid had died (see $out/*-node*.log)"
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    node_pids=()
}
# start_single NAME COMMAND...: one server on a free port; sets single_addr, single_pid.
start_single() {
    local name=$1 port
    shift
    port=$(free_port)
    env "$@" "127.0.0.1:$port" > "$out/$name.log" 2>&1 &
    single_pid=$! && pids+=($!)
    single_addr=127.0.0.1:$port
    wait_port "$port"
}
stop_single() {
    kill "$single_pid" 2>/dev/null || true
    wait "$single_pid" 2>/dev/null || true
}
# nats_counts: messages and bytes the NATS servers took in and sent out so
# far (summed over the three, from their monitoring port's /varz); prints
# nothing when a server does not answer (the traffic line is then left out,
# the run goes on).
nats_counts() {
    python3 - "${mon_ports[@]}" <<'PY' || true
import json, sys, urllib.request
t = [0, 0, 0, 0]
try:
    for port in sys.argv[1:]:
        v = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/varz", timeout=5))
        for i, k in enumerate(["in_msgs", "out_msgs", "in_bytes", "out_bytes"]):
            t[i] += v[k]
except (OSError, ValueError, KeyError) as e:
    print(f"cluster.sh: no NATS counts ({e})", file=sys.stderr)
    sys.exit(1)
print(*t)
PY
}
# nats_traffic NAME BEFORE: what NATS carried since BEFORE, per delivery
# of the ring run NAME, appended to its report.
nats_traffic() {
    local name=$1 before=$2 after
    after=$(nats_counts)
    [ -n "$before" ] && [ -n "$after" ] || return 0
    python3 - "$out/$name.txt" "$before" "$after" <<'PY'
import json, sys
path, before, after = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
d = [int(a) - int(b) for a, b in zip(after, before)]
deliveries = 0
for line in open(path):
    if line.startswith("JSON "):
        deliveries = json.loads(line[5:])["results"]["ring"]["deliveries"]
if deliveries:
    msg = (f"  nats traffic: {d[0]:,} messages in, {d[1]:,} out, {d[2]:,} bytes in, {d[3]:,} out"
           f" = {d[0] / deliveries:.3f} messages in and {d[2] / deliveries:.1f} bytes in per delivery")
    print(msg, file=sys.stderr)
    open(path, "a").write(msg + "\n")
PY
}
# run NAME SCENARIO ARGS...: one load run, report kept as $out/NAME.txt.
run() {
    local name=$1
    shift
    log "$name: load $*"
    "$load" "$@" > "$out/$name.txt" || log "$name: the run failed (see $out/$name.txt)"
    grep -E '^(  |FAILED)' "$out/$name.txt" | grep -vE '^  (login barrier|checks)' >&2 || true
}

read -r -a ring_args <<< "${RING_ARGS:-}"
ring=(ring --clients 1000 --messages 2000 --window 16 "${ring_args[@]}")
for r in $(seq "$runs"); do
    [[ " $only " == *" ring "* ]] || break
    start_nodes "ring$r"
    before=$(nats_counts)
    run "ring-cluster-run$r" "${ring[@]}" --addr "$node_addrs" \
        --server-pid "$node_pid_list" --aux-pid "$nats_pid_list"
    nats_traffic "ring-cluster-run$r" "$before"
    stop_nodes
    start_single "ring-single-run$r" RUST_LOG=warn "$achat" --http 127.0.0.1:0 --bind
    run "ring-single-run$r" "${ring[@]}" --addr "$single_addr" --server-pid "$single_pid"
    stop_single
    start_single "ring-baseline-run$r" "$baseline"
    run "ring-baseline-run$r" "${ring[@]}" --addr "$single_addr" --server-pid "$single_pid"
    stop_single
    sleep 1
done

if [[ " $only " == *" crowd "* ]]; then
    start_nodes crowd
    run crowd crowd --per-node 19000 --probes 300 --messages 30000 --addr "$node_addrs" \
        --server-pid "$node_pid_list" --aux-pid "$nats_pid_list"
    stop_nodes
fi

if [[ " $only " == *" churn "* ]]; then
    start_nodes churn
    # shellcheck disable=SC2086
    run churn churn ${CHURN:---sessions 100000 --rate 1000} --verify-names 5000 \
        --addr "$node_addrs" --server-pid "$node_pid_list" --aux-pid "$nats_pid_list"
    stop_nodes
fi

# --- summary -------------------------------------------------------------
echo "== cluster benchmarks (reports in $out/) =="
python3 - "$out" "$only" <<'EOF'
import glob, json, os, statistics, sys
out, only = sys.argv[1], sys.argv[2].split()
def report(path):
    for line in open(path):
        if line.startswith("JSON "):
            return json.loads(line[5:])
def rings(kind):
    rs = [report(p) for p in sorted(glob.glob(f"{out}/ring-{kind}-run*.txt"))]
    return [r for r in rs if r]
med = {}
for kind in ["cluster", "single", "baseline"]:
    rs = rings(kind) if "ring" in only else []
    if not rs:
        continue
    per_s = [r["results"]["ring"]["per_s"] for r in rs]
    p99 = [r["results"]["ring"]["latency"]["p99_us"] / 1000 for r in rs]
    cpu = [r["results"].get("cpu_per_delivery", {}).get("server_ns") or 0 for r in rs]
    aux = [r["results"].get("cpu_per_delivery", {}).get("aux_ns") for r in rs]
    med[kind] = statistics.median(per_s)
    ok = all(r["ok"] for r in rs)
    line = (f"ring {kind:8}: {statistics.median(per_s)/1e3:8.0f} k deliveries/s, "
            f"p99 {statistics.median(p99):6.1f} ms, server CPU {statistics.median(cpu)/1e3:.2f} us/delivery")
    if any(a is not None for a in aux):
        line += f", NATS CPU {statistics.median([a or 0 for a in aux])/1e3:.2f} us/delivery"
    print(line + f" ({len(rs)} runs{'' if ok else ', SOME FAILED'})")
if "cluster" in med and "baseline" in med:
    print(f"ring cluster / baseline: {med['cluster']/med['baseline']:.2f}x (target >= 1.0x)")
if "cluster" in med and "single" in med:
    print(f"ring cluster / single achat: {med['cluster']/med['single']:.2f}x")
for name in ["crowd", "churn"]:
    p = f"{out}/{name}.txt"
    if name not in only or not os.path.exists(p):
        continue
    r = report(p)
    if not r:
        print(f"{name}: no report (see {p})")
        continue
    print(f"{name}: {'ok' if r['ok'] else 'FAILED: ' + '; '.join(r['failures'])[:300]}")
    for t in r["targets"]:
        mark = {True: "met", False: "MISSED", None: "unknown"}[t["met"]]
        print(f"  target {t['name']}: {mark} ({t['detail']})")
EOF
