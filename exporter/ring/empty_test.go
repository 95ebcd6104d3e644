package ring_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/spanflow/spanflow/exporter/ring"
)

// TestNothingThere: the query server answers 410 only for time whose
// packets retention removed. A pinned window without packets (retention
// removed every segment around it) is kept, and answers 200 with an
// empty capture, as do a window in the future, a window of kept time
// without packets and a flow absent from a kept window; the same window
// unpinned, once removed, answers 410; pinning time already removed is
// refused with 410.
func TestNothingThere(t *testing.T) {
	cfg := ring.Configuration{Dir: t.TempDir(), Size: ring.MinSize, Codec: ring.CodecNone, BlockSize: 256 << 10}
	w := newRandomFrames(t, cfg, 3, 42)
	_, before := w.write(4 << 20)
	// A quiet second, pinned (an alert's window on a probe that saw
	// nothing then), and one not pinned.
	quiet := [2]int64{before + 1, before + int64(time.Second)}
	unpinned := [2]int64{before + int64(time.Second), before + 2*int64(time.Second)}
	w.ts += 2 * int64(time.Second)
	if err := ring.AddPin(cfg.Dir, ring.Pin{From: quiet[0], To: quiet[1], Name: "quiet"}); err != nil {
		t.Fatal(err)
	}
	kFrom, kTo := w.write(4 << 20)
	if err := ring.AddPin(cfg.Dir, ring.Pin{From: kFrom, To: kTo + 1, Name: "kept"}); err != nil {
		t.Fatal(err)
	}
	w.write(3 * cfg.Size) // every segment not pinned goes
	_, truncated, err := ring.List(cfg.Dir, func(string) {})
	if err != nil || truncated <= unpinned[1] {
		t.Fatalf("ring truncated at %d (%v), want past %d", truncated, err, unpinned[1])
	}
	srv := tokenServer(t, cfg.Dir)
	get := func(method, query string) (int, int) {
		req, _ := http.NewRequest(method, "http://"+srv.Addr()+query, nil)
		req.Header.Set("Authorization", "Bearer s3cret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		n := 0
		if resp.StatusCode == http.StatusOK && method == http.MethodGet {
			pkts, err := ring.ReadCapture(body)
			if err != nil {
				t.Fatalf("%s: %v", query, err)
			}
			n = len(pkts)
		}
		return resp.StatusCode, n
	}
	for _, c := range []struct {
		name    string
		query   string
		code, n int
	}{
		{"pinned window without packets", fmt.Sprintf("/packets?from=%d&to=%d", quiet[0], quiet[1]), 200, 0},
		{"pinned window with packets", fmt.Sprintf("/packets?from=%d&to=%d", kFrom, kTo+1), 200, 4<<20/1000 + 1},
		{"flow absent from a pinned window", fmt.Sprintf("/packets?from=%d&to=%d&flow=tcp+10.0.0.1:1+10.0.0.2:2", kFrom, kTo+1), 200, 0},
		{"window in the future", fmt.Sprintf("/packets?from=%d&to=%d", w.ts+1, w.ts+int64(time.Hour)), 200, 0},
		{"removed window", fmt.Sprintf("/packets?from=%d&to=%d", unpinned[0], unpinned[1]), 410, 0},
	} {
		if code, n := get(http.MethodGet, c.query); code != c.code || n != c.n {
			t.Errorf("%s: %d with %d packets, want %d with %d", c.name, code, n, c.code, c.n)
		}
	}
	if code, _ := get(http.MethodPut, fmt.Sprintf("/pins/late?from=%d&to=%d", unpinned[0], unpinned[1])); code != http.StatusGone {
		t.Errorf("pinning removed time: %d, want 410", code)
	}
	if err := ring.AddPin(cfg.Dir, ring.Pin{From: unpinned[0], To: unpinned[1], Name: "late"}); !errors.Is(err, ring.ErrGone) {
		t.Errorf("pinning removed time: %v, want ErrGone", err)
	}
	// A pin that starts in removed time starts after it: a pin's range
	// is kept whole (time between the pinned segment's frames and the
	// newest removed frame went too).
	if err := ring.AddPin(cfg.Dir, ring.Pin{From: unpinned[0], To: w.ts + 1, Name: "late"}); err != nil {
		t.Fatal(err)
	}
	pins, _ := ring.Pins(cfg.Dir)
	if i := slices.IndexFunc(pins, func(p ring.Pin) bool { return p.Name == "late" }); i < 0 || pins[i].From != truncated+1 || pins[i].To != w.ts+1 {
		t.Errorf("pin over removed and kept time: %+v, want from %d to %d", pins, truncated+1, w.ts+1)
	}
}
