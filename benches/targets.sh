#!/usr/bin/env bash
# Runs every scenario of the performance targets in compare mode (achat
# against the tutorial-design baseline, fresh servers, alternating runs) and
# keeps each report under target/targets/. docs/BENCHMARKS.md quotes these.
#
#   benches/targets.sh           # about fifteen minutes on the 2-core machine
#   RUNS=5 benches/targets.sh    # more runs per server
#   OLD=path/to/achat-server benches/targets.sh
#                                # the same scenarios against an older achat
#                                # build (a change must not slow them down),
#                                # reports under target/targets-vs-old/
set -euo pipefail
cd "$(dirname "$0")/.."
A='RUST_LOG=warn target/release/achat-server --bind 127.0.0.1:{port} --http 127.0.0.1:0'
if [ -n "${OLD:-}" ]; then
    out=target/targets-vs-old
    B="RUST_LOG=warn $OLD --bind 127.0.0.1:{port}"
else
    out=target/targets
    B='target/baselines/release/tokio-achat 127.0.0.1:{port}'
fi
mkdir -p "$out"
runs=${RUNS:-3}
summary='^(result|run outcome)|per_s |latency.p99_us|memory.per_conn|peak_growth|memory_after|names|cut|bystanders.latency.p99'
. benches/compare.sh
compare ring100 ring --clients 100 --messages 20000 --window 64
compare ring1000 ring --clients 1000 --messages 2000 --window 16
compare fanout fanout --senders 10 --recipients 100 --messages 10000
compare conns conns --conns 19000
compare slow slow --flood-bytes 1GiB
compare flood flood --duration 5s
compare churn churn --sessions 100000 --rate 2000
echo "targets: reports in $out/" >&2
