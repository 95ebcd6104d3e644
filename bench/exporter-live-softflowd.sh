#!/usr/bin/env bash
# Live capture, whole process: spanflow's exporter (AF_PACKET TPACKET_V3
# ring) and Debian's softflowd (libpcap) capture the same veth at the same
# time while tcpreplay sends the synthetic bulk mix into the other end at its
# top speed. Reported per tool: packets seen, kernel drops, and CPU seconds
# (user+system, from /proc/PID/stat, counted from before the replay to after
# it) per million packets.
# CPU time is the process's utime+stime: their sum is exact (the
# scheduler's run time), their split is a tick-sampled estimate and is not
# reported. ROUNDS rounds, each with fresh processes; the ratio's median is
# the figure to quote.
# Needs root (a network namespace), tcpreplay, softflowd (and softflowctl).
# Env: PACKETS (default 1200000), LOOPS (tcpreplay --loop, default 2),
# ROUNDS (default 3), RING (spanflow --ring-size MiB, default 64), KEEP=1
# keeps the temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
PACKETS=${PACKETS:-1200000}
LOOPS=${LOOPS:-2}
ROUNDS=${ROUNDS:-3}
RING=${RING:-64}
# Without root or a tool: skipped (exit 0), but a failure under CI=true.
skip() {
	echo "$0: skipped: $1" >&2
	[ "${CI:-}" = true ] && exit 1
	exit 0
}
[ "$(id -u)" = 0 ] || skip "needs root (network namespace, AF_PACKET)"
for tool in tcpreplay softflowd softflowctl ip; do
	command -v "$tool" >/dev/null || skip "$tool not found (Debian packages tcpreplay, softflowd, iproute2)"
done
tmp=$(mktemp -d)
ns="sfbench-$$"
cleanup() {
	[ -n "${sf_pid:-}" ] && kill "$sf_pid" 2>/dev/null || true
	[ -n "${soft_pid:-}" ] && kill "$soft_pid" 2>/dev/null || true
	ip netns del "$ns" 2>/dev/null || true
	[ "${KEEP:-}" = 1 ] || rm -rf "$tmp"
}
trap cleanup EXIT

go build -o "$tmp/spanflow" ./cmd/spanflow
go run ./exporter/synth/gencap -kind bulk -packets "$PACKETS" -o "$tmp/bulk.pcap"

. bench/netns.bash
veth_netns "$ns"
nsx() { ip netns exec "$ns" "$@"; }

ratios=()
round() {
	# Both export to a loopback port of the namespace that nobody listens on.
	ip netns exec "$ns" "$tmp/spanflow" exporter run --interface vB --ring-size "$RING" --collector 127.0.0.1:4739 \
		--metrics-listen off >"$tmp/sf.out" 2>&1 &
	sf_pid=$!
	ip netns exec "$ns" softflowd -d -i vB -n 127.0.0.1:2055 -v 10 -6 -T full -m 1000000 -t maxlife=60 -t general=15 \
		-p "$tmp/softflowd.pid" -c "$tmp/softflowd.ctl" >"$tmp/soft.out" 2>&1 &
	soft_pid=$!
	sleep 2
	kill -0 "$sf_pid" && kill -0 "$soft_pid" || { echo "$0: an exporter did not start:"; cat "$tmp/sf.out" "$tmp/soft.out"; exit 1; } >&2
	sf0=$(ticks "$sf_pid"); soft0=$(ticks "$soft_pid")
	nsx tcpreplay --topspeed --loop "$LOOPS" -i vA "$tmp/bulk.pcap" >"$tmp/replay.out" 2>&1
	sleep 2 # the captures catch up
	sf1=$(ticks "$sf_pid"); soft1=$(ticks "$soft_pid")
	soft_stats=$(softflowctl -c "$tmp/softflowd.ctl" statistics 2>&1 || true)
	kill -TERM "$sf_pid"; wait "$sf_pid" || true; sf_pid=
	kill -TERM "$soft_pid"; wait "$soft_pid" || true; soft_pid=
	sent=$((PACKETS * LOOPS))
	sf_line=$(sed -n 's/^spanflow exporter: //p' "$tmp/sf.out")
	[ -n "$sf_line" ] || { echo "$0: spanflow failed:"; cat "$tmp/sf.out"; exit 1; } >&2
	# The summary groups digits by thousands (2,400,000 packets).
	sf_pkts=$(echo "$sf_line" | sed -n 's/^\([0-9,]*\) packets.*/\1/p' | tr -d ,)
	sf_drops=$(echo "$sf_line" | sed -n 's/.* \([0-9,]*\) packets dropped by the kernel.*/\1/p' | tr -d ,)
	[ -n "$sf_pkts" ] || { echo "$0: cannot read the packet count in: $sf_line" >&2; exit 1; }
	soft_pkts=$(echo "$soft_stats" | sed -n 's/.*[Pp]ackets processed: *\([0-9]*\).*/\1/p' | head -1)
	soft_drops=$(echo "$soft_stats" | sed -n 's/.*[Pp]ackets dropped by libpcap: *\([0-9]*\).*/\1/p' | head -1)
	sf_cpu=$(calc "($sf1 - $sf0) / $hz")
	soft_cpu=$(calc "($soft1 - $soft0) / $hz")
	echo "replay: $sent packets at tcpreplay's top speed: $(grep -m1 -o 'Rated: .*' "$tmp/replay.out" || true)"
	echo "spanflow:  $sf_line"
	echo "softflowd: $(echo "$soft_stats" | grep -iE 'packets|drop' | tr '\n' ';' | sed 's/  */ /g')"
	printf 'CPU seconds per million packets: spanflow %.3f (%.2fs for %s packets), softflowd %.3f (%.2fs for %s packets)\n' \
		"$(calc "$sf_cpu / max($sf_pkts, 1) * 1e6")" "$sf_cpu" "$sf_pkts" \
		"$(calc "$soft_cpu / max(${soft_pkts:-$sent}, 1) * 1e6")" "$soft_cpu" "${soft_pkts:-?}"
	ratio=$(calc "round(($sf_cpu / max($sf_pkts, 1)) / max($soft_cpu / max(${soft_pkts:-$sent}, 1), 1e-12), 2)")
	ratios+=("$ratio")
	printf 'ratio: spanflow spends %.2f of the CPU per packet softflowd spends (target: at most 0.5); kernel drops: spanflow %s, softflowd %s (target 0)\n' \
		"$ratio" "$sf_drops" "${soft_drops:-?}"
}
hz=$(getconf CLK_TCK)
calc() { python3 -c "print($1)"; }
for r in $(seq "$ROUNDS"); do
	echo "== round $r of $ROUNDS"
	round
done
echo "ratio per round: ${ratios[*]}; median $(python3 -c "import statistics,sys; print(round(statistics.median(map(float, sys.argv[1:])), 2))" "${ratios[@]}") (target: at most 0.5)"
