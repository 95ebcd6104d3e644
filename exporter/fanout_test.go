package exporter

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spanflow/spanflow/exporter/capture"
	"github.com/spanflow/spanflow/exporter/synth"
	"github.com/spanflow/spanflow/internal/reporter"
)

// liveFake is a live source (it has kernel counters): it yields its
// packets, closes drained, then stays idle, or fails with err once
// failAfter is closed.
type liveFake struct {
	pkts      []synth.Packet
	drained   chan struct{}
	err       error
	failAfter chan struct{}
}

func (s *liveFake) Next(f *capture.Frame) error {
	if len(s.pkts) == 0 {
		if s.drained != nil {
			close(s.drained)
			s.drained = nil
		}
		if s.err != nil {
			<-s.failAfter
			return s.err
		}
		time.Sleep(time.Millisecond)
		return capture.ErrIdle
	}
	p := s.pkts[0]
	s.pkts = s.pkts[1:]
	*f = capture.Frame{Data: p.Data, Length: len(p.Data), Timestamp: p.Time, LinkType: 1}
	return nil
}

func (s *liveFake) Close() error             { return nil }
func (s *liveFake) Stats() capture.LiveStats { return capture.LiveStats{} }

// nowhere is a transport that sends nowhere; the workers share it.
type nowhere struct{}

func (nowhere) Send([]byte) error { return nil }

// TestFanoutOneWorkerFails: when one fanout worker's source fails, the others
// stop too (instead of running on, half blind, until a signal), every
// worker's flows are exported, and the error is returned.
func TestFanoutOneWorkerFails(t *testing.T) {
	c := synth.Mixed(time.Unix(1700000000, 0))
	half := len(c.Packets) / 2
	// The failure comes once the healthy worker has read all its frames,
	// so that every frame is read and its flow must be exported.
	drained := make(chan struct{})
	srcs := []capture.Source{
		&liveFake{pkts: c.Packets[:half], drained: drained},
		&liveFake{pkts: c.Packets[half:], err: errors.New("read from vB: boom"), failAfter: drained},
	}
	f, err := NewFanout(reporter.NewForTest(nil), DefaultConfiguration(), srcs, nowhere{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var sum Summary
	go func() {
		sum, err = f.Run(context.Background())
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the healthy worker ran on after the other failed")
	}
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("error %v, want the failed worker's", err)
	}
	if sum.Frames != uint64(len(c.Packets)) || sum.Flows == 0 {
		t.Errorf("summary %+v: want all %d frames read and their flows exported", sum, len(c.Packets))
	}
}
