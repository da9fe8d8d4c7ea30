package stream_test

import (
	"context"
	"testing"

	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/nats-io/nats.go/jetstream"
)

func TestEnsureIsIdempotent(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	_, js := s.Connect(t)
	ctx := context.Background()
	for i := range 2 {
		if err := stream.Ensure(ctx, js, stream.Config{}); err != nil {
			t.Fatalf("ensure #%d: %v", i+1, err)
		}
	}
	d, err := js.Stream(ctx, stream.Deliveries)
	if err != nil {
		t.Fatal(err)
	}
	info, err := d.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Retention != jetstream.WorkQueuePolicy || !info.Config.AllowMsgSchedules {
		t.Fatalf("DELIVERIES: retention %v schedules %v; want work queue with schedules", info.Config.Retention, info.Config.AllowMsgSchedules)
	}
	for _, name := range []string{stream.Events, stream.Attempts, stream.DeadLetter} {
		if _, err := js.Stream(ctx, name); err != nil {
			t.Errorf("stream %s: %v", name, err)
		}
	}
	if _, err := js.KeyValue(ctx, stream.SubscriptionsBucket); err != nil {
		t.Errorf("kv: %v", err)
	}
}

func TestParseEventSubject(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, subject, tenant, typ string
		wantErr                    bool
	}{
		{name: "simple", subject: "events.acme.order.created", tenant: "acme", typ: "order.created"},
		{name: "one token type", subject: "events.acme.ping", tenant: "acme", typ: "ping"},
		{name: "no type", subject: "events.acme", wantErr: true},
		{name: "wrong prefix", subject: "other.acme.x", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tenant, typ, err := stream.ParseEventSubject(tt.subject)
			if (err != nil) != tt.wantErr || tenant != tt.tenant || typ != tt.typ {
				t.Fatalf("ParseEventSubject(%q) = %q, %q, %v", tt.subject, tenant, typ, err)
			}
		})
	}
}
