package ring

import (
	"bytes"
	"time"
)

// SetAnswerWriteTime sets how long the server writes an answer, for a test;
// the returned function restores it.
func SetAnswerWriteTime(d time.Duration) func() {
	old := answerWriteTime
	answerWriteTime = func(int64) time.Duration { return d }
	return func() { answerWriteTime = old }
}

// ReadCapture reads an answer of the query server.
func ReadCapture(b []byte) ([]Packet, error) { return readCapture(bytes.NewReader(b)) }
