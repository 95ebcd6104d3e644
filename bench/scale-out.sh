#!/usr/bin/env bash
# Whole-process benchmark of the scale-out path's first half: bench/flowload
# plays EXPORTERS exporters (own loopback address, template, sequence numbers
# and observation domain each) at RATE messages/s of PER_MESSAGE flows into
# two collectors sharing one UDP port (SO_REUSEPORT) with --output kafka, on
# the same machine as the broker. Reports flows sent, flows the brokers
# acknowledged, every drop by where it happened (kernel socket buffers,
# decoding, the Kafka output's bound), and CPU seconds of the collectors and
# of the broker, so flows per CPU second can be read per role.
#
# Needs a broker: SPANFLOW_KAFKA_BROKERS, else one started by scripts/kafka
# (then its pid is read for the broker's CPU). With SPANFLOW_ES_URL, or
# with E2E_OUTPUT=file (indexers writing NDJSON to /dev/shm instead of
# Elasticsearch), a last phase puts indexers behind the collectors and
# reports the end-to-end lag and every drop of the same run (E2E_RATE
# messages/s, default 250 into Elasticsearch, 10000 into files;
# E2E_SECONDS, 20; INDEXERS, 1; E2E_ONLY=1 runs that phase alone).
# Environment: EXPORTERS (500), MESSAGES (50000), PER_MESSAGE (20),
# RATE (5000 messages/s = 100,000 flows/s), SOCKETS (1 per collector),
# MIX (ipfix; ipfix,v9,sflow: IPFIX, NetFlow v9 and sFlow v5 exporters in turn).
set -euo pipefail
cd "$(dirname "$0")/.."
EXPORTERS=${EXPORTERS:-500}
MESSAGES=${MESSAGES:-50000}
PER_MESSAGE=${PER_MESSAGE:-20}
RATE=${RATE:-5000}
SOCKETS=${SOCKETS:-1}
MIX=${MIX:-ipfix}
if [[ -z ${SPANFLOW_KAFKA_BROKERS:-} ]]; then
	exec scripts/kafka run "$0" "$@"
fi
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
go build -o "$work/spanflow" ./cmd/spanflow
go build -o "$work/flowload" ./bench/flowload
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
port=$((20000 + RANDOM % 20000))
sport=$((port + 100)) # sFlow
topic=spanflow-bench-$$-$RANDOM
broker_pid=$(cat "/tmp/spanflow-kafka-${SPANFLOW_KAFKA_PORT:-9392}/kafka.pid" 2>/dev/null || echo)

# metric ADDR REGEXP: the sum of the series matching REGEXP at ADDR/metrics.
metric() { curl -fsS "http://$1/metrics" | awk -v m="$2" '$1 ~ "^"m {s+=$2} END {printf "%.0f", s}'; }

# phase NAME METRIC OUTPUT_FLAGS...: start two collectors with the output
# flags, play the load, wait until METRIC (flows delivered) stops growing.
phase() {
local name=$1 done_metric=$2
shift 2
local out=("$@")
local metrics=() t0=() cur=0 prev=-1 ccpu bcpu b0 start end kernel decoded full failed sent_flows m
for i in 1 2; do
	m=127.0.0.1:$((port + i))
	"$work/spanflow" collector run --ipfix-listen "127.0.0.1:$port" --listen-reuseport --sockets "$SOCKETS" \
		--netflow-listen "" --sflow-listen "127.0.0.1:$sport" --ipfix-tcp-listen "" --metrics-listen "$m" --rollups=false \
		--exporter-stats-interval 0 --receive-buffer $((32 << 20)) "${out[@]}" 2>"$work/collector$i.log" &
	pids+=($!)
	metrics+=("$m")
done
for _ in $(seq 1 60); do
	[[ $(grep -c "msg=listening" "$work"/collector*.log 2>/dev/null | awk -F: '{s+=$2} END {print s+0}') -ge 2 ]] && break
	sleep 0.5
done
t0=()
for p in "${pids[@]}"; do t0+=("$(cpu_ticks "$p")"); done
b0=0; [[ -n $broker_pid ]] && b0=$(cpu_ticks "$broker_pid")
start=$(date +%s.%N)
"$work/flowload" -target "127.0.0.1:$port" -exporters "$EXPORTERS" -sflow-target "127.0.0.1:$sport" -source-prefix 77 -mix "$MIX" -messages "$MESSAGES" \
	-per-message "$PER_MESSAGE" -rate "$RATE" | tee "$work/load"
# Wait until the collectors' acknowledged count stops growing.
prev=-1
while :; do
	sleep 2
	cur=0
	for m in "${metrics[@]}"; do cur=$((cur + $(metric "$m" "$done_metric"))); done
	[[ $cur == "$prev" ]] && break
	prev=$cur
done
end=$(date +%s.%N)
ccpu=0
for i in "${!pids[@]}"; do ccpu=$((ccpu + $(cpu_ticks "${pids[$i]}") - ${t0[$i]})); done
bcpu=0; [[ -n $broker_pid ]] && bcpu=$(($(cpu_ticks "$broker_pid") - b0))
sent_flows=$((MESSAGES * PER_MESSAGE))
kernel=0 decoded=0 full=0 failed=0
for m in "${metrics[@]}"; do
	kernel=$((kernel + $(metric "$m" spanflow_listen_kernel_drops_total)))
	decoded=$((decoded + $(metric "$m" 'spanflow_collector_records_total')))
	full=$((full + $(metric "$m" 'spanflow_kafka_output_records_total\\{result="buffer_full"')))
	failed=$((failed + $(metric "$m" 'spanflow_kafka_output_records_total\\{result="delivery_failed"')))
done
echo "$name: exporters $EXPORTERS, offered $((RATE * PER_MESSAGE)) flows/s: sent $sent_flows flows, decoded $decoded, delivered $cur"
echo "drops: kernel $kernel datagrams, kafka buffer_full $full flows, delivery_failed $failed flows, unaccounted $((sent_flows - cur - full - failed - kernel * PER_MESSAGE))"
awk -v c="$ccpu" -v b="$bcpu" -v hz="$hz" -v f="$cur" -v s="$start" -v e="$end" 'BEGIN {
	printf "collectors: %.1f CPU s (%.0f flows per CPU s); broker: %.1f CPU s (%.0f flows per CPU s); wall %.1f s\n",
		c/hz, (c ? f/(c/hz) : 0), b/hz, (b ? f/(b/hz) : 0), e-s }'
awk -v c="$ccpu" -v hz="$hz" -v f="$cur" 'BEGIN { printf "%.0f\n", (c ? f/(c/hz) : 0) }' >"$work/$name.rate"
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
pids=()
rm -f /dev/shm/spanflow-scaleout-$$.ndjson*
}
# E2E_ONLY=1 skips the two phases above (the end-to-end phase below alone).
if [[ ${E2E_ONLY:-0} != 1 ]]; then
	phase kafka 'spanflow_kafka_output_records_total\{result="sent"' --output kafka --kafka-brokers "$SPANFLOW_KAFKA_BROKERS" \
		--kafka-topic "$topic" --kafka-partitions 8
	phase ndjson-peer 'spanflow_ndjson_documents_total' --output "file:/dev/shm/spanflow-scaleout-$$.ndjson" --output-max-bytes 0
	awk -v k="$(cat "$work/kafka.rate")" -v n="$(cat "$work/ndjson-peer.rate")" 'BEGIN {
		printf "collector flows per CPU s, --output kafka / --output file (NDJSON, same run): %.2f\n", (n ? k/n : 0) }'
fi

# End-to-end lag: the same two collectors with indexers behind them (one
# consumer group), at E2E_RATE messages/s for E2E_SECONDS; the quantiles of
# spanflow_indexer_end_to_end_seconds (from the collector's receipt of a
# datagram to the indexer's outputs having the flow), as bucket upper
# bounds, and from the same run every drop: the collectors' kernel drops,
# the Kafka output's buffer_full and delivery_failed, and the flows the
# indexers wrote against those offered.
#   E2E_OUTPUT=es, the default when SPANFLOW_ES_URL is set: into that
#     cluster; "written" is Elasticsearch's acknowledgement. Default rate
#     250 messages/s (5,000 flows/s, what one indexer keeps up with on one
#     loaded node).
#   E2E_OUTPUT=file: each indexer writes NDJSON to its own file on /dev/shm
#     (--output-max-bytes 0), so the Kafka path is measured without a
#     cluster's bound; "written" is write(2) of the batch into the file
#     having returned (the indexer flushes its NDJSON outputs before it
#     commits and observes the lag). Default rate 10,000 messages/s
#     (200,000 flows/s with PER_MESSAGE 20).
# INDEXERS (1), E2E_SECONDS (20). Without either, no end-to-end phase.
E2E_OUTPUT=${E2E_OUTPUT:-${SPANFLOW_ES_URL:+es}}
case $E2E_OUTPUT in
"") exit 0 ;;
es) [[ -n ${SPANFLOW_ES_URL:-} ]] || { echo "E2E_OUTPUT=es needs SPANFLOW_ES_URL" >&2; exit 1; }
	E2E_RATE=${E2E_RATE:-250} ;;
file) E2E_RATE=${E2E_RATE:-10000} ;;
*) echo "E2E_OUTPUT: es or file, not $E2E_OUTPUT" >&2; exit 1 ;;
esac
E2E_SECONDS=${E2E_SECONDS:-20}
INDEXERS=${INDEXERS:-1}
e2e_topic=$topic-e2e
cmetrics=() imetrics=() ipids=()
for i in 1 2; do
	m=127.0.0.1:$((port + i))
	"$work/spanflow" collector run --ipfix-listen "127.0.0.1:$port" --listen-reuseport --sockets "$SOCKETS" \
		--netflow-listen "" --sflow-listen "127.0.0.1:$sport" --ipfix-tcp-listen "" --metrics-listen "$m" --rollups=false \
		--exporter-stats-interval 0 --receive-buffer $((32 << 20)) --output kafka --kafka-brokers "$SPANFLOW_KAFKA_BROKERS" \
		--kafka-topic "$e2e_topic" --kafka-partitions 8 2>"$work/e2e-collector$i.log" &
	pids+=($!)
	cmetrics+=("$m")
done
for _ in $(seq 1 60); do # listening, so the topic exists
	[[ $(grep -c "msg=listening" "$work"/e2e-collector*.log 2>/dev/null | awk -F: '{s+=$2} END {print s+0}') -ge 2 ]] && break
	sleep 0.5
done
shm=/dev/shm/spanflow-e2e-$$
for i in $(seq 1 "$INDEXERS"); do
	m=127.0.0.1:$((port + 10 + i))
	if [[ $E2E_OUTPUT == es ]]; then
		out=(--es-url "$SPANFLOW_ES_URL" --es-spool-dir "$work/spool$i")
	else
		out=(--output "file:$shm-$i.ndjson" --output-max-bytes 0)
	fi
	"$work/spanflow" indexer run --kafka-brokers "$SPANFLOW_KAFKA_BROKERS" --kafka-topic "$e2e_topic" \
		--kafka-group "bench-$$" "${out[@]}" --metrics-listen "$m" 2>"$work/indexer$i.log" &
	pids+=($!)
	ipids+=($!)
	imetrics+=("$m")
done
trap 'cleanup; rm -f "$shm"-*.ndjson' EXIT
# alive: every process of the phase still runs; else its log, and fail.
alive() {
	for p in "${pids[@]}"; do
		kill -0 "$p" 2>/dev/null && continue
		echo "e2e: a process of the phase exited:" >&2
		tail -n 5 "$work"/e2e-collector*.log "$work"/indexer*.log >&2
		exit 1
	done
}
# Every indexer holds partitions (the group settled), then a little more.
for _ in $(seq 1 60); do
	held=0
	for i in $(seq 1 "$INDEXERS"); do grep -q 'msg="partitions assigned" partitions="\[[0-9]' "$work/indexer$i.log" && held=$((held + 1)); done
	[[ $held -ge $INDEXERS ]] && break
	alive
	sleep 1
done
sleep 3
echo "e2e: $INDEXERS indexer(s), output $E2E_OUTPUT, $E2E_RATE messages/s of $PER_MESSAGE flows for $E2E_SECONDS s, mix $MIX, started $(date -u +%FT%TZ)"
"$work/flowload" -target "127.0.0.1:$port" -exporters "$EXPORTERS" -sflow-target "127.0.0.1:$sport" -source-prefix 78 -mix "$MIX" \
	-messages $((E2E_RATE * E2E_SECONDS)) -per-message "$PER_MESSAGE" -rate "$E2E_RATE"
want=$((E2E_RATE * E2E_SECONDS * PER_MESSAGE))
alive
# Until the indexers wrote every flow offered, or wrote nothing more for 10 s.
got=0 prev=-1 still=0
for _ in $(seq 1 300); do
	got=0
	for m in "${imetrics[@]}"; do got=$((got + $(metric "$m" 'spanflow_indexer_records_total\\{result="indexed"'))); done
	[[ $got -ge $want ]] && break
	if [[ $got == "$prev" ]]; then still=$((still + 1)); [[ $still -ge 10 ]] && break; else still=0; fi
	prev=$got
	sleep 1
done
load=$(cut -d' ' -f1-3 /proc/loadavg)
kernel=0 decoded=0 sent=0 full=0 failed=0
for m in "${cmetrics[@]}"; do
	kernel=$((kernel + $(metric "$m" spanflow_listen_kernel_drops_total)))
	decoded=$((decoded + $(metric "$m" 'spanflow_collector_records_total')))
	sent=$((sent + $(metric "$m" 'spanflow_kafka_output_records_total\\{result="sent"')))
	full=$((full + $(metric "$m" 'spanflow_kafka_output_records_total\\{result="buffer_full"')))
	failed=$((failed + $(metric "$m" 'spanflow_kafka_output_records_total\\{result="delivery_failed"')))
done
bad=0 rebal=0
for m in "${imetrics[@]}"; do
	bad=$((bad + $(metric "$m" 'spanflow_indexer_records_total\\{result="bad_message"')))
	rebal=$((rebal + $(metric "$m" spanflow_indexer_rebalances_total)))
done
for m in "${imetrics[@]}"; do curl -fsS "http://$m/metrics"; done >"$work/e2e.metrics"
lines=-
if [[ $E2E_OUTPUT == file ]]; then
	# Stop the indexers first: the documents in the files are then final.
	for p in "${ipids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	lines=$(cat "$shm"-*.ndjson | wc -l)
fi
echo "e2e flows: offered $want, decoded $decoded, acknowledged by Kafka $sent, written by the indexers $got (lines in the files: $lines), bad messages $bad, rebalances $rebal"
echo "e2e drops: kernel $kernel datagrams, kafka buffer_full $full flows, delivery_failed $failed flows, not written $((want - got))"
awk -v ix="$INDEXERS" -v out="$E2E_OUTPUT" -v load="$load" '/^spanflow_indexer_end_to_end_seconds_bucket/ {
		match($0, /le="[^"]*"/); le = substr($0, RSTART + 4, RLENGTH - 5); n[le] += $2
	} END {
		total = n["+Inf"]
		printf "e2e lag (%d indexer(s), output %s, %d flows observed):", ix, out, total
		if (total == 0) printf " none"
		split("0.05 0.1 0.25 0.5 1 2 5 10 30 60 300 +Inf", les, " ")
		for (q = 1; q <= 3 && total > 0; q++) {
			target = (q == 1 ? 0.5 : (q == 2 ? 0.9 : 0.99)) * total
			for (i = 1; i <= 12; i++) if (n[les[i]] >= target) { printf " p%s <= %s s", (q == 1 ? "50" : (q == 2 ? "90" : "99")), les[i]; break }
		}
		printf "; load average %s\n", load
	}' "$work/e2e.metrics"
