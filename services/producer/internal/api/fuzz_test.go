package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/subscription"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/producer/internal/metrics"
	"github.com/hookline/hookline/services/producer/internal/publish"
	"go.uber.org/zap"
)

// recordingPublisher is a fake for the fuzz target only (a pure unit: the
// decoder and validation in front of the publisher).
type recordingPublisher struct {
	mu  sync.Mutex
	evs []publish.Event
}

func (p *recordingPublisher) Publish(_ context.Context, ev publish.Event) (publish.Result, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.evs = append(p.evs, ev)
	return publish.Result{ID: ev.ID}, nil
}

func (p *recordingPublisher) PublishBatch(ctx context.Context, evs []publish.Event) ([]publish.Result, error) {
	out := make([]publish.Result, len(evs))
	for i, ev := range evs {
		out[i], _ = p.Publish(ctx, ev)
	}
	return out, nil
}

func (p *recordingPublisher) PublishTest(context.Context, *hooklinev1.Subscription) (string, error) {
	return "", nil
}

func (p *recordingPublisher) MaxData() int64 { return 1 << 20 }

func (p *recordingPublisher) take() []publish.Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	evs := p.evs
	p.evs = nil
	return evs
}

// FuzzEventDecoder feeds arbitrary bodies to POST /v1/events and
// /v1/events/batch: the answer is never a 5xx or a panic, always JSON, and
// whatever is accepted is a valid event — tenant and type that make a NATS
// subject, JSON data within the limit, an id of allowed characters. The
// seed corpus is in testdata/fuzz/FuzzEventDecoder.
func FuzzEventDecoder(f *testing.F) {
	for _, s := range []string{
		`{"tenant":"acme","type":"order.created","data":{"id":1}}`,
		`{"tenant":"acme","type":"order.created","data":null}`,
		`{"tenant":"a.b","type":"x","data":1}`,
		`{"tenant":"acme","type":"order.>","data":1}`,
		`{"tenant":"acme","type":"a","data":1,"id":"evt 1"}`,
		`{"tenant":"acme","type":"a","data":1,"occurred_at":"yesterday"}`,
		`{"tenant":"acme","type":"a","data":1,"extra":true}`,
		`{"events":[{"tenant":"acme","type":"a","data":[1,2]}]}`,
		`[]`, `{}`, `{"tenant":`, `{"tenant":"acme","type":"a","data":1}{}`,
	} {
		f.Add(s)
	}
	pub := &recordingPublisher{}
	a := New(Deps{
		Publisher: pub, Metrics: metrics.New(), Log: zap.NewNop(), Ready: func() bool { return true },
		MaxEventBytes: 4096, MaxBatchBytes: 16384, MaxBatch: 8,
	})
	f.Fuzz(func(t *testing.T, body string) {
		for _, path := range []string{"/v1/events", "/v1/events/batch"} {
			req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			a.ServeHTTP(rec, req)
			switch rec.Code {
			case http.StatusAccepted, http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
			default:
				t.Fatalf("%s %q: status %d: %s", path, body, rec.Code, rec.Body)
			}
			if !json.Valid(rec.Body.Bytes()) {
				t.Fatalf("%s: the answer is not JSON: %q", path, rec.Body)
			}
			evs := pub.take()
			if rec.Code != http.StatusAccepted && len(evs) > 0 {
				t.Fatalf("%s answered %d but published %d events", path, rec.Code, len(evs))
			}
			for _, ev := range evs {
				if subscription.ValidateTenant(ev.Tenant) != nil || subscription.ValidateEventType(ev.Type) != nil {
					t.Fatalf("accepted tenant %q type %q", ev.Tenant, ev.Type)
				}
				if tn, ty, err := stream.ParseEventSubject(stream.EventSubject(ev.Tenant, ev.Type)); err != nil || tn != ev.Tenant || ty != ev.Type {
					t.Fatalf("subject of %q/%q does not parse back: %q %q %v", ev.Tenant, ev.Type, tn, ty, err)
				}
				if !json.Valid(ev.Data) || len(ev.Data) > 4096 || string(ev.Data) == "null" {
					t.Fatalf("accepted data %q", ev.Data)
				}
				if stream.ValidateEventID(ev.ID) != nil || ev.ID == "" {
					t.Fatalf("accepted id %q", ev.ID)
				}
			}
		}
	})
}
