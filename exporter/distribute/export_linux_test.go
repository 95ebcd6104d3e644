package distribute

import "net"

// SetTXRing chooses how the rules built afterwards send on interfaces:
// through a TX ring (true) or with sendmmsg, its fallback. It returns what
// puts the previous choice back.
func SetTXRing(on bool) (restore func()) {
	old := useTXRing
	useTXRing = on
	return func() { useTXRing = old }
}

// OpenTXRing opens a TX ring on the interface and closes it: nil when
// iface: destinations there send through one.
func OpenTXRing(name string) error {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return err
	}
	r, err := openTXRing(ifi)
	if err != nil {
		return err
	}
	return r.close()
}

// GRERingPackets is how many GRE packets went through a ring so far.
func GRERingPackets() uint64 { return greRingPackets.Load() }
