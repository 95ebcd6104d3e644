#!/usr/bin/env bash
# Whole-process comparison of the spanflow collector with goflow2 v2.2.6 on
# the same IPFIX stream, sent over loopback by bench/flowload: flows
# delivered (documents written), drops (sent minus delivered) and flows per
# CPU second of the collector process. Both write JSON lines to a tmpfs file
# and use 2 SO_REUSEPORT sockets. goflow2 is installed from the module proxy
# into a temporary GOBIN (never committed).
#
# Environment: MESSAGES (default 50000), PER_MESSAGE (20), RATE messages/s
# (10000; 0 = as fast as possible), SOCKETS (2).
set -euo pipefail
cd "$(dirname "$0")/.."
MESSAGES=${MESSAGES:-50000}
PER_MESSAGE=${PER_MESSAGE:-20}
RATE=${RATE:-10000}
SOCKETS=${SOCKETS:-2}
work=$(mktemp -d)
out=/dev/shm/spanflow-bench-$$
mkdir -p "$out"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	rm -rf "$work" "$out"
}
trap cleanup EXIT

echo "building spanflow, flowload; installing goflow2 v2.2.6 into a temporary GOBIN"
go build -o "$work/spanflow" ./cmd/spanflow
go build -o "$work/flowload" ./bench/flowload
GOBIN="$work" go install github.com/netsampler/goflow2/v2/cmd/goflow2@v2.2.6

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# run NAME PORT FILE CMD...: start the collector, send the stream, wait
# until its output stops growing, report.
run() {
	local name=$1 port=$2 file=$3
	shift 3
	"$@" 2>"$work/$name.log" &
	local pid=$!
	pids+=("$pid")
	sleep 2
	local t0
	t0=$(cpu_ticks "$pid")
	"$work/flowload" -target "127.0.0.1:$port" -messages "$MESSAGES" -per-message "$PER_MESSAGE" -rate "$RATE" >"$work/$name.load"
	local prev=-1 cur=0
	while :; do
		sleep 1
		cur=$(stat -c %s "$file" 2>/dev/null || echo 0)
		[ "$cur" = "$prev" ] && break
		prev=$cur
	done
	local t1
	t1=$(cpu_ticks "$pid")
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	local delivered sent cpu
	# Flow documents only: spanflow also writes one statistics document
	# per exporter when it stops (event.kind metric).
	delivered=$(grep -vc '"kind":"metric"' "$file" || true)
	sent=$((MESSAGES * PER_MESSAGE))
	cpu=$(echo "scale=3; ($t1 - $t0) / $hz" | bc)
	echo "$name $sent $delivered $cpu" >>"$work/results"
	printf '%-9s sent %d flows, delivered %d, dropped %d, %.2f CPU s, %.0f flows per CPU second\n' \
		"$name" "$sent" "$delivered" $((sent - delivered)) "$cpu" "$(echo "$delivered / $cpu" | bc -l)"
}

echo "offered load: $MESSAGES IPFIX messages x $PER_MESSAGE flows at ${RATE:-max} messages/s over loopback"
run spanflow 47391 "$out/spanflow.ndjson" "$work/spanflow" collector run --netflow-listen "" --sflow-listen "" \
	--ipfix-tcp-listen "" --ipfix-listen 127.0.0.1:47391 --sockets "$SOCKETS" --metrics-listen "" \
	--output "file:$out/spanflow.ndjson" --output-max-bytes 0
run goflow2 47392 "$out/goflow2.json" "$work/goflow2" -listen "netflow://127.0.0.1:47392?count=$SOCKETS&workers=$SOCKETS" \
	-addr 127.0.0.1:0 -format json -transport file -transport.file "$out/goflow2.json"

read -r _ sent s_del s_cpu < <(grep '^spanflow' "$work/results")
read -r _ _ g_del g_cpu < <(grep '^goflow2' "$work/results")
echo
echo "| collector | flows delivered | dropped | CPU s | flows per CPU second |"
echo "| --- | --- | --- | --- | --- |"
printf '| spanflow | %d | %d | %.2f | %.0f |\n' "$s_del" $((sent - s_del)) "$s_cpu" "$(echo "$s_del / $s_cpu" | bc -l)"
printf '| goflow2 v2.2.6 | %d | %d | %.2f | %.0f |\n' "$g_del" $((sent - g_del)) "$g_cpu" "$(echo "$g_del / $g_cpu" | bc -l)"
printf 'spanflow / goflow2 flows per CPU second: %.2fx\n' "$(echo "($s_del / $s_cpu) / ($g_del / $g_cpu)" | bc -l)"
