package idempotency_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/services/producer/internal/idempotency"
	"github.com/nats-io/nats.go/jetstream"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func store(t *testing.T, lease, wait time.Duration) (*idempotency.Store, jetstream.JetStream) {
	t.Helper()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	ctx := context.Background()
	if _, err := js.CreateOrUpdateKeyValue(ctx, stream.IdempotencyKVConfig(stream.Config{})); err != nil {
		t.Fatal(err)
	}
	s := idempotency.New(js, idempotency.Config{Lease: lease, Wait: wait})
	if err := s.Bind(ctx); err != nil {
		t.Fatal(err)
	}
	return s, js
}

func req(scope, key, body string, ids ...string) idempotency.Request {
	return idempotency.Request{Scope: scope, Key: key, Method: "POST", Path: "/v1/events", Body: []byte(body), IDs: ids}
}

func TestBeginCompleteReplay(t *testing.T) {
	t.Parallel()
	s, _ := store(t, time.Minute, time.Second)
	ctx := context.Background()
	c, stored, err := s.Begin(ctx, req("acme", "k", "{}", "evt_1"))
	if err != nil || stored != nil || c == nil || c.IDs()[0] != "evt_1" || c.TakenOver {
		t.Fatalf("first Begin: %v %v %v", c, stored, err)
	}
	if err := s.Complete(ctx, c, idempotency.Response{Status: 202, Location: "/x", Body: []byte(`{"id":"evt_1"}`)}); err != nil {
		t.Fatal(err)
	}
	c, stored, err = s.Begin(ctx, req("acme", "k", "{}", "evt_2"))
	if err != nil || c != nil || stored == nil || stored.Status != 202 || stored.Location != "/x" || string(stored.Body) != `{"id":"evt_1"}` {
		t.Fatalf("second Begin: %v %+v %v", c, stored, err)
	}
	if _, _, err := s.Begin(ctx, req("acme", "k", `{"other":1}`)); !errors.Is(err, idempotency.ErrMismatch) {
		t.Fatalf("another body: %v, want ErrMismatch", err)
	}
	other := req("acme", "k", "{}")
	other.Path = "/v1/subscriptions"
	if _, _, err := s.Begin(ctx, other); !errors.Is(err, idempotency.ErrMismatch) {
		t.Fatalf("another path: %v, want ErrMismatch", err)
	}
	// Another tenant's key of the same name is another record.
	if c, _, err := s.Begin(ctx, req("globex", "k", `{"other":1}`)); err != nil || c == nil {
		t.Fatalf("another tenant: %v %v", c, err)
	}
}

func TestReleaseLetsTheRetryRun(t *testing.T) {
	t.Parallel()
	s, _ := store(t, time.Minute, time.Second)
	ctx := context.Background()
	c, _, err := s.Begin(ctx, req("acme", "k", "{}", "evt_1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, c); err != nil {
		t.Fatal(err)
	}
	c, _, err = s.Begin(ctx, req("acme", "k", "{}", "evt_2"))
	if err != nil || c == nil || c.IDs()[0] != "evt_2" {
		t.Fatalf("after release: %v %v", c, err)
	}
}

// A claim whose request is still running makes a second request wait
// for its answer; after the wait it is ErrInProgress.
func TestConcurrentRequestWaitsForTheAnswer(t *testing.T) {
	t.Parallel()
	s, _ := store(t, time.Minute, 10*time.Second)
	ctx := context.Background()
	c, _, err := s.Begin(ctx, req("acme", "k", "{}", "evt_1"))
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *idempotency.Response, 1)
	go func() {
		_, stored, err := s.Begin(ctx, req("acme", "k", "{}", "evt_2"))
		if err != nil {
			t.Error(err)
		}
		got <- stored
	}()
	if err := s.Complete(ctx, c, idempotency.Response{Status: 202, Body: []byte("first")}); err != nil {
		t.Fatal(err)
	}
	if r := <-got; r == nil || string(r.Body) != "first" {
		t.Fatalf("the waiting request got %+v", r)
	}

	short, _ := store(t, time.Minute, 50*time.Millisecond)
	if _, _, err := short.Begin(ctx, req("acme", "k", "{}")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := short.Begin(ctx, req("acme", "k", "{}")); !errors.Is(err, idempotency.ErrInProgress) {
		t.Fatalf("%v, want ErrInProgress", err)
	}
}

// Of many concurrent Begins exactly one claims the key.
func TestOneClaimAmongConcurrentBegins(t *testing.T) {
	t.Parallel()
	s, _ := store(t, time.Minute, 10*time.Second)
	ctx := context.Background()
	var claims, replays atomic.Int32
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			c, stored, err := s.Begin(ctx, req("acme", "k", "{}"))
			switch {
			case err != nil:
				t.Error(err)
			case c != nil:
				claims.Add(1)
				if err := s.Complete(ctx, c, idempotency.Response{Status: 202, Body: []byte("x")}); err != nil {
					t.Error(err)
				}
			case stored != nil:
				replays.Add(1)
			}
		})
	}
	wg.Wait()
	if claims.Load() != 1 || replays.Load() != 31 {
		t.Fatalf("%d claims, %d replays; want 1 and 31", claims.Load(), replays.Load())
	}
}

// A claim whose replica died (no answer within its lease) is taken over
// by a retry, which runs with the ids the first run reserved; the dead
// run's late answer is refused.
func TestTakeoverKeepsTheReservedIDs(t *testing.T) {
	t.Parallel()
	s, _ := store(t, 100*time.Millisecond, 10*time.Second)
	ctx := context.Background()
	dead, _, err := s.Begin(ctx, req("acme", "k", "{}", "evt_first"))
	if err != nil {
		t.Fatal(err)
	}
	// The retry waits out the lease (it is shorter than the wait).
	c, _, err := s.Begin(ctx, req("acme", "k", "{}", "evt_second"))
	if err != nil || c == nil || !c.TakenOver || c.IDs()[0] != "evt_first" {
		t.Fatalf("retry: %+v %v; want a takeover with evt_first", c, err)
	}
	if err := s.Complete(ctx, dead, idempotency.Response{Status: 202, Body: []byte("late")}); err == nil {
		t.Fatal("the dead claim stored its answer over the takeover")
	}
	if err := s.Complete(ctx, c, idempotency.Response{Status: 202, Body: []byte("retry")}); err != nil {
		t.Fatal(err)
	}
	if _, stored, _ := s.Begin(ctx, req("acme", "k", "{}")); stored == nil || string(stored.Body) != "retry" {
		t.Fatalf("stored %+v", stored)
	}
}

func TestNotBound(t *testing.T) {
	t.Parallel()
	s := idempotency.New(nil, idempotency.Config{Lease: time.Minute, Wait: time.Second})
	if _, _, err := s.Begin(context.Background(), req("acme", "k", "{}")); !errors.Is(err, idempotency.ErrNotReady) {
		t.Fatalf("%v, want ErrNotReady", err)
	}
}

// A request waiting on a claim whose request then failed (released) runs
// the request itself.
func TestWaiterRunsWhenTheFirstFails(t *testing.T) {
	t.Parallel()
	s, _ := store(t, time.Minute, 10*time.Second)
	ctx := context.Background()
	first, _, err := s.Begin(ctx, req("acme", "k", "{}", "evt_1"))
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *idempotency.Claim, 1)
	go func() {
		c, stored, err := s.Begin(ctx, req("acme", "k", "{}", "evt_2"))
		if err != nil || stored != nil {
			t.Errorf("waiter: %v %v", stored, err)
		}
		got <- c
	}()
	if err := s.Release(ctx, first); err != nil {
		t.Fatal(err)
	}
	if c := <-got; c == nil || c.TakenOver || c.IDs()[0] != "evt_2" {
		t.Fatalf("waiter got %+v, want its own claim", c)
	}
}

// A record written before ids and answers were compressed (a rolling
// upgrade) still replays its answer, and a pending one still gives its
// reserved ids to the replica that takes it over.
func TestRecordsOfTheUncompressedFormatAreRead(t *testing.T) {
	t.Parallel()
	s, js := store(t, 50*time.Millisecond, time.Second)
	ctx := context.Background()
	kv, err := js.KeyValue(ctx, stream.IdempotencyBucket)
	if err != nil {
		t.Fatal(err)
	}
	keyOf := func(k string) string {
		sum := sha256.Sum256([]byte(k))
		return stream.IdempotencyKey("acme", hex.EncodeToString(sum[:]))
	}
	fp := idempotency.Fingerprint("POST", "/v1/events", []byte("{}"))
	done := fmt.Sprintf(`{"fingerprint":%q,"state":"done","created_at":"2026-12-01T00:00:00Z","status":202,"body":"{\"id\":\"evt_old\"}"}`, fp)
	if _, err := kv.Put(ctx, keyOf("old-done"), []byte(done)); err != nil {
		t.Fatal(err)
	}
	_, stored, err := s.Begin(ctx, req("acme", "old-done", "{}", "evt_new"))
	if err != nil || stored == nil || string(stored.Body) != `{"id":"evt_old"}` {
		t.Fatalf("old done record: %+v, %v", stored, err)
	}
	pending := fmt.Sprintf(`{"fingerprint":%q,"state":"pending","ids":["evt_a","evt_b"],"lease_until":"2026-01-01T00:00:00Z","created_at":"2026-01-01T00:00:00Z"}`, fp)
	if _, err := kv.Put(ctx, keyOf("old-pending"), []byte(pending)); err != nil {
		t.Fatal(err)
	}
	c, _, err := s.Begin(ctx, req("acme", "old-pending", "{}", "evt_new"))
	if err != nil || c == nil || !c.TakenOver || !slices.Equal(c.IDs(), []string{"evt_a", "evt_b"}) {
		t.Fatalf("old pending record: %+v, %v; want taken over with evt_a, evt_b", c, err)
	}
}

// The ids and answer of a 10,000-event batch with generated ids fit a KV
// value of the default 1 MB compressed; ids that cannot be compressed
// enough are ErrTooLarge before anything is claimed.
func TestLargeRecordsAreCompressedOrRefused(t *testing.T) {
	t.Parallel()
	s, js := store(t, time.Minute, time.Second)
	ctx := context.Background()
	const n = 10000
	ids := make([]string, n)
	var answer strings.Builder
	answer.WriteString(`{"events":[`)
	for i := range ids {
		ids[i] = "evt_01KBNZ7Q3M" + randomString("0123456789ABCDEFGHJKMNPQRSTVWXYZ", 16) // a ULID's 80 random bits
		if i > 0 {
			answer.WriteByte(',')
		}
		fmt.Fprintf(&answer, `{"id":%q,"duplicate":false}`, ids[i])
	}
	answer.WriteString("]}")
	c, _, err := s.Begin(ctx, req("acme", "big", "{}", ids...))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Complete(ctx, c, idempotency.Response{Status: 202, Body: []byte(answer.String())}); err != nil {
		t.Fatal(err)
	}
	_, stored, err := s.Begin(ctx, req("acme", "big", "{}", ids...))
	if err != nil || stored == nil || string(stored.Body) != answer.String() {
		t.Fatalf("the large answer: %v, %v bytes, want %d bytes back", err, stored != nil, answer.Len())
	}
	kv, err := js.KeyValue(ctx, stream.IdempotencyBucket)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("big"))
	e, err := kv.Get(ctx, stream.IdempotencyKey("acme", hex.EncodeToString(sum[:])))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("answer of %d events: %d bytes, stored in a record of %d bytes", n, answer.Len(), len(e.Value()))

	random := make([]string, n)
	for i := range random {
		random[i] = randomString("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-", 96)
	}
	if _, _, err := s.Begin(ctx, req("acme", "random", "{}", random...)); !errors.Is(err, idempotency.ErrTooLarge) {
		t.Fatalf("10,000 random 96-character ids: %v, want ErrTooLarge", err)
	}
	sum = sha256.Sum256([]byte("random"))
	if _, err := kv.Get(ctx, stream.IdempotencyKey("acme", hex.EncodeToString(sum[:]))); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("the refused request's key was claimed: %v", err)
	}
}

func randomString(alphabet string, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rand.IntN(len(alphabet))]
	}
	return string(b)
}
