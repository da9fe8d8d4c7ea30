package stream_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/nats-io/nats.go/jetstream"
)

// Check changes nothing: on an empty server it names every missing piece
// and how to create it; after Ensure it passes; a piece that differs from
// the configuration is named with the value it has and the one wanted.
func TestCheck(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	_, js := s.Connect(t)
	ctx := context.Background()
	c := stream.Config{AckWait: 30 * time.Second}

	err := stream.Check(ctx, js, c)
	var te *stream.TopologyError
	if !errors.As(err, &te) {
		t.Fatalf("check on an empty server: %v, want a TopologyError", err)
	}
	for _, want := range []string{
		"stream EVENTS is missing", "stream DELIVERIES is missing", "stream ATTEMPTS is missing", "stream DEADLETTER is missing",
		"kv bucket hookline_subscriptions is missing", "consumer EVENTS/dispatch is missing", "consumer DELIVERIES/deliver is missing",
		"deliverer topology", "HOOKLINE_TOPOLOGY=ensure",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("check error lacks %q:\n%v", want, err)
		}
	}
	names, err := listStreams(ctx, js)
	if err != nil || len(names) != 0 {
		t.Fatalf("check created streams %v (%v): it must change nothing", names, err)
	}

	if err := stream.EnsureStreams(ctx, js, c); err != nil {
		t.Fatal(err)
	}
	if err := stream.CheckStreams(ctx, js, c); err != nil {
		t.Fatalf("check streams after EnsureStreams: %v", err)
	}
	if err := stream.Check(ctx, js, c); err == nil || !strings.Contains(err.Error(), "consumer DELIVERIES/deliver is missing") {
		t.Fatalf("check without consumers: %v", err)
	}
	if err := stream.Ensure(ctx, js, c); err != nil {
		t.Fatal(err)
	}
	if err := stream.Check(ctx, js, c); err != nil {
		t.Fatalf("check after Ensure: %v", err)
	}

	other := c
	other.AckWait, other.EventsMaxAge, other.DuplicateWindow = 45*time.Second, 48*time.Hour, 10*time.Minute
	err = stream.Check(ctx, js, other)
	for _, want := range []string{
		"consumer DELIVERIES/deliver has ack_wait 30s, want 45s",
		"consumer EVENTS/dispatch has ack_wait 30s, want 45s",
		"stream EVENTS has max_age 168h0m0s, want 48h0m0s",
		"stream DELIVERIES has duplicate_window 20m0s, want 10m0s",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("check with other settings lacks %q: %v", want, err)
		}
	}
}

func listStreams(ctx context.Context, js jetstream.JetStream) ([]string, error) {
	l := js.StreamNames(ctx)
	var names []string
	for n := range l.Name() {
		names = append(names, n)
	}
	return names, l.Err()
}
