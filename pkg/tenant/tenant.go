// Package tenant holds the tenant records (delivery policy defaults and
// metadata) and the claims of subscription uids, in the JetStream KV
// bucket stream.TenantsBucket: Store reads and writes them (the
// producer), Cache keeps every tenant record in memory from a watch (the
// deliverer).
package tenant

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/subscription"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protojson"
)

// ErrNotFound is returned for a tenant without a record.
var ErrNotFound = errors.New("tenant has no record")

// ErrConflict is returned by Update when the record kept changing under it.
var ErrConflict = errors.New("tenant record changed concurrently; retry")

var (
	marshalOpts   = protojson.MarshalOptions{UseProtoNames: true}
	unmarshalOpts = protojson.UnmarshalOptions{DiscardUnknown: true}
)

// Store is the tenants bucket.
type Store struct {
	kv jetstream.KeyValue
}

// NewStore binds the bucket; it fails when the bucket does not exist.
func NewStore(ctx context.Context, js jetstream.JetStream) (*Store, error) {
	kv, err := js.KeyValue(ctx, stream.TenantsBucket)
	if err != nil {
		return nil, fmt.Errorf("bind kv bucket %s: %w", stream.TenantsBucket, err)
	}
	return &Store{kv: kv}, nil
}

// Get reads a tenant's record (ErrNotFound: none).
func (s *Store) Get(ctx context.Context, tenant string) (*hooklinev1.Tenant, error) {
	t, _, err := s.get(ctx, tenant)
	return t, err
}

func (s *Store) get(ctx context.Context, tenant string) (*hooklinev1.Tenant, uint64, error) {
	e, err := s.kv.Get(ctx, stream.TenantKey(tenant))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("get tenant %s: %w", tenant, err)
	}
	t, err := decode(e.Value(), tenant)
	if err != nil {
		return nil, 0, err
	}
	return t, e.Revision(), nil
}

func decode(b []byte, tenant string) (*hooklinev1.Tenant, error) {
	t := &hooklinev1.Tenant{}
	if err := unmarshalOpts.Unmarshal(b, t); err != nil {
		return nil, fmt.Errorf("decode tenant %s: %w", tenant, err)
	}
	if t.GetTenant() != tenant {
		return nil, fmt.Errorf("tenant record under %s names %q", tenant, t.GetTenant())
	}
	return t, nil
}

// Update applies change to tenant's record (a fresh one, with only the
// tenant set, when it has none) and stores it, retrying when the record
// changed meanwhile. An error of change is returned as it is.
func (s *Store) Update(ctx context.Context, tenant string, change func(*hooklinev1.Tenant) error) (*hooklinev1.Tenant, error) {
	for range 16 {
		t, rev, err := s.get(ctx, tenant)
		if errors.Is(err, ErrNotFound) {
			t = &hooklinev1.Tenant{Tenant: tenant}
		} else if err != nil {
			return nil, err
		}
		if err := change(t); err != nil {
			return nil, err
		}
		b, err := marshalOpts.Marshal(t)
		if err != nil {
			return nil, fmt.Errorf("encode tenant %s: %w", tenant, err)
		}
		if rev == 0 {
			_, err = s.kv.Create(ctx, stream.TenantKey(tenant), b)
		} else {
			_, err = s.kv.Update(ctx, stream.TenantKey(tenant), b, rev)
		}
		if isRace(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("store tenant %s: %w", tenant, err)
		}
		return t, nil
	}
	return nil, ErrConflict
}

func isRace(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) ||
		(errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence)
}

// ErrUIDTaken is returned by ClaimUID when another subscription holds the
// uid; Holder names it.
type ErrUIDTaken struct{ Holder string }

func (e *ErrUIDTaken) Error() string {
	return "uid is held by subscription " + e.Holder
}

// UIDHash is the hash a uid is claimed under (a uid may hold any
// printable character; a KV key may not).
func UIDHash(uid string) string {
	sum := sha256.Sum256([]byte(uid))
	return hex.EncodeToString(sum[:16])
}

// ClaimUID makes subscription id the holder of uid in tenant. A claim
// already held by id succeeds (a request run again); one held by a
// subscription that stale reports gone (a crash between claim and
// create, or between delete and release) is taken over; any other is an
// *ErrUIDTaken.
func (s *Store) ClaimUID(ctx context.Context, tenant, uid, id string, stale func(holder string) (bool, error)) error {
	key := stream.UIDKey(tenant, UIDHash(uid))
	for range 16 {
		_, err := s.kv.Create(ctx, key, []byte(id))
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("claim uid: %w", err)
		}
		e, err := s.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // released meanwhile
		}
		if err != nil {
			return fmt.Errorf("claim uid: %w", err)
		}
		holder := string(e.Value())
		if holder == id {
			return nil
		}
		gone, err := stale(holder)
		if err != nil {
			return fmt.Errorf("claim uid: %w", err)
		}
		if !gone {
			return &ErrUIDTaken{Holder: holder}
		}
		if _, err := s.kv.Update(ctx, key, []byte(id), e.Revision()); err == nil {
			return nil
		} else if !isRace(err) {
			return fmt.Errorf("claim uid: %w", err)
		}
	}
	return ErrConflict
}

// ReleaseUID drops the claim of uid in tenant when subscription id holds
// it (a claim of another holder is left alone).
func (s *Store) ReleaseUID(ctx context.Context, tenant, uid, id string) error {
	key := stream.UIDKey(tenant, UIDHash(uid))
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("release uid: %w", err)
	}
	if string(e.Value()) != id {
		return nil
	}
	if err := s.kv.Delete(ctx, key, jetstream.LastRevision(e.Revision())); err != nil && !isRace(err) {
		return fmt.Errorf("release uid: %w", err)
	}
	return nil
}

// Cache is every tenant record, kept current by a watch of the bucket:
// the deliverer reads a tenant's defaults on every task. A change reaches
// it within the watch's delivery (milliseconds); a tenant without a
// record has no defaults.
type Cache struct {
	kv    jetstream.KeyValue
	mu    sync.RWMutex
	m     map[string]*hooklinev1.Tenant
	ready chan struct{}
	once  sync.Once
}

// NewCache binds the bucket; Run fills the cache.
func NewCache(ctx context.Context, js jetstream.JetStream) (*Cache, error) {
	kv, err := js.KeyValue(ctx, stream.TenantsBucket)
	if err != nil {
		return nil, fmt.Errorf("bind kv bucket %s: %w", stream.TenantsBucket, err)
	}
	return &Cache{kv: kv, m: map[string]*hooklinev1.Tenant{}, ready: make(chan struct{})}, nil
}

// Run watches the tenant records until ctx ends (nil then).
func (c *Cache) Run(ctx context.Context) error {
	w, err := c.kv.Watch(ctx, stream.TenantKeys)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("watch tenants: %w", err)
	}
	defer subscription.StopWatch(w)
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return nil
			}
			if e == nil {
				c.once.Do(func() { close(c.ready) }) // every record replayed
				continue
			}
			c.apply(e)
		}
	}
}

func (c *Cache) apply(e jetstream.KeyValueEntry) {
	name := e.Key()[len("t."):]
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.Operation() != jetstream.KeyValuePut {
		delete(c.m, name)
		return
	}
	t, err := decode(e.Value(), name)
	if err != nil {
		delete(c.m, name) // a record written by hand that does not decode: no defaults
		return
	}
	c.m[name] = t
}

// Get is tenant's record (nil: none). It waits until the watch has
// replayed every record, or ctx ends (its error then).
func (c *Cache) Get(ctx context.Context, tenant string) (*hooklinev1.Tenant, error) {
	select {
	case <-c.ready:
	case <-ctx.Done():
		return nil, fmt.Errorf("tenant records not loaded yet: %w", ctx.Err())
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.m[tenant], nil
}

// Has reports whether the cache holds a record of tenant that check
// accepts (tests wait on it).
func (c *Cache) Has(tenant string, check func(*hooklinev1.Tenant) bool) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	t := c.m[tenant]
	return t != nil && check(t)
}
