#!/usr/bin/env bash
# Runs every hostile-client scenario in compare mode: this build (a) against
# another server (b, by default the build before the hostile-client rules,
# given as OLD=path/to/achat-server), fresh servers, alternating runs, and
# keeps each report under target/hostile/. docs/BENCHMARKS.md ("Hostile
# clients") quotes these.
#
#   OLD=/path/to/old/achat-server benches/hostile.sh   # about 15 minutes
#   RUNS=1 OLD=... benches/hostile.sh                    # one run each
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/hostile
mkdir -p "$out"
: "${OLD:?set OLD to the server to compare against}"
A='RUST_LOG=warn target/release/achat-server --bind 127.0.0.1:{port} --http 127.0.0.1:0 --workers 2'
B="RUST_LOG=warn $OLD --bind 127.0.0.1:{port} --workers 2"
runs=${RUNS:-3}
summary='^ *target '
. benches/compare.sh
compare who-batch who-batch
compare lists lists
compare paced-256k paced --read-rate 256KiB
compare paced-1m paced --read-rate 1MiB
compare broadcast broadcast
compare nonreaders nonreaders
compare whospam whospam
echo "hostile: reports in $out/" >&2
