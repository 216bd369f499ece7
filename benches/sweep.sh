#!/usr/bin/env bash
# Sweeps for the plots in docs/BENCHMARKS.md: deliveries per second against
# the number of clients (ring), and server memory against the number of idle
# connections (conns), achat and the tutorial-design baseline side by side
# (the load generator's compare mode: fresh servers, alternating runs).
#
#   benches/sweep.sh            # writes target/sweep/{ring,conns}.jsonl
#   python3 benches/plot.py     # turns them into docs/plots/*.svg
#
# Needs: cargo build --release --bin achat-server, and the baseline built as
# in benches/README.md. Takes about ten minutes on the 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/sweep
mkdir -p "$out"
A='RUST_LOG=warn target/release/achat-server --bind 127.0.0.1:{port} --http 127.0.0.1:0'
B='target/baselines/release/tokio-achat 127.0.0.1:{port}'
L="cargo bench --bench load --"
runs=${RUNS:-3}

: > "$out/ring.jsonl"
for clients in 10 30 100 300 1000 3000; do
    messages=$(( 2000000 / clients ))
    echo "sweep: ring, $clients clients x $messages messages, window 32" >&2
    $L compare --runs "$runs" --a "$A" --b "$B" \
        ring --clients "$clients" --messages "$messages" --window 32 \
        | grep '^JSON {"a"' | sed 's/^JSON //' \
        | python3 -c 'import json,sys; d=json.load(sys.stdin); print(json.dumps({"x": '"$clients"', "a": d["a"]["median"]["ring.per_s"], "b": d["b"]["median"]["ring.per_s"]}))' \
        >> "$out/ring.jsonl"
done

: > "$out/conns.jsonl"
for conns in 1000 2000 5000 10000 19000; do
    echo "sweep: conns, $conns idle connections" >&2
    $L compare --runs 1 --a "$A" --b "$B" conns --conns "$conns" --messages 1000 \
        | grep '^JSON {"a"' | sed 's/^JSON //' \
        | python3 -c 'import json,sys; d=json.load(sys.stdin); print(json.dumps({"x": '"$conns"', "a": d["a"]["median"]["memory.after_bytes"], "b": d["b"]["median"]["memory.after_bytes"]}))' \
        >> "$out/conns.jsonl"
done
echo "sweep: done; now python3 benches/plot.py" >&2
