package testutil

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// KafkaAdmin returns an admin client of the brokers, closed at the test's
// end.
func KafkaAdmin(t testing.TB, brokers string) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// RecreateTopic deletes topic, waits gap (while its users find it gone),
// and creates it again with partitions, retrying while the broker still
// deletes the old one (TOPIC_ALREADY_EXISTS in the result, not the error).
func RecreateTopic(t testing.TB, adm *kadm.Client, topic string, partitions int32, gap time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := adm.DeleteTopic(ctx, topic); err != nil {
		t.Fatal(err)
	}
	time.Sleep(gap)
	for {
		res, err := adm.CreateTopic(ctx, partitions, 1, nil, topic)
		if err == nil {
			err = res.Err
		}
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("creating topic %s again: %v", topic, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
