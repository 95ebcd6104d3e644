package ring_test

import (
	"testing"

	"github.com/spanflow/spanflow/exporter/ring"
)

// TestParseFlow: a 5-tuple gives the Community ID of the specification's
// vectors, in either direction, and that ID gives the same key.
func TestParseFlow(t *testing.T) {
	for _, c := range []struct{ tuple, id string }{
		{"tcp 128.232.110.120:34855 66.35.250.204:80", "1:LQU9qZlK+B5F3KDmev6m5PMibrg="},
		{"tcp 66.35.250.204:80 128.232.110.120:34855", "1:LQU9qZlK+B5F3KDmev6m5PMibrg="},
		{"udp 192.168.1.52:54585 8.8.8.8:53", "1:d/FP5EW3wiY1vCndhwleRRKHowQ="},
	} {
		key, id, err := ring.ParseFlow(c.tuple)
		if err != nil || id != c.id {
			t.Errorf("%s: id %s, %v; want %s", c.tuple, id, err, c.id)
			continue
		}
		if k, err := ring.CommunityIDKey(c.id); err != nil || k != key {
			t.Errorf("%s: key %x from the id, %x from the tuple (%v)", c.tuple, k, key, err)
		}
	}
	for _, bad := range []string{"", "1:notbase64!", "1:AAAA", "2:LQU9qZlK+B5F3KDmev6m5PMibrg=", "tcp 1.2.3.4 5.6.7.8:9", "bogus 1.2.3.4:1 5.6.7.8:9", "tcp 1.2.3.4:1"} {
		if _, _, err := ring.ParseFlow(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
