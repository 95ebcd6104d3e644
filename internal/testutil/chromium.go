package testutil

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Browser drives Debian's headless Chromium through the DevTools protocol
// over a pipe (--remote-debugging-pipe: commands on fd 3, answers on fd
// 4, NUL-terminated JSON), for pages that keep a connection open (server-
// sent events), which --dump-dom cannot wait for. It collects console
// messages and uncaught exceptions.
type Browser struct {
	t       testing.TB
	cmd     *exec.Cmd
	w       io.WriteCloser
	mu      sync.Mutex
	id      int
	waiting map[int]chan cdpMessage
	session string
	console []string
}

type cdpMessage struct {
	ID        int             `json:"id,omitempty"`
	Method    string          `json:"method,omitempty"`
	Params    json.RawMessage `json:"params,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     *struct{ Message string }
	SessionID string `json:"sessionId,omitempty"`
}

// Chromium starts headless Chromium with one page of width×height CSS
// pixels at url, or skips/fails as Command does when there is none. args
// are more command-line switches.
func Chromium(t testing.TB, url string, width, height int, args ...string) *Browser {
	t.Helper()
	path := Command(t, "chromium")
	cmdR, cmdW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	resR, resW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	b := &Browser{t: t, w: cmdW, waiting: map[int]chan cdpMessage{}}
	b.cmd = exec.Command(path, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
		"--disable-extensions", "--hide-scrollbars", "--user-data-dir="+t.TempDir())
	b.cmd.Args = append(append(b.cmd.Args, args...), "about:blank")
	b.cmd.ExtraFiles = []*os.File{cmdR, resW}
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	cmdR.Close()
	resW.Close()
	t.Cleanup(func() {
		cmdW.Close()
		done := make(chan struct{})
		go func() { b.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			b.cmd.Process.Kill()
			<-done
		}
	})
	go b.read(resR)

	var target struct{ TargetID string }
	b.call("", "Target.createTarget", map[string]any{"url": "about:blank", "newWindow": true, "width": width, "height": height}, &target)
	var att struct{ SessionID string }
	b.call("", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &att)
	b.session = att.SessionID
	b.Call("Runtime.enable", nil, nil)
	b.Call("Log.enable", nil, nil)
	b.Call("Emulation.setDeviceMetricsOverride", map[string]any{"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}, nil)
	b.Call("Page.enable", nil, nil)
	b.Call("Page.navigate", map[string]any{"url": url}, nil)
	return b
}

func (b *Browser) read(r io.Reader) {
	br := bufio.NewReader(r)
	for {
		raw, err := br.ReadBytes(0)
		if err != nil {
			b.mu.Lock()
			for id, ch := range b.waiting {
				close(ch)
				delete(b.waiting, id)
			}
			b.mu.Unlock()
			return
		}
		var m cdpMessage
		if json.Unmarshal(raw[:len(raw)-1], &m) != nil {
			continue
		}
		b.mu.Lock()
		if m.ID != 0 {
			if ch, ok := b.waiting[m.ID]; ok {
				ch <- m
				delete(b.waiting, m.ID)
			}
		} else {
			switch m.Method {
			case "Runtime.consoleAPICalled":
				var p struct {
					Type string
					Args []struct {
						Value       any
						Description string
					}
				}
				json.Unmarshal(m.Params, &p)
				var parts []string
				for _, a := range p.Args {
					parts = append(parts, fmt.Sprint(a.Value)+a.Description)
				}
				b.console = append(b.console, "console."+p.Type+": "+strings.Join(parts, " "))
			case "Runtime.exceptionThrown":
				b.console = append(b.console, "exception: "+string(m.Params))
			case "Log.entryAdded":
				var p struct {
					Entry struct{ Level, Text, URL string }
				}
				json.Unmarshal(m.Params, &p)
				if p.Entry.Level == "error" || p.Entry.Level == "warning" {
					b.console = append(b.console, "log."+p.Entry.Level+": "+p.Entry.Text+" "+p.Entry.URL)
				}
			}
		}
		b.mu.Unlock()
	}
}

func (b *Browser) call(session, method string, params any, result any) {
	b.t.Helper()
	b.mu.Lock()
	b.id++
	id := b.id
	ch := make(chan cdpMessage, 1)
	b.waiting[id] = ch
	b.mu.Unlock()
	msg, _ := json.Marshal(struct {
		ID        int    `json:"id"`
		Method    string `json:"method"`
		Params    any    `json:"params,omitempty"`
		SessionID string `json:"sessionId,omitempty"`
	}{id, method, params, session})
	if _, err := b.w.Write(append(msg, 0)); err != nil {
		b.t.Fatalf("chromium %s: %v", method, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	select {
	case m, ok := <-ch:
		if !ok {
			b.t.Fatalf("chromium %s: the browser went away", method)
		}
		if m.Error != nil {
			b.t.Fatalf("chromium %s: %s", method, m.Error.Message)
		}
		if result != nil {
			if err := json.Unmarshal(m.Result, result); err != nil {
				b.t.Fatalf("chromium %s: %v", method, err)
			}
		}
	case <-ctx.Done():
		b.t.Fatalf("chromium %s: no answer within a minute", method)
	}
}

// OpenPages opens n more pages of width×height at url in the same browser
// (each its own tab and renderer, as n screens would be); they live until
// the browser stops.
func (b *Browser) OpenPages(url string, n, width, height int) {
	b.t.Helper()
	for range n {
		b.call("", "Target.createTarget", map[string]any{"url": url, "newWindow": true, "width": width, "height": height}, nil)
	}
}

// Call sends a DevTools command to the page and decodes its result.
func (b *Browser) Call(method string, params any, result any) {
	b.t.Helper()
	b.call(b.session, method, params, result)
}

// Navigate opens url in the page.
func (b *Browser) Navigate(url string) {
	b.t.Helper()
	b.Call("Page.navigate", map[string]any{"url": url}, nil)
}

// Eval evaluates a JavaScript expression in the page and decodes its
// value (JSON-serialisable) into out.
func (b *Browser) Eval(expr string, out any) {
	b.t.Helper()
	var r struct {
		Result           struct{ Value json.RawMessage }
		ExceptionDetails *struct{ Text string }
	}
	b.Call("Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true}, &r)
	if r.ExceptionDetails != nil {
		b.t.Fatalf("evaluate %s: %s", expr, r.ExceptionDetails.Text)
	}
	if out != nil {
		if err := json.Unmarshal(r.Result.Value, out); err != nil {
			b.t.Fatalf("evaluate %s: %v (%s)", expr, err, r.Result.Value)
		}
	}
}

// WaitFor evaluates a boolean expression until it is true; an exception
// (the page not loaded yet) counts as false.
func (b *Browser) WaitFor(expr string, timeout time.Duration) bool {
	b.t.Helper()
	for end := time.Now().Add(timeout); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		var ok bool
		b.Eval("(() => { try { return !!("+expr+"); } catch (e) { return false; } })()", &ok)
		if ok {
			return true
		}
	}
	return false
}

// Screenshot writes a PNG of the viewport to path.
func (b *Browser) Screenshot(path string) {
	b.t.Helper()
	var r struct{ Data string }
	b.Call("Page.captureScreenshot", map[string]any{"format": "png"}, &r)
	png, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// Console is what the page logged: console calls, uncaught exceptions,
// and errors and warnings of the browser's log (CSP violations, failed
// loads).
func (b *Browser) Console() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.console...)
}

// ArtifactDir is where a test keeps what a person should look at after the
// run (screenshots): $SPANFLOW_ARTIFACTS/<test>, which CI keeps, else
// <temp>/spanflow-artifacts/<test>, left in place. The path is logged.
func ArtifactDir(t testing.TB) string {
	t.Helper()
	root := os.Getenv("SPANFLOW_ARTIFACTS")
	if root == "" {
		root = filepath.Join(os.TempDir(), "spanflow-artifacts")
	}
	dir := filepath.Join(root, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("artifacts in %s", dir)
	return dir
}
