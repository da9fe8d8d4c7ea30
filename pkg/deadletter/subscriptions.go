package deadletter

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/hookline/hookline/pkg/stream"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

// ErrNoRegistry is returned by CheckSubscriptions when the subscription KV
// bucket does not exist.
var ErrNoRegistry = errors.New("subscription registry (KV bucket " + stream.SubscriptionsBucket + ") not found")

// Problem is a subscription that a replay would deliver nowhere useful.
type Problem struct {
	Tenant         string
	SubscriptionID string
	// State is "deleted" or "disabled".
	State string
	// DisabledReason is the registry's reason for a disabled subscription.
	DisabledReason string
	// Entries is how many selected dead letters belong to it.
	Entries int
}

func (p Problem) String() string {
	s := fmt.Sprintf("subscription %s (tenant %s) is %s", p.SubscriptionID, p.Tenant, p.State)
	if p.DisabledReason != "" {
		s += " (" + p.DisabledReason + ")"
	}
	return fmt.Sprintf("%s: %d dead letter(s) selected", s, p.Entries)
}

// CheckSubscriptions reads the current record of every subscription the
// entries belong to from the registry (the KV bucket, the truth) and reports
// the deleted and disabled ones, ordered by tenant and id. It returns
// ErrNoRegistry when the bucket is missing.
func CheckSubscriptions(ctx context.Context, js jetstream.JetStream, entries []Entry) ([]Problem, error) {
	kv, err := js.KeyValue(ctx, stream.SubscriptionsBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, ErrNoRegistry
	}
	if err != nil {
		return nil, fmt.Errorf("open subscription registry %s: %w", stream.SubscriptionsBucket, err)
	}
	type key struct{ tenant, id string }
	counts := map[key]int{}
	for _, e := range entries {
		counts[key{e.Record.GetTenant(), e.Record.GetSubscriptionId()}]++
	}
	var problems []Problem
	for k, n := range counts {
		p := Problem{Tenant: k.tenant, SubscriptionID: k.id, Entries: n}
		v, err := kv.Get(ctx, stream.SubscriptionKey(k.tenant, k.id))
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			p.State = "deleted"
			problems = append(problems, p)
			continue
		case err != nil:
			return nil, fmt.Errorf("read subscription %s: %w", k.id, err)
		}
		var sub hooklinev1.Subscription
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(v.Value(), &sub); err != nil {
			return nil, fmt.Errorf("subscription %s: registry record is not a Subscription: %w", k.id, err)
		}
		if sub.GetDisabled() {
			p.State, p.DisabledReason = "disabled", sub.GetDisabledReason()
			problems = append(problems, p)
		}
	}
	sort.Slice(problems, func(i, j int) bool {
		if problems[i].Tenant != problems[j].Tenant {
			return problems[i].Tenant < problems[j].Tenant
		}
		return problems[i].SubscriptionID < problems[j].SubscriptionID
	})
	return problems, nil
}
