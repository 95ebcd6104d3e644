#!/usr/bin/env bash
# Elasticsearch output vs raw _bulk, same run, same cluster, same documents.
#
# Runs BenchmarkIndexing (collector/output/elasticsearch/bench_test.go) ROUNDS
# times, each round measuring the output (gzip off and on) and raw _bulk
# requests of the same documents at batch sizes 500..5000 from as many
# concurrent senders as the output has workers, then prints the median
# docs/s of each and the output's ratio to the best raw batch size. Then
# BenchmarkIndexingPaired measures output and raw (1000 and 2000 per request)
# back to back PAIRS times and prints the median of the per-round ratios (the
# figure that resists a machine whose load drifts), and
# BenchmarkStoredBytesPerFlow measures disk bytes per flow after forcemerge.
#
#   ROUNDS=3 PAIRS=7 SPANFLOW_BENCH_DOCS=100000 bench/elasticsearch-bulk.sh
#
# Uses the cluster at $SPANFLOW_ES_URL, or starts the test one with
# scripts/elasticsearch when it is unset.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z ${SPANFLOW_ES_URL:-} ]]; then
  exec scripts/elasticsearch run "$0" "$@"
fi
ROUNDS=${ROUNDS:-3}
export SPANFLOW_BENCH_DOCS=${SPANFLOW_BENCH_DOCS:-100000}
export SPANFLOW_BENCH_PAIRS=${PAIRS:-7}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go test -c -o "$work/es.test" ./collector/output/elasticsearch
for r in $(seq 1 "$ROUNDS"); do
  echo "round $r/$ROUNDS ($SPANFLOW_BENCH_DOCS flows per measurement)" >&2
  "$work/es.test" -test.run '^$' -test.bench '^BenchmarkIndexing$' -test.benchtime 1x | tee -a "$work/out" | grep docs/s >&2
done
echo "paired rounds ($SPANFLOW_BENCH_PAIRS)" >&2
"$work/es.test" -test.run '^$' -test.bench '^BenchmarkIndexingPaired$' -test.benchtime 1x -test.v | tee -a "$work/out" | grep -E 'round:|ratio' >&2
"$work/es.test" -test.run '^$' -test.bench '^BenchmarkStoredBytesPerFlow$' -test.benchtime 1x | tee -a "$work/out" | grep bytes >&2
awk '
  /^BenchmarkIndexing\// {
    name = $1; sub(/^BenchmarkIndexing\//, "", name); sub(/-[0-9]+$/, "", name)
    for (i = 2; i < NF; i++) if ($(i+1) == "docs/s") v[name] = v[name] " " $i
  }
  /^BenchmarkIndexingPaired/ {
    for (i = 2; i < NF; i++) { if ($(i+1) == "ratio") pr = $i; if ($(i+1) == "output-docs/s") po = $i; if ($(i+1) == "best-raw-docs/s") pb = $i }
  }
  /^BenchmarkStoredBytesPerFlow/ {
    for (i = 2; i < NF; i++) { if ($(i+1) == "stored-bytes/flow") stored = $i; if ($(i+1) == "json-bytes/flow") json = $i }
  }
  function median(s,   a, n, i, j, t) {
    n = split(s, a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  END {
    best = 0
    for (k in v) { m[k] = median(v[k]); if (k ~ /^raw_bulk\// && m[k] > best) { best = m[k]; bestk = k } }
    printf "| variant | median docs/s | runs | ratio to best raw _bulk (%s) |\n| --- | --- | --- | --- |\n", bestk
    n = split("output/gzip=false output/gzip=true raw_bulk/batch=500 raw_bulk/batch=1000 raw_bulk/batch=2000 raw_bulk/batch=5000 raw_bulk_item_status/batch=2000", keys, " ")
    for (i = 1; i <= n; i++) { k = keys[i]; if (!(k in m)) continue; printf "| %s | %.0f | %s | %.2f |\n", k, m[k], v[k], m[k] / best }
    if (pr != "") printf "\npaired rounds: output %s docs/s, best raw %s docs/s, median per-round ratio %s\n", po, pb, pr
    if (stored != "") printf "\nstored bytes per flow after forcemerge: %s (JSON document: %s bytes)\n", stored, json
  }' "$work/out"
