#!/usr/bin/env bash
# Whole-process comparison of the exporter with nfdump's nfpcapd on the same
# capture: `spanflow exporter run --pcap` (decode, meter, IPFIX over UDP) vs
# `nfpcapd -r` (decode, meter, nfcapd files), same active/idle timeouts.
# The captures are synthetic (exporter/synth): the bulk mix, ~1.2M packets,
# plain/802.1Q/VXLAN/ERSPAN II/ERSPAN III/GRE, TCP/UDP/ICMP, 20% IPv6; and
# the plain mix, 1.24M packets of the same protocols, untunnelled, in short
# connections (~97k flows), where nfpcapd decodes every packet too.
# Each tool runs RUNS times alternately; the script prints the range (least
# to most) of the wall clock and of the CPU time (user+system, from wait4, to
# the microsecond) over the runs, and the load average.
# Env: MIXES (default "bulk plain"), PACKETS (default 1200000; the plain mix
# 1240000), RUNS (default 3), BASE a git revision whose exporter runs too
# (before/after, alternated with this one), KEEP=1 keeps the temp dir.
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

# IPFIX goes to a UDP socket on loopback that reads and discards every
# datagram (a sink standing in for a collector). A port nobody listens on
# would make the kernel build an ICMP port-unreachable error for every
# message, in the exporter's sendto: a cost no real collector causes.
cat >"$tmp/sink.py" <<'PY'
import signal, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
n = 0
def report(*_):
    print(n, flush=True)
signal.signal(signal.SIGUSR1, report)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
while True:
    try:
        s.recv(65535)
        n += 1
    except InterruptedError:
        pass
PY
python3 -u "$tmp/sink.py" >"$tmp/sink.out" &
sink=$!
trap 'kill $sink 2>/dev/null; [ "${KEEP:-}" = 1 ] || rm -rf "$tmp"' EXIT
for _ in $(seq 50); do [ -s "$tmp/sink.out" ] && break; sleep 0.1; done
port=$(head -1 "$tmp/sink.out")
# sunk prints the datagrams the sink has read so far.
sunk() { kill -USR1 "$sink"; sleep 0.2; tail -1 "$tmp/sink.out"; }

# Runs a command and prints "WALL CPU RSS": its wall clock and CPU time
# (user+system) in seconds, from fork to wait4, and its max RSS in KiB.
cat >"$tmp/rusage.py" <<'PY'
import os, sys, time
out = open(sys.argv[1], "w")
t0 = time.monotonic()
pid = os.fork()
if pid == 0:
    os.dup2(out.fileno(), 1); os.dup2(out.fileno(), 2)
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, ru = os.wait4(pid, 0)
t1 = time.monotonic()
print("%.6f %.6f %d" % (t1 - t0, ru.ru_utime + ru.ru_stime, ru.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
PY
measure() { python3 "$tmp/rusage.py" "$@"; }
calc() { python3 -c "print($1)"; }
# span prints "least-most" of its arguments with format $1.
span() { local f=$1; shift; python3 -c "import sys; v=[float(x) for x in sys.argv[1:]]; print(('$f-$f') % (min(v), max(v)))" "$@"; }

# A BASE with --pcap-rate paces its replay unless told not to (500
# messages a second by default: 13 s for the plain mix).
base_rate=()
if [ -n "${BASE:-}" ] && "$tmp/spanflow-base" exporter run --help 2>&1 | grep -q -- '--pcap-rate'; then
	base_rate=(--pcap-rate 0)
fi

for mix in $MIXES; do
	PACKETS=${PACKETS_OVERRIDE:-$([ "$mix" = plain ] && echo 1240000 || echo 1200000)}
	echo "== $mix mix"
	go run ./exporter/synth/gencap -kind "$mix" -packets "$PACKETS" -o "$tmp/$mix.pcap"
	size=$(stat -c %s "$tmp/$mix.pcap")
	walls_sf=(); cpus_sf=(); walls_nf=(); cpus_nf=(); walls_b=(); cpus_b=()
	sent0=$(sunk)
	for i in $(seq "$RUNS"); do
		# --pcap-rate 0: the whole process's speed, not the replay's pacing
		# (a BASE that predates the flag sends unpaced anyway: base_rate).
		read -r w c rss_sf < <(measure "$tmp/sf.out" "$tmp/spanflow" exporter run --pcap "$tmp/$mix.pcap" \
			--collector "127.0.0.1:$port" --active-timeout 60s --idle-timeout 15s --pcap-rate 0)
		walls_sf+=("$w"); cpus_sf+=("$c")
		if [ -n "${BASE:-}" ]; then
			read -r w c rss_b < <(measure "$tmp/base.out" "$tmp/spanflow-base" exporter run --pcap "$tmp/$mix.pcap" \
				--collector "127.0.0.1:$port" --active-timeout 60s --idle-timeout 15s "${base_rate[@]}")
			walls_b+=("$w"); cpus_b+=("$c")
		fi
		rm -rf "$tmp/nf"; mkdir "$tmp/nf"
		read -r w c rss_nf < <(measure "$tmp/nf.out" nfpcapd -r "$tmp/$mix.pcap" -w "$tmp/nf" -e 60,15)
		walls_nf+=("$w"); cpus_nf+=("$c")
		printf 'run %d: spanflow %.3fs wall %.3fs CPU, %snfpcapd %.3fs wall %.3fs CPU; load average %s\n' "$i" \
			"${walls_sf[-1]}" "${cpus_sf[-1]}" "$([ -n "${BASE:-}" ] && printf 'before %.3fs wall %.3fs CPU, ' "${walls_b[-1]}" "${cpus_b[-1]}")" \
			"${walls_nf[-1]}" "${cpus_nf[-1]}" "$(cut -d' ' -f1-3 /proc/loadavg)"
	done
	grep -q '^spanflow exporter:' "$tmp/sf.out" || { echo "$0: spanflow failed:"; cat "$tmp/sf.out"; exit 1; } >&2
	nf_flows=$(nfdump -R "$tmp/nf" -q -o line 2>/dev/null | wc -l)
	echo "capture: $PACKETS packets, $size bytes (synthetic $mix mix)"
	echo "spanflow: $(sed -n 's/^spanflow exporter: //p' "$tmp/sf.out")"
	echo "sink: $(( $(sunk) - sent0 )) IPFIX datagrams read over the $RUNS runs of every build"
	echo "nfpcapd:  $nf_flows flows stored; $(grep -m1 'Processed' "$tmp/nf.out" | sed 's/^ *//')"
	min_sf=$(calc "min([${cpus_sf[*]/%/,}])"); min_nf=$(calc "min([${cpus_nf[*]/%/,}])")
	printf 'spanflow: wall %ss, CPU %ss (best %.2f M packets per CPU second), max RSS %d MiB\n' \
		"$(span %.3f "${walls_sf[@]}")" "$(span %.3f "${cpus_sf[@]}")" "$(calc "$PACKETS / $min_sf / 1e6")" "$((rss_sf / 1024))"
	if [ -n "${BASE:-}" ]; then
		printf 'spanflow %s (before): wall %ss, CPU %ss (best %.2f M packets per CPU second)\n' "$BASE" \
			"$(span %.3f "${walls_b[@]}")" "$(span %.3f "${cpus_b[@]}")" "$(calc "$PACKETS / min([${cpus_b[*]/%/,}]) / 1e6")"
	fi
	printf 'nfpcapd:  wall %ss, CPU %ss, max RSS %d MiB\n' "$(span %.3f "${walls_nf[@]}")" "$(span %.3f "${cpus_nf[@]}")" "$((rss_nf / 1024))"
	printf 'ratio (nfpcapd / spanflow, run by run): wall %sx, CPU %sx (issue #22 target: at least 4x in both)\n' \
		"$(python3 -c "import sys; a=sys.argv[1].split(); b=sys.argv[2].split(); r=[float(x)/float(y) for x,y in zip(a,b)]; print('%.1f-%.1f' % (min(r), max(r)))" "${walls_nf[*]}" "${walls_sf[*]}")" \
		"$(python3 -c "import sys; a=sys.argv[1].split(); b=sys.argv[2].split(); r=[float(x)/float(y) for x,y in zip(a,b)]; print('%.1f-%.1f' % (min(r), max(r)))" "${cpus_nf[*]}" "${cpus_sf[*]}")"
	rm -f "$tmp/$mix.pcap"
done
