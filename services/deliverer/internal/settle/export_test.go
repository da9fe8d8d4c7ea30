package settle

import (
	"context"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// LoseAcks makes every publish of s succeed on the server but report an
// error, as a publish whose ack was lost to a timeout does.
func LoseAcks(s *Scheduler, err error) {
	real := s.publish
	s.publish = func(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
		if _, perr := real(ctx, m, opts...); perr != nil {
			return nil, perr
		}
		return nil, err
	}
}

// FailPublishes makes every publish of s fail without storing anything.
func FailPublishes(s *Scheduler, err error) {
	s.publish = func(context.Context, *nats.Msg, ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
		return nil, err
	}
}
