package portal

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/stream"
)

// revocations is the KV bucket stream.PortalRevocationsBucket:
//
//	s.<tenant>.<session id>  a revoked session (keyed by tenant too, so that
//	                         one tenant's admin cannot revoke another's session
//	                         by its id)
//	t.<tenant>      every session of the tenant issued up to this time (unix ms)
//
// Entries expire a little after the longest session they can revoke. The
// bucket is NATS' (replicated, the registry's durability), not Redis',
// which is a cache: flushing Redis must not bring a revoked session back.
type revocations struct {
	js jetstream.JetStream
	mu sync.Mutex
	kv jetstream.KeyValue
}

func (r *revocations) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.kv != nil {
		return r.kv, nil
	}
	kv, err := r.js.KeyValue(ctx, stream.PortalRevocationsBucket)
	if err != nil {
		return nil, fmt.Errorf("portal revocations bucket: %w", err)
	}
	r.kv = kv
	return kv, nil
}

func sessionKey(tenant, id string) string { return "s." + tenant + "." + id }
func tenantKey(tenant string) string      { return "t." + tenant }

// revoke records one session as revoked.
func (r *revocations) revoke(ctx context.Context, tenant, id string) error {
	kv, err := r.bucket(ctx)
	if err != nil {
		return err
	}
	_, err = kv.Put(ctx, sessionKey(tenant, id), nil)
	return err
}

// revokeAll records every session of tenant issued up to atMs as revoked.
func (r *revocations) revokeAll(ctx context.Context, tenant string, atMs int64) error {
	kv, err := r.bucket(ctx)
	if err != nil {
		return err
	}
	_, err = kv.Put(ctx, tenantKey(tenant), []byte(strconv.FormatInt(atMs, 10)))
	return err
}

// revoked reports whether c's session was revoked, alone or with its
// tenant's. An error means "unknown": the caller refuses the request.
func (r *revocations) revoked(ctx context.Context, c Claims) (bool, error) {
	kv, err := r.bucket(ctx)
	if err != nil {
		return false, err
	}
	if _, err := kv.Get(ctx, sessionKey(c.Tenant, c.ID)); err == nil {
		return true, nil
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, err
	}
	e, err := kv.Get(ctx, tenantKey(c.Tenant))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	at, err := strconv.ParseInt(string(e.Value()), 10, 64)
	if err != nil {
		return true, nil // unreadable: take it as revoked
	}
	return c.IssuedAt <= at, nil
}
