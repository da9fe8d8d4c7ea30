package natsconn_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/natsconn"
	"github.com/hookline/hookline/pkg/natstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// heldWindow returns a JetStream context whose async window (one message)
// is full: its only publish went to a subject whose responder answers only
// when release is called.
func heldWindow(t *testing.T) (js jetstream.JetStream, release func()) {
	t.Helper()
	s := natstest.Start(t)
	nc, plain := s.Connect(t)
	if _, err := plain.CreateStream(context.Background(), jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}}); err != nil {
		t.Fatalf("create stream: %v", err)
	}
	held := make(chan *nats.Msg, 1)
	sub, err := nc.Subscribe("hold", func(m *nats.Msg) { held <- m })
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	js, err = jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(1))
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	if _, err := js.PublishMsgAsync(&nats.Msg{Subject: "hold", Data: []byte("x")}); err != nil {
		t.Fatalf("first publish: %v", err)
	}
	m := <-held
	return js, func() {
		if err := m.Respond([]byte(`{"stream":"HOLD","seq":1}`)); err != nil {
			t.Errorf("answer held publish: %v", err)
		}
	}
}

func TestPublishAsyncGivesUpWhenContextEnds(t *testing.T) {
	js, _ := heldWindow(t)
	ctx, cancel := context.WithCancel(context.Background())
	stalls := 0
	_, err := natsconn.PublishAsync(ctx, js, &nats.Msg{Subject: "t.a", Data: []byte("a")},
		func() { stalls++; cancel() }, jetstream.WithStallWait(time.Millisecond))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if stalls != 1 {
		t.Fatalf("onStall ran %d times, want 1", stalls)
	}
}

func TestPublishAsyncRetriesUntilTheWindowHasRoom(t *testing.T) {
	js, release := heldWindow(t)
	stalls := 0
	f, err := natsconn.PublishAsync(context.Background(), js, &nats.Msg{Subject: "t.a", Data: []byte("a")},
		func() {
			stalls++
			if stalls == 1 {
				release()
			}
		},
		jetstream.WithStallWait(time.Millisecond), jetstream.WithMsgID("id-1"))
	if err != nil {
		t.Fatalf("PublishAsync: %v", err)
	}
	if stalls < 1 {
		t.Fatalf("onStall never ran: the window was not full")
	}
	select {
	case ack := <-f.Ok():
		if ack.Stream != "T" || ack.Sequence != 1 {
			t.Fatalf("ack = %+v, want stream T seq 1", ack)
		}
	case err := <-f.Err():
		t.Fatalf("publish failed: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no ack within 10s")
	}
	if got := f.Msg().Header.Get(jetstream.MsgIDHeader); got != "id-1" {
		t.Fatalf("Nats-Msg-Id = %q: options not passed on", got)
	}
}

func TestConnectRepliesOnTheComponentsInbox(t *testing.T) {
	s := natstest.Start(t)
	for _, tc := range []struct {
		cfg  natsconn.Config
		want string
	}{
		{natsconn.Config{URL: s.ClientURL()}, "_INBOX_deliverer."},
		{natsconn.Config{URL: s.ClientURL(), InboxPrefix: "replies.d-1"}, "replies.d-1."},
	} {
		nc, err := natsconn.Connect(tc.cfg, "deliverer", zap.NewNop())
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		if got := nc.NewRespInbox(); !strings.HasPrefix(got, tc.want) {
			t.Errorf("prefix %q: reply inbox %q, want it under %q", tc.cfg.InboxPrefix, got, tc.want)
		}
		if got := nc.Opts.Name; got != "hookline-deliverer" {
			t.Errorf("connection name %q, want hookline-deliverer", got)
		}
		nc.Close()
	}
}

func TestValidateRejectsABadInboxPrefix(t *testing.T) {
	for _, p := range []string{"_INBOX.>", "a.*", "a.", ".a", "a b", "a..b"} {
		err := natsconn.Config{URL: "nats://127.0.0.1:4222", InboxPrefix: p}.Validate()
		if err == nil || !strings.Contains(err.Error(), "HOOKLINE_NATS_INBOX_PREFIX") {
			t.Errorf("prefix %q: err = %v, want one naming HOOKLINE_NATS_INBOX_PREFIX", p, err)
		}
	}
	for _, p := range []string{"", "_INBOX_x", "replies.d-1"} {
		if err := (natsconn.Config{URL: "nats://127.0.0.1:4222", InboxPrefix: p}).Validate(); err != nil {
			t.Errorf("prefix %q: %v", p, err)
		}
	}
}

// A malformed HOOKLINE_NATS_URL is refused without echoing it: it may hold
// a password (url.Parse's own error quotes the whole URL).
func TestValidateNeverEchoesTheURL(t *testing.T) {
	for _, u := range []string{"nats://alice:s3cret@[::1", "nats://alice:s3cret@%zz:4222", "nats://a:4222, nats://bob:s3cret@[x"} {
		err := natsconn.Config{URL: u}.Validate()
		if err == nil || !strings.Contains(err.Error(), "HOOKLINE_NATS_URL") || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("URL %q: err = %v; want one naming HOOKLINE_NATS_URL without the password", u, err)
		}
	}
	for _, u := range []string{"nats://127.0.0.1:4222", "nats://a:4222,nats://b:4222", "tls://user:pw@nats.example:4222"} {
		if err := (natsconn.Config{URL: u}).Validate(); err != nil {
			t.Errorf("URL %q: %v", u, err)
		}
	}
}
