package collector

import (
	"fmt"
	"io"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/internal/reporter"
	"github.com/spanflow/spanflow/internal/testutil"
)

// TestLiveViewInChromium opens the live view in headless Chromium while
// generated traffic flows to a collector whose Elasticsearch is down: the
// page goes live, the figures it shows equal the traffic sent (line
// volumes over the history, Sankey and split totals, exporter datagrams,
// the RTT p95 and retransmissions of payments, the firing alert), nothing
// is logged on the console, and screenshots of every view are kept at
// 1920×1080 and 3840×2160 (testutil.ArtifactDir).
func TestLiveViewInChromium(t *testing.T) {
	testutil.Command(t, "chromium")
	cfg := liveViewSetup(t)
	cfg.UI.Rotate = time.Second
	c, err := New(reporter.NewForTest(nil), cfg, Dependencies{Stdout: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	b := testutil.Chromium(t, c.UI().URL(), 1920, 1080)
	if !b.WaitFor(`document.querySelector("#state").textContent === "live"`, 30*time.Second) {
		t.Fatalf("the page never went live; console: %v", b.Console())
	}

	s := newSender(t, c.Addrs()[0].String())
	const rounds = 6
	for i := range rounds {
		s.send(t, time.Now(), liveTraffic(time.Now()))
		if i == rounds-2 {
			// While the traffic flows: TCP health and the alert.
			if !b.WaitFor(`[...document.querySelectorAll("#projects tbody tr")].some(r => r.dataset.key === "payments" && r.cells[3].textContent === "3.0 %")`, 10*time.Second) {
				t.Error("payments never showed 3.0 % retransmissions")
			}
		}
		time.Sleep(time.Second)
	}
	var rttText string
	b.Eval(`[...document.querySelectorAll("#projects tbody tr")].filter(r => r.dataset.key === "payments").map(r => r.cells[2].textContent).join()`, &rttText)
	if v, err := strconv.ParseFloat(strings.TrimSuffix(rttText, " ms"), 64); err != nil || math.Abs(v-20) > 0.25 {
		t.Errorf("payments RTT p95 on screen %q, want 20 ms (1 %% sketch accuracy)", rttText)
	}
	if !b.WaitFor(`document.querySelector('#alerts tbody tr[data-rule="line_busy"]')`, 15*time.Second) {
		t.Error("the line_busy alert never showed")
	}
	// Quiet: every byte is in, and the lines carry nothing any more.
	quiet := fmt.Sprintf(`(() => { const f = document.body.dataset.seq && [...document.querySelectorAll("#lines tbody tr")];
		const d = [...document.querySelectorAll("#exporters tbody tr")].find(r => r.dataset.key === "127.0.0.1");
		return f && f.length === 2 && f.every(r => +r.dataset.bps === 0) && d && +d.dataset.datagrams === %d; })()`, s.n())
	if !b.WaitFor(quiet, 20*time.Second) {
		t.Fatalf("the page never showed the traffic's end; console: %v", b.Console())
	}

	var lines []struct {
		Key, Text string
		Volume    float64
	}
	b.Eval(`[...document.querySelectorAll("#lines tbody tr")].map(r => ({key: r.dataset.key, volume: +r.dataset.volume, text: r.cells[4].textContent}))`, &lines)
	want := map[string]float64{"127.0.0.1 vmnic0": rounds * 4e6, "127.0.0.1 vmnic1": rounds * 2e6}
	wantText := map[string]string{"127.0.0.1 vmnic0": "24.0 MB", "127.0.0.1 vmnic1": "12.0 MB"}
	for _, l := range lines {
		if math.Abs(l.Volume-want[l.Key]) > 1e-6*want[l.Key] || l.Text != wantText[l.Key] {
			t.Errorf("line %s on screen: %q (%.0f bytes), sent %.0f bytes", l.Key, l.Text, l.Volume, want[l.Key])
		}
	}
	var links map[string]float64
	b.Eval(`Object.fromEntries([...document.querySelectorAll("#sankey path")].map(p => [p.dataset.from + " → " + p.dataset.to, +p.dataset.bytes]))`, &links)
	var split map[string]float64
	b.Eval(`Object.fromEntries([...document.querySelectorAll("#split a, #split span")].map(a => [a.className, +a.dataset.bytes]))`, &split)
	if links["payments → web"] != rounds*4e6 || links["web → outside"] != rounds*2e6 {
		t.Errorf("Sankey on screen %v", links)
	}
	if split["east-west"] != rounds*4e6 || split["north-south"] != rounds*2e6 {
		t.Errorf("split on screen %v", split)
	}

	// Every element links to Kibana Discover with its filter.
	var hrefs []string
	b.Eval(`[...document.querySelectorAll("#lines tbody tr td:first-child a")].map(a => decodeURIComponent(a.href))`, &hrefs)
	if len(hrefs) != 2 {
		t.Errorf("line links %v", hrefs)
	}
	for _, h := range hrefs {
		if !strings.HasPrefix(h, "http://kibana.example:5601/app/discover#/?_g=(time:(from:now-15m,to:now))") ||
			!strings.Contains(h, `observer.ip:"127.0.0.1"`) || !strings.Contains(h, "dataViewId:'spanflow-flows'") {
			t.Errorf("line link %s", h)
		}
	}
	var unlinked []string
	b.Eval(`[...document.querySelectorAll("#lines tbody td:first-child, #projects tbody td:first-child, #services tbody td:first-child, #exporters tbody td:first-child, #alerts tbody td:nth-child(2), .talkers > *, #split > *")].filter(e => !(e.tagName === "A" || e.querySelector("a"))).map(e => e.textContent)`, &unlinked)
	if len(unlinked) > 0 {
		t.Errorf("elements without a Discover link: %v", unlinked)
	}

	// Screenshots with traffic flowing and the alert firing.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			s.send(t, time.Now(), liveTraffic(time.Now()))
			select {
			case <-stop:
				return
			case <-time.After(time.Second):
			}
		}
	}()
	if !b.WaitFor(`document.querySelector('#alerts tbody tr[data-rule="line_busy"]') && +document.querySelector("#lines tbody tr").dataset.bps > 0`, 20*time.Second) {
		t.Error("no traffic nor alert on screen for the screenshots")
	}
	dir := testutil.ArtifactDir(t)
	for _, size := range [][2]int{{1920, 1080}, {3840, 2160}} {
		b.Call("Emulation.setDeviceMetricsOverride", map[string]any{"width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": false}, nil)
		for _, view := range []string{"lines", "traffic", "projects", "health"} {
			b.Eval(fmt.Sprintf(`document.querySelector('#tabs button[data-view="%s"]').click(); document.body.classList.add("kiosk"); true`, view), nil)
			var overflow bool
			b.Eval(`document.documentElement.scrollWidth > innerWidth || document.documentElement.scrollHeight > innerHeight`, &overflow)
			if overflow {
				t.Errorf("%s at %dx%d: the page overflows the screen", view, size[0], size[1])
			}
			b.Screenshot(filepath.Join(dir, fmt.Sprintf("%s-%dx%d.png", view, size[0], size[1])))
		}
	}
	// Kiosk mode rotates the views (ui-rotate 1s here).
	b.Navigate(c.UI().URL() + "?kiosk=1")
	if !b.WaitFor(`document.body.classList.contains("kiosk") && document.querySelector(".view.current").id === "view-lines"`, 10*time.Second) ||
		!b.WaitFor(`document.querySelector(".view.current").id === "view-traffic"`, 10*time.Second) ||
		!b.WaitFor(`document.querySelector(".view.current").id === "view-projects"`, 10*time.Second) {
		t.Error("kiosk mode does not rotate the views")
	}
	if msgs := b.Console(); len(msgs) > 0 {
		t.Errorf("the page logged:\n%s", strings.Join(msgs, "\n"))
	}
}
