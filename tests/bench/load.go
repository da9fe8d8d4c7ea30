package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Tenant owns every event and subscription of a run.
const Tenant = "bench"

// eventID is the id of event n of a scenario.
func eventID(prefix string, n int) string { return fmt.Sprintf("evt_%s_%07d", prefix, n) }

// publishNATS publishes n events of eventType straight to
// events.<tenant>.<type> with js.PublishMsgAsync, as fast as the window of
// outstanding acks allows, each with its id as Nats-Msg-Id and its publish
// time in the payload. Every future is checked; a failed one is republished
// synchronously with the same id (deduplicated). It returns when every
// event is acknowledged.
func publishNATS(ctx context.Context, js jetstream.JetStream, eventType, prefix string, n, size int) error {
	return publishNATSKeyed(ctx, js, eventType, prefix, n, size, nil)
}

// publishNATSKeyed is publishNATS with the ordering key keyOf(i) on event
// i (none when keyOf is nil).
func publishNATSKeyed(ctx context.Context, js jetstream.JetStream, eventType, prefix string, n, size int, keyOf func(int) string) error {
	return publishNATSOf(ctx, js, Tenant, eventType, prefix, n, size, keyOf)
}

// publishNATSOf is publishNATSKeyed for another tenant.
func publishNATSOf(ctx context.Context, js jetstream.JetStream, tenant, eventType, prefix string, n, size int, keyOf func(int) string) error {
	return publishSubject(ctx, js, stream.EventSubject(tenant, eventType), tenant, prefix, n, size, keyOf)
}

// publishIngest is publishNATS to the producer's ingest subject,
// ingest.<tenant>.<type>, which stores the events through its group
// commit and answers as JetStream does.
func publishIngest(ctx context.Context, js jetstream.JetStream, eventType, prefix string, n, size int) error {
	return publishSubject(ctx, js, "ingest."+Tenant+"."+eventType, Tenant, prefix, n, size, nil)
}

// publishSubject publishes n events of tenant to subject (see publishNATS).
func publishSubject(ctx context.Context, js jetstream.JetStream, subject, tenant, prefix string, n, size int, keyOf func(int) string) error {
	futures := make([]jetstream.PubAckFuture, 0, n)
	for i := range n {
		m := nats.NewMsg(subject)
		m.Header.Set(stream.HeaderMsgID, stream.EventMsgID(tenant, eventID(prefix, i)))
		if keyOf != nil {
			m.Header.Set(stream.HeaderOrderingKey, keyOf(i))
		}
		m.Data = Payload(make([]byte, 0, size+32), time.Now().UnixNano(), i, size)
		for {
			f, err := js.PublishMsgAsync(m)
			if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				continue // the window was full for a while: try again
			}
			if err != nil {
				return fmt.Errorf("publish %s: %w", m.Subject, err)
			}
			futures = append(futures, f)
			break
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return ctx.Err()
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			if _, perr := publishSync(ctx, js, f.Msg()); perr != nil {
				return fmt.Errorf("republish after %v: %w", err, perr)
			}
		}
	}
	return nil
}

func publishSync(ctx context.Context, js jetstream.JetStream, m *nats.Msg) (*jetstream.PubAck, error) {
	backoff := 20 * time.Millisecond
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ack, err := js.PublishMsg(rctx, m)
		cancel()
		if err == nil {
			return ack, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
		}
		backoff = min(2*backoff, time.Second)
	}
}

// poster sends pre-encoded JSON bodies to the producer's API, retrying what
// the producer could not accept (the ids make a retry safe).
type poster struct {
	base   string
	client *http.Client
}

func newPoster(base string, conns int) *poster {
	return &poster{base: base, client: &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			IdleConnTimeout:     time.Minute,
			DisableCompression:  true,
		},
	}}
}

func (p *poster) close() { p.client.CloseIdleConnections() }

// post sends body to path until the producer answers 2xx; a 4xx other than
// 429 is an error at once (the bench sent something invalid).
func (p *poster) post(ctx context.Context, path string, body []byte) error {
	backoff := 20 * time.Millisecond
	for {
		status, text, err := p.once(ctx, path, body)
		switch {
		case err == nil && status >= 200 && status < 300:
			return nil
		case err == nil && status >= 400 && status < 500 && status != http.StatusTooManyRequests:
			return fmt.Errorf("POST %s: %d %s", path, status, text)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("POST %s: gave up: status %d, %v", path, status, err)
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
		}
		backoff = min(2*backoff, time.Second)
	}
}

func (p *poster) once(ctx context.Context, path string, body []byte) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 300 {
		return resp.StatusCode, string(bytes.TrimSpace(b)), nil
	}
	return resp.StatusCode, "", nil
}

// appendEvent appends one event of the API ({"id","tenant","type","data"})
// with a payload stamped now.
func appendEvent(dst []byte, id, eventType string, seq, size int) []byte {
	dst = append(dst, `{"id":"`...)
	dst = append(dst, id...)
	dst = append(dst, `","tenant":"`+Tenant+`","type":"`...)
	dst = append(dst, eventType...)
	dst = append(dst, `","data":`...)
	dst = Payload(dst, time.Now().UnixNano(), seq, size)
	return append(dst, '}')
}

// publishAPIBatch publishes n events through POST /v1/events/batch, batch
// events per request, conc requests at a time.
func publishAPIBatch(ctx context.Context, p *poster, eventType, prefix string, n, size, batch, conc int) error {
	next := atomic.Int64{}
	return runWorkers(ctx, conc, func(ctx context.Context) error {
		for {
			start := int(next.Add(int64(batch))) - batch
			if start >= n {
				return nil
			}
			end := min(start+batch, n)
			body := make([]byte, 0, (end-start)*(size+128)+16)
			body = append(body, `{"events":[`...)
			for i := start; i < end; i++ {
				if i > start {
					body = append(body, ',')
				}
				body = appendEvent(body, eventID(prefix, i), eventType, i, size)
			}
			body = append(body, "]}"...)
			if err := p.post(ctx, "/v1/events/batch", body); err != nil {
				return err
			}
		}
	})
}

// publishAPISingle publishes n events through POST /v1/events, conc
// requests at a time.
func publishAPISingle(ctx context.Context, p *poster, eventType, prefix string, n, size, conc int) error {
	next := atomic.Int64{}
	return runWorkers(ctx, conc, func(ctx context.Context) error {
		buf := make([]byte, 0, size+160)
		for {
			i := int(next.Add(1)) - 1
			if i >= n {
				return nil
			}
			buf = appendEvent(buf[:0], eventID(prefix, i), eventType, i, size)
			if err := p.post(ctx, "/v1/events", buf); err != nil {
				return err
			}
		}
	})
}

// runWorkers runs n copies of f and returns the first error (which cancels
// the others).
func runWorkers(ctx context.Context, n int, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg   sync.WaitGroup
		once sync.Once
		err  error
	)
	for range n {
		wg.Go(func() {
			if e := f(ctx); e != nil {
				once.Do(func() { err = e; cancel() })
			}
		})
	}
	wg.Wait()
	return err
}

// bareClient POSTs n requests to url, conc at a time, shaped like a
// Hookline delivery (the same body size and the Standard Webhooks headers,
// unsigned): the limit the pipeline is compared with. It returns when every
// request was answered.
func bareClient(ctx context.Context, url string, n, size, conc int) error {
	client := &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        conc,
			MaxIdleConnsPerHost: conc,
			IdleConnTimeout:     time.Minute,
			DisableCompression:  true,
		},
	}
	defer client.CloseIdleConnections()
	sig := "v1," + string(bytes.Repeat([]byte("A"), 44)) // a base64 HMAC-SHA256 is 44 characters
	next := atomic.Int64{}
	return runWorkers(ctx, conc, func(ctx context.Context) error {
		buf := make([]byte, 0, size+32)
		for {
			i := int(next.Add(1)) - 1
			if i >= n {
				return nil
			}
			buf = Payload(buf[:0], time.Now().UnixNano(), i, size)
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(buf))
			if err != nil {
				return err
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("User-Agent", "Hookline/bench")
			req.Header.Set("webhook-id", fmt.Sprintf("evt_limit_%07d", i))
			req.Header.Set("webhook-timestamp", fmt.Sprint(time.Now().Unix()))
			req.Header.Set("webhook-signature", sig)
			resp, err := client.Do(req)
			if err != nil {
				return fmt.Errorf("bare client: %w", err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("bare client: sink answered %d", resp.StatusCode)
			}
		}
	})
}

// paced calls send(i) for events i = 0, 1, … at rate per second for d,
// each at its due time (start + i/rate), catching up when late.
func paced(ctx context.Context, rate int, d time.Duration, send func(i int) error) (int, error) {
	total := int(float64(rate) * d.Seconds())
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	for i := 0; i < total; i++ {
		due := start.Add(time.Duration(i) * interval)
		if wait := time.Until(due); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return i, ctx.Err()
			}
		}
		if err := send(i); err != nil {
			return i, err
		}
	}
	return total, nil
}
