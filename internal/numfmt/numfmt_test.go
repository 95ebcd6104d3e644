package numfmt

import (
	"testing"
	"time"
)

func TestFormats(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{Group(0), "0"}, {Group(999), "999"}, {Group(1000), "1,000"}, {Group(1234567), "1,234,567"},
		{Count(1, "packet", ""), "1 packet"}, {Count(0, "packet", ""), "0 packets"}, {Count(20480, "packet", ""), "20,480 packets"},
		{Count(1, "flow evicted early", "flows evicted early"), "1 flow evicted early"},
		{Percent(52.04), "52.0%"}, {Millis(1500 * time.Microsecond), "1.50 ms"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}
