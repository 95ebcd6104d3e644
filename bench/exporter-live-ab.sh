#!/usr/bin/env bash
# Same-replay A/B of two spanflow builds: both capture the same veth end at
# the same time while tcpreplay sends the bulk mix into the other end at its
# top speed, so the machine's load drifts alike for both. Prints, per round,
# each build's CPU ticks (utime+stime, from just before the replay to 1.5 s
# after) and kernel drops, and B/A. The order the two start in alternates.
# Not run by `make bench` (it needs two builds; the file is not executable
# so that the bench loop skips it): e.g.
#   git worktree add /tmp/old HEAD~3 && (cd /tmp/old && go build -o /tmp/a ./cmd/spanflow)
#   go build -o /tmp/b ./cmd/spanflow && bash bench/exporter-live-ab.sh /tmp/a /tmp/b
# Needs root (a network namespace) and tcpreplay.
# Env: PACKETS (default 1200000), LOOPS (tcpreplay --loop, default 2).
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 BINARY_A BINARY_B [ROUNDS]" >&2; exit 2; }
A=$1 B=$2 R=${3:-4}
PACKETS=${PACKETS:-1200000} LOOPS=${LOOPS:-2}
[ "$(id -u)" = 0 ] || { echo "$0: needs root (network namespace, AF_PACKET)" >&2; exit 1; }
command -v tcpreplay >/dev/null || { echo "$0: tcpreplay not found (Debian package tcpreplay)" >&2; exit 1; }
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
ns="sfab-$$"
cleanup() {
	kill $(jobs -p) 2>/dev/null || true
	ip netns del "$ns" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
go run ./exporter/synth/gencap -kind bulk -packets "$PACKETS" -o "$tmp/bulk.pcap"
. bench/netns.bash
veth_netns "$ns"
drops() { sed -n 's/.* \([0-9,]*\) packets dropped by the kernel.*/\1/p' "$1" | tr -d ,; }
for r in $(seq "$R"); do
	if [ $((r % 2)) = 1 ]; then first=$A second=$B; else first=$B second=$A; fi
	ip netns exec "$ns" "$first" exporter run --interface vB --collector 127.0.0.1:4739 --metrics-listen off >"$tmp/1.out" 2>&1 &
	p1=$!
	ip netns exec "$ns" "$second" exporter run --interface vB --collector 127.0.0.1:4740 --metrics-listen off >"$tmp/2.out" 2>&1 &
	p2=$!
	sleep 1.5
	kill -0 "$p1" && kill -0 "$p2" || { echo "$0: a build did not start:"; cat "$tmp/1.out" "$tmp/2.out"; exit 1; } >&2
	a0=$(ticks "$p1") b0=$(ticks "$p2")
	ip netns exec "$ns" tcpreplay --topspeed --loop "$LOOPS" -i vA "$tmp/bulk.pcap" >/dev/null 2>&1
	sleep 1.5
	a1=$(ticks "$p1") b1=$(ticks "$p2")
	kill -TERM "$p1" "$p2"
	wait "$p1" "$p2" || true
	t1=$((a1 - a0)) t2=$((b1 - b0)) d1=$(drops "$tmp/1.out") d2=$(drops "$tmp/2.out")
	if [ "$first" = "$A" ]; then ta=$t1 tb=$t2 da=$d1 db=$d2; else ta=$t2 tb=$t1 da=$d2 db=$d1; fi
	echo "round $r: A $ta ticks (kernel drops $da), B $tb ticks (kernel drops $db), B/A $(python3 -c "print(round($tb / max($ta, 1), 3))")"
done
