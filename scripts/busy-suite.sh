#!/usr/bin/env bash
# Runs the whole suite (npm test, then npm run test:heavy) N times (default 3) from fresh clones of a commit while `npm run bench`
# loops beside it, as issue 18 asks: the suite must stay green on a busy machine. Stops at the
# first failure. Usage: scripts/busy-suite.sh [commit] [runs]. Writes $OUT/runs.txt (durations and
# exit codes), $OUT/suiteN.log and $OUT/benchN.log; OUT defaults to /tmp/slotline-busy.
set -u
repo=$(cd "$(dirname "$0")/.." && pwd)
rev=${1:-$(git -C "$repo" rev-parse HEAD)}
runs=${2:-3}
out=${OUT:-/tmp/slotline-busy}
mkdir -p "$out"
echo "commit $rev, started $(date -u +%FT%TZ)" >>"$out/runs.txt"

fresh_clone() { # dir
  rm -rf "$1" && git clone -q "$repo" "$1" && git -C "$1" checkout -q "$rev" && (cd "$1" && npm ci >/dev/null 2>&1)
}

fresh_clone "$out/bench"
for i in $(seq 1 "$runs"); do
  fresh_clone "$out/suite$i"
  # The bench loop runs in its own session so that it, and nothing else, is stopped after the run.
  setsid bash -c "cd '$out/bench'; while true; do echo \"=== bench \$(date -u +%T)\"; npm run bench; done" \
    >"$out/bench$i.log" 2>&1 &
  bench=$!
  start=$(date +%s)
  (cd "$out/suite$i" && npm test && npm run test:heavy) >"$out/suite$i.log" 2>&1
  rc=$?
  kill -- "-$bench" 2>/dev/null
  summary=$(sed 's/\x1b\[[0-9;]*m//g' "$out/suite$i.log" | grep -E '^ +Tests +[0-9]' | tr -s ' ' | paste -sd ';' -)
  echo "run $i: exit $rc in $(($(date +%s) - start)) s;$summary" >>"$out/runs.txt"
  [ "$rc" -eq 0 ] || break
  sleep 5
done
cat "$out/runs.txt"
