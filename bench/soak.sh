#!/usr/bin/env bash
# Soak: the collector under a fixed rate of mixed valid and hostile
# datagrams (bench/soak) for DURATION, its memory (RSS, high-water mark) and
# counters sampled every minute. Valid IPFIX comes from a few exporters in
# 127.0.1.0/24; hostile datagrams from many spoofed sources in 127.2.0.0/15.
# The collector writes NDJSON to /dev/null and keeps its default limits.
#
# Environment: DURATION (default 1h), RATE datagrams/s (2000), HOSTILE share
# (0.5), SOURCES spoofed (50000), SAMPLE interval (60s).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-1h}
RATE=${RATE:-2000}
HOSTILE=${HOSTILE:-0.5}
SOURCES=${SOURCES:-50000}
SAMPLE=${SAMPLE:-60}
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/spanflow" ./cmd/spanflow
go build -o "$work/soak" ./bench/soak
port=$((20000 + RANDOM % 20000))
mport=$((port + 1))
"$work/spanflow" --log-level warn collector run --netflow-listen "127.0.0.1:$port" --ipfix-listen "" --ipfix-tcp-listen "" \
	--sflow-listen "" --output file:/dev/null --output-max-bytes 0 --metrics-listen "127.0.0.1:$mport" 2>"$work/collector.log" &
col=$!
pids+=("$col")
for _ in $(seq 50); do curl -fsS "127.0.0.1:$mport/metrics" >/dev/null 2>&1 && break; sleep 0.1; done
"$work/soak" -target "127.0.0.1:$port" -duration "$DURATION" -rate "$RATE" -hostile "$HOSTILE" -sources "$SOURCES" \
	>"$work/soak.out" 2>"$work/soak.log" &
load=$!
pids+=("$load")

hz=$(getconf CLK_TCK)
metric() { # NAME [FILTER]: the sum of a metric's series matching FILTER
	curl -fsS "127.0.0.1:$mport/metrics" | awk -v n="$1" -v f="${2:-}" '$1 ~ "^"n"({|$)" && index($1, f) {s += $2} END {printf "%.0f", s}'
}
sample() {
	local rss hwm cpu
	rss=$(awk '/^VmRSS/ {print int($2/1024)}' "/proc/$col/status")
	hwm=$(awk '/^VmHWM/ {print int($2/1024)}' "/proc/$col/status")
	cpu=$(awk -v hz="$hz" '{printf "%.0f", ($14+$15)/hz}' "/proc/$col/stat")
	printf "%8s %7s %7s %6s %12s %12s %12s %10s %10s\n" "$1" "$rss" "$hwm" "$cpu" \
		"$(metric spanflow_collector_datagrams_total)" "$(metric spanflow_collector_records_total 'exporter="127.0.1.')" \
		"$(metric spanflow_collector_decode_errors_total)" "$(metric spanflow_collector_drops_total)" "$(metric spanflow_collector_templates)"
}
echo "soak: $DURATION at $RATE datagrams/s, $HOSTILE hostile from $SOURCES spoofed sources; collector pid $col"
printf "%8s %7s %7s %6s %12s %12s %12s %10s %10s\n" elapsed rss_mib hwm_mib cpu_s datagrams valid_recs decode_errs drops templates
start=$(date +%s)
sample 0s
while kill -0 "$load" 2>/dev/null; do
	sleep "$SAMPLE" || true
	kill -0 "$col" 2>/dev/null || { echo "soak: the collector died"; cat "$work/collector.log"; exit 1; }
	sample "$(( $(date +%s) - start ))s"
done
wait "$load" || true
sleep 2
sample "end"
cat "$work/soak.out"
echo "decode errors by reason:"
curl -fsS "127.0.0.1:$mport/metrics" | awk '$1 ~ /^spanflow_collector_decode_errors_total/ {split($1, a, "reason=\""); split(a[2], r, "\""); s[r[1]] += $2} END {for (k in s) printf "  %-24s %d\n", k, s[k]}' | sort
echo "drops by reason:"
curl -fsS "127.0.0.1:$mport/metrics" | grep '^spanflow_collector_drops_total' | sed 's/^/  /'
echo "collector log lines: $(wc -l <"$work/collector.log")"
tail -5 "$work/collector.log"
