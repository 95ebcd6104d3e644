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

now() { date +%s.%N; }
best_sf=999999; best_nf=999999; rss_sf=0; rss_nf=0
for i in $(seq "$RUNS"); do
	t0=$(now)
	/usr/bin/time -f %M -o "$tmp/rss-sf" "$tmp/spanflow" exporter run --pcap "$tmp/bulk.pcap" \
		--collector "127.0.0.1:$port" --active-timeout 60s --idle-timeout 15s >"$tmp/sf.out"
	t1=$(now)
	rm -rf "$tmp/nf"; mkdir "$tmp/nf"
	/usr/bin/time -f %M -o "$tmp/rss-nf" nfpcapd -r "$tmp/bulk.pcap" -w "$tmp/nf" -e 60,15 >"$tmp/nf.out" 2>&1
	t2=$(now)
	sf=$(echo "$t1 - $t0" | bc -l); nf=$(echo "$t2 - $t1" | bc -l)
	best_sf=$(echo "if ($sf < $best_sf) $sf else $best_sf" | bc -l)
	best_nf=$(echo "if ($nf < $best_nf) $nf else $best_nf" | bc -l)
	rss_sf=$(tail -1 "$tmp/rss-sf"); rss_nf=$(tail -1 "$tmp/rss-nf")
	printf 'run %d: spanflow %.3fs, nfpcapd %.3fs\n' "$i" "$sf" "$nf"
done
nf_flows=$(nfdump -R "$tmp/nf" -q -o line 2>/dev/null | wc -l)
echo "capture: $PACKETS packets, $size bytes (synthetic bulk mix)"
echo "spanflow: $(sed 's/^spanflow exporter: //' "$tmp/sf.out")"
echo "nfpcapd:  $nf_flows flows stored; $(grep -m1 'Processed' "$tmp/nf.out" | sed 's/^ *//')"
printf 'best wall clock: spanflow %.3fs (%.2f Mpps, max RSS %d MiB), nfpcapd %.3fs (%.2f Mpps, max RSS %d MiB)\n' \
	"$best_sf" "$(echo "$PACKETS / $best_sf / 1000000" | bc -l)" "$((rss_sf / 1024))" \
	"$best_nf" "$(echo "$PACKETS / $best_nf / 1000000" | bc -l)" "$((rss_nf / 1024))"
printf 'ratio: spanflow is %.1fx faster than nfpcapd (target: at least 3x)\n' "$(echo "$best_nf / $best_sf" | bc -l)"
