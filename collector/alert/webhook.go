package alert

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/spanflow/spanflow/internal/lifecycle"
	"github.com/spanflow/spanflow/internal/reporter"
)

// SignatureHeader carries the HMAC-SHA256 of the webhook's body, keyed with
// the configured secret: "sha256=" and the hex digest.
const SignatureHeader = "X-Spanflow-Signature"

// Webhook posts each alert change as JSON to a URL. A notification that
// fails is retried with backoff (100 ms doubling to 30 s) until the
// receiver takes it or the collector stops; while it waits the others
// queue, in order, up to the queue's bound (overflow counted and logged).
type Webhook struct {
	r      *reporter.Reporter
	m      *metrics
	url    string
	secret []byte
	q      *queue
	client *http.Client
	t      lifecycle.Tracker
	warn   *reporter.Limited
	// MaxBackoff bounds the wait between attempts.
	MaxBackoff time.Duration
}

// WebhookMessage is the body of a webhook notification.
type WebhookMessage struct {
	Version string `json:"version"` // "1"
	Status  string `json:"status"`  // firing, resolved
	Alert   Alert  `json:"alert"`
	SentAt  string `json:"sentAt"`
}

// NewWebhook posts to url; secret, when not empty, signs each body.
func NewWebhook(r *reporter.Reporter, m *metrics, url string, secret []byte, queueSize int) *Webhook {
	return &Webhook{r: r, m: m, url: url, secret: secret, q: newQueue(r, m, "webhook", queueSize),
		client: &http.Client{Timeout: 10 * time.Second}, warn: reporter.NewLimited(r.Log, time.Minute),
		MaxBackoff: 30 * time.Second}
}

// Name of the sink.
func (w *Webhook) Name() string { return "webhook" }

// Send queues a notification.
func (w *Webhook) Send(a Alert) { w.q.put(a) }

// Start runs the sender.
func (w *Webhook) Start() error {
	w.t.Go(func(ctx context.Context) error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case a := <-w.q.ch:
				w.deliver(ctx, a)
				w.q.done()
			}
		}
	})
	return nil
}

// Stop stops the sender once what is queued is delivered, or after
// stopGrace; what is still queued then is counted as dropped.
func (w *Webhook) Stop() error {
	w.q.drain(stopGrace)
	err := w.t.Stop()
	if n := len(w.q.ch); n > 0 {
		w.m.dropped.WithLabelValues(w.Name()).Add(float64(n))
		w.r.Log.Warn("webhook notifications not delivered at stop", "count", n)
	}
	return err
}

// Sign is the signature header's value for body.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

func (w *Webhook) deliver(ctx context.Context, a Alert) {
	backoff := 100 * time.Millisecond
	for {
		body, _ := json.Marshal(WebhookMessage{Version: "1", Status: a.Status(), Alert: a, SentAt: time.Now().UTC().Format(time.RFC3339Nano)})
		err := w.post(ctx, body)
		if err == nil {
			w.m.deliveredAt(w.Name(), &a, time.Now())
			return
		}
		w.m.errors.WithLabelValues(w.Name()).Inc()
		var rej *rejectedError
		if errors.As(err, &rej) {
			// The receiver refused this notification (a bad secret, a
			// route it does not have, a body it will not take): sent
			// again it would be refused again, and every notification
			// queued behind it would wait, then overflow the queue. As
			// Alertmanager's own webhook does, it is not retried.
			w.m.dropped.WithLabelValues(w.Name()).Inc()
			w.warn.Warn("rejected", "webhook receiver rejected the notification; not retried (check the URL and the secret)",
				"url", w.url, "status", rej.status, "rule", a.Rule, "key", a.Key)
			return
		}
		w.warn.Warn("post", "webhook delivery failed; retrying", "url", w.url, "err", err, "queued", len(w.q.ch))
		select {
		case <-ctx.Done():
			w.m.dropped.WithLabelValues(w.Name()).Inc()
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, w.MaxBackoff)
	}
}

func (w *Webhook) post(ctx context.Context, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if len(w.secret) > 0 {
		req.Header.Set(SignatureHeader, Sign(w.secret, body))
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	switch {
	case resp.StatusCode/100 == 2:
		return nil
	case resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests:
		return &rejectedError{status: resp.Status}
	}
	return fmt.Errorf("%s", resp.Status)
}

// rejectedError is a 4xx answer other than 408 and 429: the receiver will
// not take the notification however often it is sent.
type rejectedError struct{ status string }

func (e *rejectedError) Error() string { return "rejected: " + e.status }
