package subscription

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/pkg/stream"
)

// newMemStore starts a nats-server with the topology in memory and opens
// the subscription registry on it.
func newMemStore(t *testing.T) (jetstream.JetStream, *Store) {
	t.Helper()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	ctx := context.Background()
	if err := stream.Ensure(ctx, js, stream.Config{MemoryStorage: true}); err != nil {
		t.Fatal(err)
	}
	store, err := NewStore(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	return js, store
}
