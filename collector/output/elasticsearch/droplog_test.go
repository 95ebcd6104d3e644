package elasticsearch

import (
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/spanflow/spanflow/internal/reporter"
)

// TestDropLogAddsUp: the rate-limited "flow documents dropped" lines add up
// to the documents lost, those of the calls the interval held back
// included, not to one call's count.
func TestDropLogAddsUp(t *testing.T) {
	o, logs := newWatchedOutput(t, []string{"http://127.0.0.1:1"}, t.TempDir(), nil)
	defer o.spool.Close()
	o.limited = reporter.NewLimited(reporter.NewForTest(logs).Log, 200*time.Millisecond)
	for range 5 {
		o.drop(dropSpoolFull, 7)
	}
	re := regexp.MustCompile(`msg="flow documents dropped" documents=(\d+)`)
	logged := func() int {
		n := 0
		for _, m := range re.FindAllStringSubmatch(logs.String(), -1) {
			v, _ := strconv.Atoi(m[1])
			n += v
		}
		return n
	}
	waitFor(t, "35 dropped documents in the log", 10*time.Second, func() bool { return logged() == 35 })
	time.Sleep(300 * time.Millisecond) // nothing logged twice
	if n := logged(); n != 35 {
		t.Fatalf("the log adds up to %d dropped documents, want 35:\n%s", n, logs.String())
	}
}
