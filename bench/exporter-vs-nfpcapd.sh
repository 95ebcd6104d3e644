#!/usr/bin/env bash
# Whole-process comparison of the exporter with nfdump's nfpcapd on the same
# capture: `spanflow exporter run --pcap` (decode, meter, IPFIX over UDP) vs
# `nfpcapd -r` (decode, meter, nfcapd files), same active/idle timeouts.
# The capture is the synthetic bulk mix (exporter/synth): ~1.2M
# packets, plain/802.1Q/VXLAN/ERSPAN II/ERSPAN III/GRE, TCP/UDP/ICMP, 20% IPv6.
# Each tool runs RUNS times alternately; the best wall-clock time counts.
# Env: PACKETS (default 1200000), RUNS (default 3), KEEP=1 keeps the temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
PACKETS=${PACKETS:-1200000}
RUNS=${RUNS:-3}
for tool in nfpcapd nfdump; do
	command -v "$tool" >/dev/null || { echo "$0: $tool not found (Debian package nfdump)" >&2; exit 1; }
done
tmp=$(mktemp -d)
[ "${KEEP:-}" = 1 ] || trap 'rm -rf "$tmp"' EXIT

go build -o "$tmp/spanflow" ./cmd/spanflow
go run ./exporter/synth/gencap -kind bulk -packets "$PACKETS" -o "$tmp/bulk.pcap"
size=$(stat -c %s "$tmp/bulk.pcap")

# IPFIX goes to a loopback port nobody listens on: every datagram is really
# sent, the kernel drops it.
port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

# Wall clock of a command in seconds, then (when GNU time is installed) its
# CPU time (user+system) in seconds and max RSS in KiB: "WALL CPU RSS".
measure() {
	local out=$1; shift
	local t0 t1 cpu=0 rss=0
	# t1 is taken right after the command: the python3 of calc takes tens
	# of milliseconds, which would count for both tools.
	t0=$(date +%s.%N)
	if [ -x /usr/bin/time ]; then
		/usr/bin/time -f '%U %S %M' -o "$tmp/time" "$@" >"$out" 2>&1
		t1=$(date +%s.%N)
		read -r user sys rss < <(tail -1 "$tmp/time")
		cpu=$(calc "$user + $sys")
	else
		"$@" >"$out" 2>&1
		t1=$(date +%s.%N)
	fi
	echo "$(calc "$t1 - $t0") $cpu $rss"
}
calc() { python3 -c "print($1)"; }

best_sf=999999; best_nf=999999; cpu_sf=999999; cpu_nf=999999; rss_sf=0; rss_nf=0
for i in $(seq "$RUNS"); do
	read -r sf c rss_sf < <(measure "$tmp/sf.out" "$tmp/spanflow" exporter run --pcap "$tmp/bulk.pcap" \
		--collector "127.0.0.1:$port" --active-timeout 60s --idle-timeout 15s)
	cpu_sf=$(calc "min($c, $cpu_sf)")
	rm -rf "$tmp/nf"; mkdir "$tmp/nf"
	read -r nf c rss_nf < <(measure "$tmp/nf.out" nfpcapd -r "$tmp/bulk.pcap" -w "$tmp/nf" -e 60,15)
	cpu_nf=$(calc "min($c, $cpu_nf)")
	best_sf=$(calc "min($sf, $best_sf)")
	best_nf=$(calc "min($nf, $best_nf)")
	printf 'run %d: spanflow %.3fs, nfpcapd %.3fs (wall clock)\n' "$i" "$sf" "$nf"
done
grep -q '^spanflow exporter:' "$tmp/sf.out" || { echo "$0: spanflow failed:"; cat "$tmp/sf.out"; exit 1; } >&2
nf_flows=$(nfdump -R "$tmp/nf" -q -o line 2>/dev/null | wc -l)
echo "capture: $PACKETS packets, $size bytes (synthetic bulk mix)"
echo "spanflow: $(sed -n 's/^spanflow exporter: //p' "$tmp/sf.out")"
echo "nfpcapd:  $nf_flows flows stored; $(grep -m1 'Processed' "$tmp/nf.out" | sed 's/^ *//')"
printf 'best wall clock: spanflow %.3fs (%.2f Mpps, max RSS %d MiB), nfpcapd %.3fs (%.2f Mpps, max RSS %d MiB)\n' \
	"$best_sf" "$(calc "$PACKETS / $best_sf / 1e6")" "$((rss_sf / 1024))" \
	"$best_nf" "$(calc "$PACKETS / $best_nf / 1e6")" "$((rss_nf / 1024))"
if [ -x /usr/bin/time ]; then
	printf 'least CPU time (user+system): spanflow %.2fs, nfpcapd %.2fs: %.1fx less\n' "$cpu_sf" "$cpu_nf" "$(calc "$cpu_nf / max($cpu_sf, 0.01)")"
fi
printf 'ratio: spanflow is %.1fx faster than nfpcapd in wall clock (target: at least 3x)\n' "$(calc "$best_nf / $best_sf")"
