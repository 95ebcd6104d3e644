#!/usr/bin/env bash
# Whole-process comparison of the exporter with nfdump's nfpcapd on the same
# capture: `spanflow exporter run --pcap` (decode, meter, IPFIX over UDP) vs
# `nfpcapd -r` (decode, meter, nfcapd files), same active/idle timeouts.
# The captures are synthetic (exporter/synth): the bulk mix, ~1.2M packets,
# plain/802.1Q/VXLAN/ERSPAN II/ERSPAN III/GRE, TCP/UDP/ICMP, 20% IPv6; and
# the plain mix, 1.24M packets of the same protocols, untunnelled, in short
# connections (~97k flows), where nfpcapd decodes every packet too.
# Each tool runs RUNS times alternately; the best wall-clock time counts.
# Env: MIXES (default "bulk plain"), PACKETS (default 1200000; the plain mix
# 1240000), RUNS (default 3), BASE a git revision whose exporter runs too
# (before/after), KEEP=1 keeps the temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
PACKETS_OVERRIDE=${PACKETS:-}
RUNS=${RUNS:-3}
for tool in nfpcapd nfdump; do
	command -v "$tool" >/dev/null || { echo "$0: $tool not found (Debian package nfdump)" >&2; exit 1; }
done
tmp=$(mktemp -d)
[ "${KEEP:-}" = 1 ] || trap 'rm -rf "$tmp"' EXIT

MIXES=${MIXES:-bulk plain}
go build -o "$tmp/spanflow" ./cmd/spanflow
if [ -n "${BASE:-}" ]; then
	git worktree add --detach "$tmp/base" "$BASE" >/dev/null 2>&1
	(cd "$tmp/base" && go build -o "$tmp/spanflow-base" ./cmd/spanflow)
	git worktree remove --force "$tmp/base"
fi

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

for mix in $MIXES; do
	PACKETS=${PACKETS_OVERRIDE:-$([ "$mix" = plain ] && echo 1240000 || echo 1200000)}
	echo "== $mix mix"
	go run ./exporter/synth/gencap -kind "$mix" -packets "$PACKETS" -o "$tmp/$mix.pcap"
	size=$(stat -c %s "$tmp/$mix.pcap")
	best_sf=999999; best_nf=999999; best_b=999999; cpu_b=999999; cpu_sf=999999; cpu_nf=999999; rss_sf=0; rss_nf=0
	for i in $(seq "$RUNS"); do
		read -r sf c rss_sf < <(measure "$tmp/sf.out" "$tmp/spanflow" exporter run --pcap "$tmp/$mix.pcap" \
			--collector "127.0.0.1:$port" --active-timeout 60s --idle-timeout 15s)
		cpu_sf=$(calc "min($c, $cpu_sf)")
		if [ -n "${BASE:-}" ]; then
			read -r b c rss_b < <(measure "$tmp/base.out" "$tmp/spanflow-base" exporter run --pcap "$tmp/$mix.pcap" \
				--collector "127.0.0.1:$port" --active-timeout 60s --idle-timeout 15s)
			cpu_b=$(calc "min($c, $cpu_b)")
			best_b=$(calc "min($b, $best_b)")
		fi
		rm -rf "$tmp/nf"; mkdir "$tmp/nf"
		read -r nf c rss_nf < <(measure "$tmp/nf.out" nfpcapd -r "$tmp/$mix.pcap" -w "$tmp/nf" -e 60,15)
		cpu_nf=$(calc "min($c, $cpu_nf)")
		best_sf=$(calc "min($sf, $best_sf)")
		best_nf=$(calc "min($nf, $best_nf)")
		printf 'run %d: spanflow %.3fs, nfpcapd %.3fs (wall clock)\n' "$i" "$sf" "$nf"
	done
	grep -q '^spanflow exporter:' "$tmp/sf.out" || { echo "$0: spanflow failed:"; cat "$tmp/sf.out"; exit 1; } >&2
	nf_flows=$(nfdump -R "$tmp/nf" -q -o line 2>/dev/null | wc -l)
	echo "capture: $PACKETS packets, $size bytes (synthetic $mix mix)"
	echo "spanflow: $(sed -n 's/^spanflow exporter: //p' "$tmp/sf.out")"
	echo "nfpcapd:  $nf_flows flows stored; $(grep -m1 'Processed' "$tmp/nf.out" | sed 's/^ *//')"
	printf 'best wall clock: spanflow %.3fs (%.2f Mpps, max RSS %d MiB), nfpcapd %.3fs (%.2f Mpps, max RSS %d MiB)\n' \
		"$best_sf" "$(calc "$PACKETS / $best_sf / 1e6")" "$((rss_sf / 1024))" \
		"$best_nf" "$(calc "$PACKETS / $best_nf / 1e6")" "$((rss_nf / 1024))"
	if [ -x /usr/bin/time ]; then
		printf 'least CPU time (user+system): spanflow %.2fs, nfpcapd %.2fs: %.1fx less\n' "$cpu_sf" "$cpu_nf" "$(calc "$cpu_nf / max($cpu_sf, 0.01)")"
	fi
	if [ -n "${BASE:-}" ]; then
		printf 'spanflow %s (before): best wall clock %.3fs (%.2f Mpps), least CPU %.2fs\n' "$BASE" "$best_b" "$(calc "$PACKETS / $best_b / 1e6")" "$cpu_b"
	fi
	printf 'ratio: spanflow is %.1fx faster than nfpcapd in wall clock (issue #22 target: at least 4x, in wall clock and CPU)\n' "$(calc "$best_nf / $best_sf")"
	rm -f "$tmp/$mix.pcap"
done
