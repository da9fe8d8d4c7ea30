package groupcommit_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/groupcommit"
	"github.com/hookline/hookline/pkg/natstest"
)

func setup(t *testing.T, atomic bool) (jetstream.JetStream, jetstream.Stream) {
	t.Helper()
	srv := natstest.Start(t, func(o *server.Options) { o.SyncAlways = true })
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.CreateStream(context.Background(), jetstream.StreamConfig{
		Name: "T", Subjects: []string{"t.>"}, AllowAtomicPublish: atomic, Duplicates: time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	return js, s
}

func run(t *testing.T, p *groupcommit.Publisher) context.CancelFunc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return cancel
}

// publishAll publishes n messages from 32 goroutines and returns their futures.
func publishAll(t *testing.T, p *groupcommit.Publisher, n int, id func(i int) string) []*groupcommit.Future {
	t.Helper()
	futures := make([]*groupcommit.Future, n)
	var wg sync.WaitGroup
	for w := range 32 {
		wg.Go(func() {
			for i := w; i < n; i += 32 {
				m := &nats.Msg{Subject: fmt.Sprintf("t.%d", i), Data: []byte(fmt.Sprint(i))}
				futures[i] = p.Publish(context.Background(), m, id(i))
			}
		})
	}
	wg.Wait()
	return futures
}

func TestConcurrentPublishesAreStoredOnceEachWithTheirSequences(t *testing.T) {
	for _, atomic := range []bool{true, false} {
		t.Run(fmt.Sprintf("atomic=%v", atomic), func(t *testing.T) {
			js, s := setup(t, atomic)
			p := groupcommit.New(js, groupcommit.Config{})
			run(t, p)
			const n = 2000
			futures := publishAll(t, p, n, func(i int) string { return fmt.Sprint("id-", i) })
			seqs := map[uint64]int{}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for i, f := range futures {
				if err := f.Wait(ctx); err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				if f.Duplicate() {
					t.Fatalf("message %d reported duplicate", i)
				}
				if prev, ok := seqs[f.Sequence()]; ok {
					t.Fatalf("messages %d and %d both at sequence %d", prev, i, f.Sequence())
				}
				seqs[f.Sequence()] = i
			}
			// Without atomic publish no batch is stored as one; with it none falls back.
			if st := p.Stats(); (atomic && st.Fallbacks != 0) || (!atomic && st.Batches != 0) {
				t.Fatalf("stats %+v with atomic publish allowed %v", st, atomic)
			}
			info, err := s.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if info.State.Msgs != n {
				t.Fatalf("stream holds %d messages, want %d", info.State.Msgs, n)
			}
			// Each future's sequence holds its own message.
			for _, i := range []int{0, 1, n / 2, n - 1} {
				m, err := s.GetMsg(ctx, futures[i].Sequence())
				if err != nil {
					t.Fatal(err)
				}
				if string(m.Data) != fmt.Sprint(i) || m.Subject != fmt.Sprintf("t.%d", i) {
					t.Fatalf("sequence %d holds %s %q, want message %d", futures[i].Sequence(), m.Subject, m.Data, i)
				}
				if m.Header.Get(jetstream.MsgIDHeader) != fmt.Sprint("id-", i) {
					t.Fatalf("message %d stored with id %q", i, m.Header.Get(jetstream.MsgIDHeader))
				}
			}
		})
	}
}

// A batch holding one message already stored is refused as a whole by the
// server; each message then gets its own outcome: the old one a duplicate,
// the others stored once.
func TestADuplicateInABatchDoesNotSinkTheOthers(t *testing.T) {
	js, s := setup(t, true)
	ctx := context.Background()
	for i := range 10 {
		if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: fmt.Sprintf("t.%d", i), Data: []byte(fmt.Sprint(i))}, jetstream.WithMsgID(fmt.Sprint("id-", i))); err != nil {
			t.Fatal(err)
		}
	}
	p := groupcommit.New(js, groupcommit.Config{})
	// Queue everything before Run so that it forms batches with the old ids inside.
	futures := make([]*groupcommit.Future, 200)
	for i := range futures {
		futures[i] = p.Publish(ctx, &nats.Msg{Subject: fmt.Sprintf("t.%d", i), Data: []byte(fmt.Sprint(i))}, fmt.Sprint("id-", i))
	}
	run(t, p)
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for i, f := range futures {
		if err := f.Wait(wctx); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if f.Duplicate() != (i < 10) {
			t.Fatalf("message %d: duplicate %v", i, f.Duplicate())
		}
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 200 {
		t.Fatalf("stream holds %d messages, want 200", info.State.Msgs)
	}
}

func TestStopCommitsWhatIsQueuedThenRefuses(t *testing.T) {
	js, s := setup(t, true)
	p := groupcommit.New(js, groupcommit.Config{})
	ctx := context.Background()
	var futures []*groupcommit.Future
	for i := range 100 {
		futures = append(futures, p.Publish(ctx, &nats.Msg{Subject: fmt.Sprintf("t.%d", i), Data: []byte("x")}, ""))
	}
	stopped, stop := context.WithCancel(ctx)
	stop() // Run starts stopped: it must still commit the queue.
	p.Run(stopped)
	for i, f := range futures {
		select {
		case <-f.Done():
		default:
			t.Fatalf("message %d has no outcome after Run returned", i)
		}
		if f.Err() != nil {
			t.Fatalf("message %d: %v", i, f.Err())
		}
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 100 {
		t.Fatalf("stream holds %d messages, want 100", info.State.Msgs)
	}
	if st := p.Stats(); st.Batches != 1 || st.Batched != 100 || st.Fallbacks != 0 {
		t.Fatalf("stats %+v, want the queue stored as one atomic batch", st)
	}
	late := p.Publish(ctx, &nats.Msg{Subject: "t.late", Data: []byte("x")}, "")
	if err := late.Wait(ctx); !errors.Is(err, groupcommit.ErrStopped) {
		t.Fatalf("publish after stop: %v, want ErrStopped", err)
	}
}

func TestAMessageTheStreamRefusesFailsAlone(t *testing.T) {
	js, s := setup(t, true)
	ctx := context.Background()
	p := groupcommit.New(js, groupcommit.Config{})
	big := make([]byte, 2<<20) // beyond the default max_payload of 1 MiB
	futures := []*groupcommit.Future{
		p.Publish(ctx, &nats.Msg{Subject: "t.a", Data: []byte("a")}, ""),
		p.Publish(ctx, &nats.Msg{Subject: "t.big", Data: big}, ""),
		p.Publish(ctx, &nats.Msg{Subject: "nowhere", Data: []byte("c")}, ""),
		p.Publish(ctx, &nats.Msg{Subject: "t.d", Data: []byte("d")}, ""),
	}
	run(t, p)
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for i, f := range futures {
		err := f.Wait(wctx)
		if wantErr := i == 1 || i == 2; (err != nil) != wantErr {
			t.Fatalf("message %d: err %v, want error %v", i, err, wantErr)
		}
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 {
		t.Fatalf("stream holds %d messages, want 2", info.State.Msgs)
	}
}

// A batch smaller than MinBatch is published message by message: an atomic
// batch costs the server a staging store, which a handful of messages do
// not repay.
func TestSmallBatchesArePublishedOneByOne(t *testing.T) {
	js, s := setup(t, true)
	p := groupcommit.New(js, groupcommit.Config{MinBatch: 8})
	ctx := context.Background()
	var futures []*groupcommit.Future
	for i := range 7 {
		futures = append(futures, p.Publish(ctx, &nats.Msg{Subject: fmt.Sprintf("t.%d", i), Data: []byte("x")}, fmt.Sprint("id-", i)))
	}
	stopped, stop := context.WithCancel(ctx)
	stop()
	p.Run(stopped)
	for i, f := range futures {
		if f.Err() != nil || f.Sequence() == 0 {
			t.Fatalf("message %d: seq %d, err %v", i, f.Sequence(), f.Err())
		}
	}
	if st := p.Stats(); st.Batches != 0 || st.Fallbacks != 0 {
		t.Fatalf("stats %+v, want seven plain publishes", st)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 7 {
		t.Fatalf("stream holds %d messages, want 7", info.State.Msgs)
	}
}
