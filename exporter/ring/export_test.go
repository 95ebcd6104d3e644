package ring

import "time"

// SetAnswerWriteTime sets how long the server writes an answer, for a test;
// the returned function restores it.
func SetAnswerWriteTime(d time.Duration) func() {
	old := answerWriteTime
	answerWriteTime = func(int64) time.Duration { return d }
	return func() { answerWriteTime = old }
}
