#!/usr/bin/env bash
# Whole-process cost per flow of the spanflow collector against goflow2
# v2.2.6 and nfdump's nfcapd on the streams of issue #22: small datagrams
# (1 and 6 records, as pmacct, softflowd and routers with short export
# timers send them) and large ones (25), from 1 and from 500 exporters
# (bench/flowload -exporters: 127.0.1.x source addresses on loopback).
# Each collector gets the same stream in turn and writes to tmpfs:
# spanflow and goflow2 JSON lines, with 2 SO_REUSEPORT sockets; nfcapd
# (Debian's nfdump) its own binary records (about 100 bytes a flow, no
# JSON, no enrichment: the cheapest way to store a flow, not a like-for-
# like document), one socket with the same 8 MiB buffer as spanflow's; its
# flows are counted with nfdump -I. CPU is the process's utime+stime from
# the first datagram until its output stops growing. spanflow runs with its
# defaults (rollups on) and with --rollups=false (decode to NDJSON only).
#
# Environment: OUTPUTS ("file es" by default; "file" skips the
# Elasticsearch runs), FLOWS per run (default 600000), FLOW_RATE flows/s offered
# (200000), STREAMS ("1:1 6:1 25:1 6:500 25:500", records:exporters),
# BASE a git revision whose spanflow is measured too (before/after), PEERS
# (default "goflow2 nfcapd"; "" to skip), RUNS (1): every collector of a
# stream runs RUNS times, in turn (a row each, the run in the last column),
# because one stream's figure can move by a fifth from one run to the next
# on a shared machine.
#
# A stream records:exporters:N (default streams 1:1:8 and 6:1:8) sends each
# exporter's datagrams N at a time as one UDP_SEGMENT message (flowload
# -coalesce): what an interface's GRO hands up when N datagrams of one
# exporter arrive in one receive poll (a busy exporter on a NIC with
# interrupt moderation). spanflow asks for UDP GRO and reads them as one
# message; a collector that does not (goflow2) gets them one by one, the
# kernel cutting them apart first. Loopback has no GRO of its own: the
# other streams are read one datagram per message, the worst case.
set -euo pipefail
cd "$(dirname "$0")/.."
FLOWS=${FLOWS:-600000}
FLOW_RATE=${FLOW_RATE:-200000}
RUNS=${RUNS:-1}
STREAMS=${STREAMS:-"1:1 6:1 25:1 6:500 25:500 1:1:8 6:1:8"}
PEERS=${PEERS-goflow2 nfcapd}
OUTPUTS=${OUTPUTS:-file es}
work=$(mktemp -d)
out=/dev/shm/spanflow-streams-$$
mkdir -p "$out"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	rm -rf "$work" "$out"
	[ -n "${BASE:-}" ] && git worktree remove --force "$work-base" 2>/dev/null || true
}
trap cleanup EXIT

echo "building spanflow and flowload"
go build -o "$work/spanflow" ./cmd/spanflow
go build -o "$work/flowload" ./bench/flowload
go build -o "$work/essink" ./bench/essink
if [ -n "${BASE:-}" ]; then
	git worktree add --detach "$work-base" "$BASE" >/dev/null 2>&1
	(cd "$work-base" && go build -o "$work/spanflow-base" ./cmd/spanflow)
fi
if [[ " $PEERS " == *" goflow2 "* ]]; then
	GOBIN="$work" go install github.com/netsampler/goflow2/v2/cmd/goflow2@v2.2.6
fi
if [[ " $PEERS " == *" nfcapd "* ]]; then
	for tool in nfcapd nfdump; do
		command -v "$tool" >/dev/null || { echo "$0: $tool not found (Debian package nfdump; or PEERS=goflow2)" >&2; exit 1; }
	done
	nfcapd_version=$(nfcapd -V 2>&1 | awk '{print $NF; exit}')
fi

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
port=47400

# run NAME FILE CMD...: start the collector on $port, send the stream,
# wait until its output stops growing, print one table row.
run() {
	local name=$1 file=$2
	shift 2
	"$@" 2>"$work/$name.log" &
	local pid=$!
	pids+=("$pid")
	sleep 1.5
	local t0
	t0=$(cpu_ticks "$pid")
	"$work/flowload" -target "127.0.0.1:$port" -messages "$messages" -per-message "$per" -exporters "$exporters" -source-prefix 1 \
		-coalesce "$coalesce" -rate "$rate" >"$work/$name.load"
	local prev=-1 cur=0
	while :; do
		sleep 1
		cur=$(progress "$file")
		[ "$cur" = "$prev" ] && break
		prev=$cur
	done
	local t1
	t1=$(cpu_ticks "$pid")
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	if [ -f "$out/essink.pid" ]; then
		sleep 0.3 # its last count
		kill "$(cat "$out/essink.pid")" 2>/dev/null || true
		rm -f "$out/essink.pid"
	fi
	local delivered sent cpu
	if [[ $file == *.count ]]; then
		delivered=$(cat "$file")
	elif [ -d "$file" ]; then
		delivered=$(nfdump -R "$file" -I 2>/dev/null | awk '/^Flows:/{print $2; exit}')
		delivered=${delivered:-0}
	else
		delivered=$(grep -vc '"kind":"metric"' "$file" || true)
	fi
	sent=$((messages * per))
	cpu=$(echo "scale=3; ($t1 - $t0) / $hz" | bc)
	printf '| %d | %d | %d | %s | %d | %d | %.2f | %.0f | %d |\n' "$per" "$exporters" "$coalesce" "$name" "$delivered" $((sent - delivered)) "$cpu" \
		"$(echo "$delivered / $cpu" | bc -l)" "$run_no"
	rm -rf "$file"
	port=$((port + 1))
}

# progress prints how far an output got: a file's size, the bytes of the
# files of a directory (nfcapd's), or the documents essink counted.
progress() {
	if [[ $1 == *.count ]]; then
		cat "$1" 2>/dev/null || echo 0
	elif [ -d "$1" ]; then
		du -sb "$1" | cut -f1
	else
		stat -c %s "$1" 2>/dev/null || echo 0
	fi
}

spanflow() {
	local bin=$1
	shift
	exec "$bin" collector run --netflow-listen "" --sflow-listen "" --ipfix-tcp-listen "" --ipfix-listen "127.0.0.1:$port" \
		--sockets 2 --metrics-listen "" --output "file:$out/flows.ndjson" --output-max-bytes 0 "$@"
}

# spanflow_es BIN ARGS... runs the collector with its Elasticsearch output
# to a fresh essink.
spanflow_es() {
	local bin=$1
	shift
	rm -rf "$out/spool" "$out/es.count"
	"$work/essink" -count-file "$out/es.count" >"$out/essink.addr" &
	echo $! >"$out/essink.pid"
	for _ in $(seq 50); do [ -s "$out/essink.addr" ] && break; sleep 0.1; done
	exec "$bin" collector run --netflow-listen "" --sflow-listen "" --ipfix-tcp-listen "" --ipfix-listen "127.0.0.1:$port" \
		--sockets 2 --metrics-listen "" --output elasticsearch --es-url "http://$(cat "$out/essink.addr")" --es-setup=false \
		--es-spool-dir "$out/spool" "$@"
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "stream: $FLOWS flows per run offered at $FLOW_RATE flows/s over loopback"
echo
echo "| records per datagram | exporters | coalesced by N | collector | flows delivered | dropped | CPU s | flows per CPU second | run |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for s in $STREAMS; do
	IFS=: read -r per exporters coalesce <<<"$s"
	coalesce=${coalesce:-1}
	messages=$((FLOWS / per))
	rate=$((FLOW_RATE / per))
	builds=("spanflow:$work/spanflow")
	[ -n "${BASE:-}" ] && builds+=("spanflow $BASE:$work/spanflow-base")
	for run_no in $(seq "$RUNS"); do
		for o in $OUTPUTS; do
			for b in "${builds[@]}"; do
				name=${b%%:*} bin=${b#*:}
				case $o in
				file)
					run "$name" "$out/flows.ndjson" spanflow "$bin"
					run "$name --rollups=false" "$out/flows.ndjson" spanflow "$bin" --rollups=false
					;;
				es)
					run "$name, elasticsearch" "$out/es.count" spanflow_es "$bin"
					run "$name, elasticsearch, --rollups=false" "$out/es.count" spanflow_es "$bin" --rollups=false
					;;
				*) echo "OUTPUTS: file or es, not $o" >&2; exit 1 ;;
				esac
			done
		done
		if [[ " $PEERS " == *" goflow2 "* ]]; then
			run "goflow2 v2.2.6" "$out/goflow2.json" "$work/goflow2" -listen "netflow://127.0.0.1:$port?count=2&workers=2" \
				-addr 127.0.0.1:0 -format json -transport file -transport.file "$out/goflow2.json"
		fi
		if [[ " $PEERS " == *" nfcapd "* ]]; then
			mkdir -p "$out/nfcapd"
			run "nfcapd $nfcapd_version" "$out/nfcapd" nfcapd -w "$out/nfcapd" -b 127.0.0.1 -p "$port" -B 8388608 -t 3600
		fi
	done
done
