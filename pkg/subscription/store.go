package subscription

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/hookline/hookline/pkg/stream"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// ErrNotFound is returned for a subscription that does not exist or was
// deleted.
var ErrNotFound = errors.New("subscription not found")

// ErrConflict is returned by Update when the record kept changing under it
// for maxUpdateTries attempts.
var ErrConflict = errors.New("subscription changed concurrently; retry")

const maxUpdateTries = 16

var (
	marshalOpts   = protojson.MarshalOptions{UseProtoNames: true}
	unmarshalOpts = protojson.UnmarshalOptions{DiscardUnknown: true}
)

// Store is the subscription registry's truth: the JetStream KV bucket
// stream.SubscriptionsBucket (created by stream.Ensure).
type Store struct {
	js jetstream.JetStream
	kv jetstream.KeyValue
	// origin is the bucket stream's identity (BucketState.Origin) as the
	// last LastRevision read it; 0 until then.
	origin atomic.Int64
	// last is the bucket's last revision as the last LastRevision read it.
	last atomic.Uint64
}

// NewStore binds the bucket; it fails when the bucket does not exist.
func NewStore(ctx context.Context, js jetstream.JetStream) (*Store, error) {
	kv, err := js.KeyValue(ctx, stream.SubscriptionsBucket)
	if err != nil {
		return nil, fmt.Errorf("bind kv bucket %s: %w", stream.SubscriptionsBucket, err)
	}
	return &Store{js: js, kv: kv}, nil
}

// Marshal is the stored and cached form of a subscription: protojson with
// proto names, without the one-time secret.
func Marshal(sub *hooklinev1.Subscription) ([]byte, error) {
	if sub.GetSecret() != "" {
		sub = proto.CloneOf(sub)
		sub.Secret = ""
	}
	return marshalOpts.Marshal(sub)
}

// Unmarshal parses the stored form; unknown fields are ignored so an older
// reader survives a newer writer.
func Unmarshal(b []byte) (*hooklinev1.Subscription, error) {
	sub := &hooklinev1.Subscription{}
	if err := unmarshalOpts.Unmarshal(b, sub); err != nil {
		return nil, fmt.Errorf("decode subscription: %w", err)
	}
	return sub, nil
}

func validateRecord(sub *hooklinev1.Subscription) error {
	if err := ValidateTenant(sub.GetTenant()); err != nil {
		return err
	}
	if err := ValidateID(sub.GetId()); err != nil {
		return err
	}
	if len(sub.GetEventTypes()) == 0 {
		return errors.New("event_types is empty")
	}
	for _, f := range sub.GetEventTypes() {
		if err := ValidateFilter(f); err != nil {
			return err
		}
	}
	return nil
}

// Create stores a new subscription. It fails (wrapping
// jetstream.ErrKeyExists) when the id is already taken in the tenant.
func (s *Store) Create(ctx context.Context, sub *hooklinev1.Subscription) (uint64, error) {
	if err := validateRecord(sub); err != nil {
		return 0, fmt.Errorf("create subscription: %w", err)
	}
	b, err := Marshal(sub)
	if err != nil {
		return 0, fmt.Errorf("create subscription: %w", err)
	}
	rev, err := s.kv.Create(ctx, stream.SubscriptionKey(sub.GetTenant(), sub.GetId()), b)
	if err != nil {
		return 0, fmt.Errorf("create subscription %s: %w", sub.GetId(), err)
	}
	return rev, nil
}

// GetTenant reads one subscription by its key. It returns ErrNotFound when
// it does not exist or was deleted.
func (s *Store) GetTenant(ctx context.Context, tenant, id string) (*hooklinev1.Subscription, uint64, error) {
	if ValidateTenant(tenant) != nil || ValidateID(id) != nil {
		return nil, 0, ErrNotFound
	}
	e, err := s.kv.Get(ctx, stream.SubscriptionKey(tenant, id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		// A direct get may be answered by a replica that has not applied
		// a just-acknowledged create (R3): "not found" is only believed
		// from the stream's leader.
		return s.leaderGet(ctx, tenant, id)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("get subscription %s: %w", id, err)
	}
	sub, err := decodeEntry(e)
	if errors.Is(err, ErrForeignRecord) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("subscription %s: %w", id, err)
	}
	return sub, e.Revision(), nil
}

// ErrForeignRecord is returned for a KV record whose body names another
// tenant or id than its key: written by hand or by a compromised writer,
// it is trusted for neither (lookups treat it as absent).
var ErrForeignRecord = errors.New("subscription record does not match its key")

// decodeEntry reads a KV entry's subscription and checks that it is the
// one its key names.
func decodeEntry(e jetstream.KeyValueEntry) (*hooklinev1.Subscription, error) {
	sub, err := Unmarshal(e.Value())
	if err != nil {
		return nil, err
	}
	tenant, id, _ := splitKey(e.Key())
	if sub.GetTenant() != tenant || sub.GetId() != id {
		return nil, fmt.Errorf("%w: key %s holds %s.%s", ErrForeignRecord, e.Key(), sub.GetTenant(), sub.GetId())
	}
	return sub, nil
}

// Get finds a subscription by id alone (any tenant). It returns ErrNotFound
// when it does not exist or was deleted.
func (s *Store) Get(ctx context.Context, id string) (*hooklinev1.Subscription, uint64, error) {
	if ValidateID(id) != nil {
		return nil, 0, ErrNotFound
	}
	entries, err := s.scan(ctx, "*."+id)
	if err != nil {
		return nil, 0, fmt.Errorf("get subscription %s: %w", id, err)
	}
	if len(entries) == 0 {
		return nil, 0, ErrNotFound
	}
	e := entries[0]
	sub, err := decodeEntry(e)
	if errors.Is(err, ErrForeignRecord) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("subscription %s: %w", id, err)
	}
	return sub, e.Revision(), nil
}

// Count is how many subscriptions tenant has (keys only, no values read).
// LastRevision is the newest revision of any subscription: no record can
// have a higher one.
func (s *Store) LastRevision(ctx context.Context) (uint64, error) {
	st, err := s.state(ctx)
	return st.Last, err
}

// state reads the bucket's state from its stream's leader and remembers
// its origin.
func (s *Store) state(ctx context.Context) (BucketState, error) {
	st, err := ReadBucketState(ctx, s.kv)
	if err == nil {
		s.origin.Store(st.Origin)
		s.last.Store(st.Last)
	}
	return st, err
}

// known is the bucket's origin and last revision as last read (origin 0:
// not read yet).
func (s *Store) known() (origin int64, last uint64) { return s.origin.Load(), s.last.Load() }

func (s *Store) Count(ctx context.Context, tenant string) (int, error) {
	if err := ValidateTenant(tenant); err != nil {
		return 0, err
	}
	entries, err := s.scan(ctx, tenant+".*", jetstream.MetaOnly())
	if err != nil {
		return 0, fmt.Errorf("count subscriptions: %w", err)
	}
	return len(entries), nil
}

// scan returns the current (not deleted) entries whose keys match filter,
// read through one watcher: keys and values in a single pass.
func (s *Store) scan(ctx context.Context, filter string, opts ...jetstream.WatchOpt) ([]jetstream.KeyValueEntry, error) {
	w, err := s.kv.Watch(ctx, filter, append([]jetstream.WatchOpt{jetstream.IgnoreDeletes()}, opts...)...)
	if err != nil {
		return nil, err
	}
	defer StopWatch(w)
	var out []jetstream.KeyValueEntry
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("kv watcher closed")
			}
			if e == nil {
				return out, nil
			}
			out = append(out, e)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Update applies fn to the latest version of the subscription and stores
// the result if nobody wrote in between (compare-and-set on the revision),
// re-reading and re-applying fn on a conflict. fn must not change the id or
// the tenant. It returns ErrNotFound, fn's error, or ErrConflict.
func (s *Store) Update(ctx context.Context, id string, fn func(*hooklinev1.Subscription) error) (*hooklinev1.Subscription, uint64, error) {
	for range maxUpdateTries {
		cur, rev, err := s.Get(ctx, id)
		if err != nil {
			return nil, 0, err
		}
		next := proto.CloneOf(cur)
		if err := fn(next); err != nil {
			return nil, 0, err
		}
		if next.GetId() != cur.GetId() || next.GetTenant() != cur.GetTenant() {
			return nil, 0, errors.New("update subscription: id and tenant cannot change")
		}
		if err := validateRecord(next); err != nil {
			return nil, 0, fmt.Errorf("update subscription: %w", err)
		}
		b, err := Marshal(next)
		if err != nil {
			return nil, 0, fmt.Errorf("update subscription: %w", err)
		}
		nrev, err := s.kv.Update(ctx, stream.SubscriptionKey(cur.GetTenant(), id), b, rev)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			return nil, 0, fmt.Errorf("update subscription %s: %w", id, err)
		}
		next.Secret = ""
		return next, nrev, nil
	}
	return nil, 0, ErrConflict
}

// Delete places a delete marker on the subscription (history is kept) and
// returns its tenant and the marker's revision, which the cache keeps as a
// tombstone. It returns ErrNotFound when there is nothing to delete.
func (s *Store) Delete(ctx context.Context, id string) (string, uint64, error) {
	for range maxUpdateTries {
		cur, rev, err := s.Get(ctx, id)
		if err != nil {
			return "", 0, err
		}
		// kv.Delete does not return the marker's revision; publish the
		// marker ourselves (the KV protocol, ADR-8: a message on the key's
		// subject with KV-Operation: DEL), guarded by the revision we read.
		m := nats.NewMsg(kvSubject(cur.GetTenant(), id))
		m.Header.Set("KV-Operation", "DEL")
		ack, err := s.js.PublishMsg(ctx, m, jetstream.WithExpectLastSequencePerSubject(rev))
		if isWrongLastSeq(err) {
			continue
		}
		if err != nil {
			return "", 0, fmt.Errorf("delete subscription %s: %w", id, err)
		}
		return cur.GetTenant(), ack.Sequence, nil
	}
	return "", 0, ErrConflict
}

func kvSubject(tenant, id string) string {
	return "$KV." + stream.SubscriptionsBucket + "." + stream.SubscriptionKey(tenant, id)
}

func isWrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// List returns the subscriptions of tenant ("" = every tenant), sorted by id.
func (s *Store) List(ctx context.Context, tenant string) ([]*hooklinev1.Subscription, error) {
	filter := ">"
	if tenant != "" {
		if err := ValidateTenant(tenant); err != nil {
			return nil, err
		}
		filter = tenant + ".*"
	}
	entries, err := s.scan(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("list subscriptions: %w", err)
	}
	subs := make([]*hooklinev1.Subscription, 0, len(entries))
	for _, e := range entries {
		sub, err := decodeEntry(e)
		if errors.Is(err, ErrForeignRecord) {
			continue // trusted for nothing, delivered to nobody
		}
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", e.Key(), err)
		}
		subs = append(subs, sub)
	}
	slices.SortFunc(subs, func(a, b *hooklinev1.Subscription) int {
		return strings.Compare(a.GetId(), b.GetId())
	})
	return subs, nil
}

// splitKey parses "<tenant>.<id>".
func splitKey(key string) (tenant, id string, ok bool) {
	tenant, id, ok = strings.Cut(key, ".")
	return tenant, id, ok && tenant != "" && id != "" && !strings.Contains(id, ".")
}

// ListPage returns up to limit subscriptions of tenant whose ids sort after
// after ("" = from the first), in id order, and next: the id to resume
// after for the following page ("" when this page is the last). Only the
// keys of the tenant are scanned; values are read for the page alone, so a
// page costs limit reads however many subscriptions the tenant has. A
// subscription deleted between the scan and its read is skipped: a page
// may then be shorter than limit (even empty) while more still follow.
func (s *Store) ListPage(ctx context.Context, tenant, after string, limit int) ([]*hooklinev1.Subscription, string, error) {
	if err := ValidateTenant(tenant); err != nil {
		return nil, "", err
	}
	if limit < 1 {
		return nil, "", errors.New("list subscriptions: limit must be at least 1")
	}
	entries, err := s.scan(ctx, tenant+".*", jetstream.MetaOnly())
	if err != nil {
		return nil, "", fmt.Errorf("list subscriptions: %w", err)
	}
	ids := make([]string, 0, len(entries))
	for _, e := range entries {
		if _, id, ok := splitKey(e.Key()); ok && id > after {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	next := ""
	if len(ids) > limit {
		ids = ids[:limit]
		next = ids[limit-1]
	}
	subs := make([]*hooklinev1.Subscription, 0, len(ids))
	for _, id := range ids {
		sub, _, err := s.GetTenant(ctx, tenant, id)
		if errors.Is(err, ErrNotFound) {
			continue // deleted since the scan, or a foreign record
		}
		if err != nil {
			return nil, "", fmt.Errorf("list subscriptions: %w", err)
		}
		subs = append(subs, sub)
	}
	return subs, next, nil
}

// leaderGet reads a subscription's latest record through the JetStream API
// rather than a direct get, so that the stream's leader answers: it has
// applied every acknowledged write, which a follower serving direct gets
// may not have yet.
func (s *Store) leaderGet(ctx context.Context, tenant, id string) (*hooklinev1.Subscription, uint64, error) {
	key := stream.SubscriptionKey(tenant, id)
	m, err := s.leaderMsgGet(ctx, map[string]any{"last_by_subj": "$KV." + stream.SubscriptionsBucket + "." + key})
	if err != nil {
		return nil, 0, fmt.Errorf("get subscription %s from the leader: %w", id, err)
	}
	if m == nil {
		return nil, 0, ErrNotFound
	}
	if len(m.Header) > 0 {
		h, err := nats.DecodeHeadersMsg(m.Header)
		if err == nil {
			if op := h.Get("KV-Operation"); op == "DEL" || op == "PURGE" {
				return nil, 0, ErrNotFound
			}
		}
	}
	sub, err := Unmarshal(m.Data)
	if err != nil {
		return nil, 0, fmt.Errorf("subscription %s: %w", id, err)
	}
	if sub.GetTenant() != tenant || sub.GetId() != id {
		return nil, 0, ErrNotFound // a foreign record, as decodeEntry
	}
	return sub, m.Sequence, nil
}

// leaderMsg is a message of the bucket's stream as STREAM.MSG.GET answers.
type leaderMsg struct {
	Subject  string `json:"subject"`
	Sequence uint64 `json:"seq"`
	Header   []byte `json:"hdrs"`
	Data     []byte `json:"data"`
}

// leaderMsgGet asks the bucket's stream for one message through the
// JetStream API (which the stream's leader answers, unlike a direct get);
// nil when there is none.
func (s *Store) leaderMsgGet(ctx context.Context, req map[string]any) (*leaderMsg, error) {
	body, _ := json.Marshal(req)
	prefix := s.js.Options().APIPrefix
	if prefix == "" {
		prefix = jetstream.DefaultAPIPrefix
	}
	msg, err := s.js.Conn().RequestWithContext(ctx, prefix+"STREAM.MSG.GET.KV_"+stream.SubscriptionsBucket, body)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Message *leaderMsg `json:"message"`
		Error   *struct {
			Code    int    `json:"code"`
			ErrCode int    `json:"err_code"`
			Desc    string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return nil, err
	}
	if resp.Error != nil {
		if resp.Error.Code == 404 {
			return nil, nil
		}
		return nil, fmt.Errorf("%s (%d)", resp.Error.Desc, resp.Error.ErrCode)
	}
	if resp.Message == nil {
		return nil, errors.New("empty answer")
	}
	return resp.Message, nil
}

// nextRevisionAfter is the revision of the bucket's first record after rev,
// read from the stream's leader (0: none).
func (s *Store) nextRevisionAfter(ctx context.Context, rev uint64) (uint64, error) {
	m, err := s.leaderMsgGet(ctx, map[string]any{"seq": rev + 1, "next_by_subj": "$KV." + stream.SubscriptionsBucket + ".>"})
	if err != nil {
		return 0, fmt.Errorf("subscription registry: next revision after %d: %w", rev, err)
	}
	if m == nil {
		return 0, nil
	}
	return m.Sequence, nil
}

// StopWatch stops a KV watch and drains what it still delivers until
// nats.go closes its channel. Stopped alone, a watch whose channel is full
// (a reader far behind) leaves nats.go's delivery goroutine blocked on the
// send forever, holding the lock its close needs.
func StopWatch(w jetstream.KeyWatcher) {
	_ = w.Stop()
	go func() {
		for range w.Updates() {
		}
	}()
}
