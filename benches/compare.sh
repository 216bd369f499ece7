# Sourced by targets.sh and hostile.sh: runs one scenario in compare mode
# and keeps its report.
#
# Expects: $out (where reports go), $A and $B (the two server commands),
# $runs, and $summary (a grep -E pattern of the lines to echo).
#   compare NAME SCENARIO [OPTIONS...]
compare() {
    local name=$1
    shift
    echo "$(basename "$0"): $name" >&2
    # A run that fails (the baseline fails the flood's checks, an old
    # server misses a hostile scenario's) still has its figures in the
    # report; carry on with the next scenario.
    cargo bench --bench load -- compare --runs "$runs" --a "$A" --b "$B" "$@" > "$out/$name.txt" \
        || echo "$(basename "$0"): $name: some runs failed (their outcomes are in the report)" >&2
    grep -E "$summary" "$out/$name.txt" >&2 || true
}
