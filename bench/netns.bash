# Sourced by the live-capture benchmarks (not run on its own).

# veth_netns NS: a network namespace NS holding a veth pair vA-vB (MTU
# 9000, up) and lo; IPv6 off so that the kernel sends nothing of its own on
# the pair. Frames sent into vA arrive on vB, where the exporters capture.
veth_netns() {
	ip netns add "$1"
	ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
	ip -n "$1" link add vA type veth peer name vB
	for l in vA vB; do ip -n "$1" link set "$l" mtu 9000 up; done
	ip -n "$1" link set lo up
}

# ticks PID: the CPU ticks (utime + stime) of a process. Their sum is the
# scheduler's exact run time; the split between them is a tick-sampled
# estimate.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
