package subscription

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hookline/hookline/pkg/stream"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A tenant's list read for a lookup that needs revision need (ListAt) must
// hold every change up to need. The watch List reads through is a
// one-replica consumer that an R3 cluster may place on a follower that has
// not applied the newest writes yet, and nothing in its answer says how far
// that follower is. So ListAt asks for the last record of each of the
// tenant's keys with one direct get (multi_last), which any replica may
// answer, and believes it only when the answer says the replica held need:
// its end-of-batch header carries the stream's last sequence the replica
// read it at (Nats-UpTo-Sequence). A replica behind need is asked again
// (the lag is milliseconds); past listRetries, and for what a direct get
// cannot answer (no record at all, which a lagging replica also says; more
// keys than a multi_last may return), the stream's leader is asked through
// the JetStream API, record by record.

// listRetries is how many times a direct get answered by a replica behind
// the needed revision is repeated (waits of 1, 2, 4, … ms) before the
// leader is asked.
const listRetries = 6

// directTimeout bounds one direct get when the caller's context has no
// deadline.
const directTimeout = 5 * time.Second

// errReplicaBehind: the replica that answered a direct get had not applied
// the revision the caller needs.
var errReplicaBehind = errors.New("replica behind the needed revision")

// errNoDirectAnswer: the direct get cannot answer (no results, too many
// keys, or no direct get on the stream).
var errNoDirectAnswer = errors.New("no direct answer")

// ListAt returns the subscriptions of tenant as of revision need at least
// (every change up to need included), sorted by id; need 0 is List.
func (s *Store) ListAt(ctx context.Context, tenant string, need uint64) ([]*hooklinev1.Subscription, error) {
	if need == 0 {
		return s.List(ctx, tenant)
	}
	if err := ValidateTenant(tenant); err != nil {
		return nil, err
	}
	wait := time.Millisecond
	capped := false
	for try := 0; ; try++ {
		subs, upTo, err := s.directTenant(ctx, tenant)
		if err == nil && upTo < need && !capped {
			// No replica reaches a revision beyond the registry's last
			// (a memo that counts in a bucket since recreated): the
			// leader's last revision is as current as any view can be.
			capped = true
			if last, lerr := s.leaderLast(ctx); lerr == nil {
				need = min(need, last)
			}
		}
		if err == nil && upTo < need {
			err = fmt.Errorf("%w: %d < %d", errReplicaBehind, upTo, need)
		}
		switch {
		case err == nil:
			return subs, nil
		case errors.Is(err, errReplicaBehind) && try < listRetries:
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(wait):
			}
			wait *= 2
			continue
		case errors.Is(err, errReplicaBehind), errors.Is(err, errNoDirectAnswer):
			return s.leaderTenant(ctx, tenant)
		default:
			return nil, fmt.Errorf("list subscriptions: %w", err)
		}
	}
}

// directSubject is where the bucket's stream answers direct gets; a
// Store bound to another bucket (a test's stand-in for a lagging replica)
// asks that one.
func (s *Store) directSubject() string {
	prefix := s.js.Options().APIPrefix
	if prefix == "" {
		prefix = jetstream.DefaultAPIPrefix
	}
	return prefix + "DIRECT.GET.KV_" + s.kv.Bucket()
}

// directTenant reads the last record of each of tenant's keys with one
// direct get; upTo is the stream's last sequence on the replica that
// answered, when it read them.
func (s *Store) directTenant(ctx context.Context, tenant string) (subs []*hooklinev1.Subscription, upTo uint64, err error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, directTimeout)
		defer cancel()
	}
	nc := s.js.Conn()
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, 0, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	prefix := "$KV." + s.kv.Bucket() + "."
	body, _ := json.Marshal(map[string]any{"multi_last": []string{prefix + tenant + ".*"}})
	if err := nc.PublishRequest(s.directSubject(), inbox, body); err != nil {
		return nil, 0, err
	}
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return nil, 0, err
		}
		if status := m.Header.Get("Status"); status != "" {
			switch status {
			case "204": // end of the batch
				upTo, err := strconv.ParseUint(m.Header.Get("Nats-UpTo-Sequence"), 10, 64)
				if err != nil {
					return nil, 0, errNoDirectAnswer
				}
				slices.SortFunc(subs, func(a, b *hooklinev1.Subscription) int {
					return strings.Compare(a.GetId(), b.GetId())
				})
				return subs, upTo, nil
			case "503": // no responders: the stream has no direct get
				return nil, 0, errNoDirectAnswer
			default: // 404 no results (also a lagging replica's), 413 too many keys, 408
				return nil, 0, fmt.Errorf("%w: %s %s", errNoDirectAnswer, status, m.Header.Get("Description"))
			}
		}
		rec, ok, err := recordOf(strings.TrimPrefix(m.Header.Get("Nats-Subject"), prefix), m.Header, m.Data)
		if err != nil {
			return nil, 0, err
		}
		if ok {
			subs = append(subs, rec)
		}
	}
}

// leaderTenant reads tenant's records from the stream's leader, one
// request per stored record of the tenant (history included): the last
// resort of ListAt.
func (s *Store) leaderTenant(ctx context.Context, tenant string) ([]*hooklinev1.Subscription, error) {
	prefix := "$KV." + stream.SubscriptionsBucket + "."
	last := map[string]*leaderMsg{}
	for seq := uint64(0); ; {
		m, subj, err := s.leaderNext(ctx, seq, prefix+tenant+".*")
		if err != nil {
			return nil, fmt.Errorf("list subscriptions from the leader: %w", err)
		}
		if m == nil {
			break
		}
		last[subj] = m
		seq = m.Sequence + 1
	}
	var subs []*hooklinev1.Subscription
	for subj, m := range last {
		var h nats.Header
		if len(m.Header) > 0 {
			if h, _ = nats.DecodeHeadersMsg(m.Header); h == nil {
				h = nats.Header{}
			}
		}
		sub, ok, err := recordOf(strings.TrimPrefix(subj, prefix), h, m.Data)
		if err != nil {
			return nil, err
		}
		if ok {
			subs = append(subs, sub)
		}
	}
	slices.SortFunc(subs, func(a, b *hooklinev1.Subscription) int {
		return strings.Compare(a.GetId(), b.GetId())
	})
	return subs, nil
}

// leaderNext is the leader's first record at or after seq on filter, and
// its subject (nil: none).
func (s *Store) leaderNext(ctx context.Context, seq uint64, filter string) (*leaderMsg, string, error) {
	m, err := s.leaderMsgGet(ctx, map[string]any{"seq": max(seq, 1), "next_by_subj": filter})
	if err != nil || m == nil {
		return nil, "", err
	}
	return m, m.Subject, nil
}

// recordOf reads one KV record of key (<tenant>.<id>): ok is false for a
// delete or purge marker and for a record that names another tenant or id
// than its key (trusted for nothing, as decodeEntry).
func recordOf(key string, h nats.Header, data []byte) (*hooklinev1.Subscription, bool, error) {
	if op := h.Get("KV-Operation"); op == "DEL" || op == "PURGE" {
		return nil, false, nil
	}
	tenant, id, ok := splitKey(key)
	if !ok {
		return nil, false, nil
	}
	sub, err := Unmarshal(data)
	if err != nil {
		return nil, false, fmt.Errorf("key %s: %w", key, err)
	}
	if sub.GetTenant() != tenant || sub.GetId() != id {
		return nil, false, nil
	}
	return sub, true, nil
}

// leaderLast is the bucket stream's last sequence, from a stream info (which
// the stream's leader answers).
func (s *Store) leaderLast(ctx context.Context) (uint64, error) {
	st, err := s.js.Stream(ctx, "KV_"+stream.SubscriptionsBucket)
	if err != nil {
		return 0, err
	}
	return st.CachedInfo().State.LastSeq, nil
}
