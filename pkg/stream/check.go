package stream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// TopologyHint says how to create or update the topology; check errors end
// with it.
const TopologyHint = "create or update it as the NATS admin: `deliverer topology` " +
	"with HOOKLINE_NATS_USER=admin (k8s: the deliverer's init container), or set " +
	"HOOKLINE_TOPOLOGY=ensure where the service's NATS user may change streams (docs/operations.md, \"Topology\")"

// TopologyError lists what is missing from the topology or differs from
// what Ensure would make.
type TopologyError struct {
	Problems []string
}

func (e *TopologyError) Error() string {
	return "topology check failed: " + strings.Join(e.Problems, "; ") + "; " + TopologyHint
}

// Check reports, without changing anything, whether every stream, the KV
// bucket and both consumers exist as Ensure(c) would make them. Its error
// is a *TopologyError naming each problem when the topology is missing or
// differs, another error when NATS could not be asked. It needs stream and
// consumer info only.
func Check(ctx context.Context, js jetstream.JetStream, c Config) error {
	return check(ctx, js, c, true)
}

// CheckStreams is Check without the consumers: what the producer needs.
func CheckStreams(ctx context.Context, js jetstream.JetStream, c Config) error {
	return check(ctx, js, c, false)
}

func check(ctx context.Context, js jetstream.JetStream, c Config, consumers bool) error {
	if c.EventsMaxMsgSize == 0 {
		mp := js.Conn().MaxPayload()
		if mp <= 0 {
			return errors.New("check topology: not connected to NATS (no max_payload yet)")
		}
		c.EventsMaxMsgSize = EventsLimit(mp)
	}
	var problems []string
	for _, want := range StreamConfigs(c) {
		p, err := checkStream(ctx, js, want)
		if err != nil {
			return err
		}
		problems = append(problems, p...)
	}
	for _, kc := range KVConfigs(c) {
		p, err := checkKV(ctx, js, kc)
		if err != nil {
			return err
		}
		problems = append(problems, p...)
	}
	if consumers {
		ccs := ConsumerConfigs(c)
		for _, name := range []string{Events, Deliveries} {
			p, err := checkConsumer(ctx, js, name, ccs[name])
			if err != nil {
				return err
			}
			problems = append(problems, p...)
		}
	}
	if len(problems) > 0 {
		return &TopologyError{Problems: problems}
	}
	return nil
}

func checkStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig) ([]string, error) {
	s, err := js.Stream(ctx, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return []string{"stream " + want.Name + " is missing"}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("check stream %s: %w", want.Name, err)
	}
	got := s.CachedInfo().Config
	d := differences{what: "stream " + want.Name}
	d.check("subjects", strings.Join(sorted(got.Subjects), ","), strings.Join(sorted(want.Subjects), ","))
	d.check("retention", got.Retention, want.Retention)
	d.check("storage", got.Storage, want.Storage)
	d.check("replicas", got.Replicas, want.Replicas)
	d.check("max_age", got.MaxAge, want.MaxAge)
	d.check("discard", got.Discard, want.Discard)
	d.check("allow_msg_schedules", got.AllowMsgSchedules, want.AllowMsgSchedules)
	d.check("allow_atomic", got.AllowAtomicPublish, want.AllowAtomicPublish)
	if want.Duplicates > 0 {
		d.check("duplicate_window", got.Duplicates, want.Duplicates)
	}
	if want.MaxMsgSize != 0 {
		d.check("max_msg_size", got.MaxMsgSize, want.MaxMsgSize)
	}
	return d.problems, nil
}

func checkKV(ctx context.Context, js jetstream.JetStream, want jetstream.KeyValueConfig) ([]string, error) {
	name := "KV_" + want.Bucket
	s, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return []string{"kv bucket " + want.Bucket + " is missing"}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("check kv bucket %s: %w", want.Bucket, err)
	}
	got := s.CachedInfo().Config
	d := differences{what: "kv bucket " + want.Bucket}
	d.check("history", got.MaxMsgsPerSubject, int64(want.History))
	d.check("storage", got.Storage, want.Storage)
	d.check("replicas", got.Replicas, want.Replicas)
	d.check("allow_atomic", got.AllowAtomicPublish, AtomicBuckets[want.Bucket])
	if want.TTL > 0 {
		d.check("ttl", got.MaxAge, want.TTL)
	}
	return d.problems, nil
}

func checkConsumer(ctx context.Context, js jetstream.JetStream, streamName string, want jetstream.ConsumerConfig) ([]string, error) {
	what := "consumer " + streamName + "/" + want.Durable
	cons, err := js.Consumer(ctx, streamName, want.Durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		return []string{what + " is missing"}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("check %s: %w", what, err)
	}
	got := cons.CachedInfo().Config
	d := differences{what: what}
	d.check("filter_subject", got.FilterSubject, want.FilterSubject)
	d.check("ack_policy", got.AckPolicy, want.AckPolicy)
	d.check("ack_wait", got.AckWait, want.AckWait)
	d.check("max_deliver", got.MaxDeliver, want.MaxDeliver)
	d.check("max_ack_pending", got.MaxAckPending, want.MaxAckPending)
	return d.problems, nil
}

type differences struct {
	what     string
	problems []string
}

func (d *differences) check(field string, got, want any) {
	if got != want {
		d.problems = append(d.problems, fmt.Sprintf("%s has %s %v, want %v", d.what, field, got, want))
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
