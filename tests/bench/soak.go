package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/tests/harness"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// SoakConfig sizes a soak.
type SoakConfig struct {
	Duration time.Duration `json:"duration_ns"`
	// InFlight is how many delivery tasks are kept outstanding: published
	// (as events × subscriptions) and not yet answered 200.
	InFlight      int           `json:"in_flight"`
	Subscriptions int           `json:"subscriptions"`
	Sample        time.Duration `json:"sample_ns"`
	// EndpointDelay is how long the sink takes to answer; FailPermille of the
	// events are answered 500 on their first attempt (scheduled retries).
	EndpointDelay time.Duration `json:"endpoint_delay_ns"`
	FailPermille  uint32        `json:"fail_permille"`
	Sync          string        `json:"sync"`
	Bench         Config        `json:"bench"`
}

// SoakDefaults: ten minutes, 10,000 tasks in flight over ten endpoints that
// answer in 20 ms, 2 % of first attempts failing.
var SoakDefaults = SoakConfig{
	Duration:      10 * time.Minute,
	InFlight:      10000,
	Subscriptions: 10,
	Sample:        10 * time.Second,
	EndpointDelay: 20 * time.Millisecond,
	FailPermille:  20,
	Sync:          SyncAlways,
}

// SoakSample is one reading.
type SoakSample struct {
	Seconds float64 `json:"seconds"`
	// RSS and HWM of the deliverer (bytes); HeapInuse and Goroutines from
	// its /metrics.
	RSS        int64   `json:"rss_bytes"`
	HWM        int64   `json:"hwm_bytes"`
	HeapInuse  float64 `json:"heap_inuse_bytes"`
	Goroutines float64 `json:"goroutines"`
	// Outstanding tasks (published × subscriptions − delivered) and the
	// deliver consumer's lag (num_pending + num_ack_pending).
	Outstanding int    `json:"outstanding"`
	Lag         uint64 `json:"consumer_lag"`
	Pending     uint64 `json:"num_pending"`
	AckPending  int    `json:"num_ack_pending"`
	// StreamMsgs is what DELIVERIES holds (tasks and scheduled retries).
	StreamMsgs uint64 `json:"deliveries_msgs"`
	Delivered  int    `json:"delivered"`
	// Rate is deliveries/s since the previous sample.
	Rate float64 `json:"deliveries_per_sec"`
}

// SoakReport is a whole soak.
type SoakReport struct {
	Started  time.Time    `json:"started"`
	Machine  Machine      `json:"machine"`
	Versions Versions     `json:"versions"`
	Config   SoakConfig   `json:"config"`
	Samples  []SoakSample `json:"samples"`
	// Summary over the run.
	PeakRSS int64 `json:"peak_rss_bytes"`
	// GrowthMiBPerMin is the slope of RSS over the second half (least
	// squares): flat is about zero.
	GrowthMiBPerMin float64  `json:"growth_mib_per_min"`
	Delivered       int      `json:"delivered"`
	Duplicates      int      `json:"duplicates"`
	Refused         int      `json:"refused_publishes"`
	Errors          []string `json:"errors,omitempty"`
	Files           []string `json:"files,omitempty"`
}

// Soak keeps InFlight tasks outstanding for Duration and samples the
// deliverer's memory every Sample.
func Soak(tb testing.TB, sc SoakConfig, out string) *SoakReport {
	tb.Helper()
	cfg := sc.Bench.WithDefaults()
	rep := &SoakReport{Started: time.Now(), Machine: ReadMachine(), Config: sc}
	bins := harness.Build(tb)
	rep.Versions = ReadVersions(map[string]string{ProcNATS: bins.NATSServer, ProcDeliverer: bins.Deliverer})
	r := startRig(tb, cfg, sc.Sync)
	var eps []*SinkEndpoint
	for i := range sc.Subscriptions {
		name := fmt.Sprintf("soak-%d", i)
		r.subscribe("soak.ev", name)
		ep := r.sink.Endpoint(name)
		eps = append(eps, ep)
	}
	ctx := context.Background()
	if err := publishNATS(ctx, r.js, "soak.ev", r.prefix+"_soak_warm", 1, cfg.PayloadBytes); err != nil {
		tb.Fatal(err)
	}
	for _, ep := range eps {
		if _, err := ep.AwaitDistinct(ctx, 1, time.Minute); err != nil {
			tb.Fatal(err)
		}
		ep.Reset()
		ep.SetBehavior(sc.EndpointDelay, sc.FailPermille)
	}
	delivered := func() int {
		n := 0
		for _, ep := range eps {
			n += ep.Distinct()
		}
		return n
	}
	deliverer := r.stack.Deliverers[0]
	pid := deliverer.Pid()
	cons, err := r.js.Consumer(ctx, stream.Deliveries, stream.DeliverConsumer)
	if err != nil {
		tb.Fatal(err)
	}
	deliveries, err := r.js.Stream(ctx, stream.Deliveries)
	if err != nil {
		tb.Fatal(err)
	}
	// A publish that JetStream refuses is counted and its task never
	// expected.
	var refused atomic.Int64
	js, err := jetstream.New(r.js.Conn(), jetstream.WithPublishAsyncMaxPending(4096),
		jetstream.WithPublishAsyncErrHandler(func(jetstream.JetStream, *nats.Msg, error) { refused.Add(1) }))
	if err != nil {
		tb.Fatal(err)
	}
	subject := stream.EventSubject(Tenant, "soak.ev")
	published := 0
	start := time.Now()
	nextSample := start
	prevDelivered, prevAt := 0, start
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for time.Since(start) < sc.Duration {
		<-tick.C
		d := delivered()
		outstanding := (published-int(refused.Load()))*sc.Subscriptions - d
		// Top up in events; the async window bounds one top-up.
		for n := (sc.InFlight - outstanding) / sc.Subscriptions; n > 0; n-- {
			m := nats.NewMsg(subject)
			m.Header.Set(stream.HeaderMsgID, stream.EventMsgID(Tenant, eventID(r.prefix+"_soak", published)))
			m.Data = Payload(make([]byte, 0, cfg.PayloadBytes+32), time.Now().UnixNano(), published, cfg.PayloadBytes)
			if _, err := js.PublishMsgAsync(m); err != nil {
				break // the window is full: next tick
			}
			published++
		}
		if now := time.Now(); !now.Before(nextSample) {
			nextSample = nextSample.Add(sc.Sample)
			s := SoakSample{Seconds: now.Sub(start).Seconds(), Delivered: d, Outstanding: outstanding,
				Rate: float64(d-prevDelivered) / now.Sub(prevAt).Seconds()}
			prevDelivered, prevAt = d, now
			if m, err := ReadMemory(pid); err == nil {
				s.RSS, s.HWM = m.RSS, m.Peak
			} else {
				rep.Errors = append(rep.Errors, fmt.Sprintf("%.0fs: memory: %v", s.Seconds, err))
			}
			mctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if mm, err := deliverer.Metrics(mctx); err == nil {
				s.HeapInuse, s.Goroutines = mm["go_memstats_heap_inuse_bytes"], mm["go_goroutines"]
			}
			if ci, err := cons.Info(mctx); err == nil {
				s.Lag = ci.NumPending + uint64(ci.NumAckPending)
				s.Pending, s.AckPending = ci.NumPending, ci.NumAckPending
			}
			if si, err := deliveries.Info(mctx); err == nil {
				s.StreamMsgs = si.State.Msgs
			}
			cancel()
			rep.Samples = append(rep.Samples, s)
			fmt.Fprintf(os.Stderr, "soak %4.0fs: deliverer RSS %6.1f MiB, heap %6.1f MiB, goroutines %4.0f, outstanding %5d, pending %5d + ack pending %5d, stream %5d, %6.0f deliveries/s\n",
				s.Seconds, mib(s.RSS), s.HeapInuse/(1<<20), s.Goroutines, s.Outstanding, s.Pending, s.AckPending, s.StreamMsgs, s.Rate)
		}
	}
	for _, ep := range eps {
		st := ep.Stats()
		rep.Delivered += st.Distinct
		rep.Duplicates += st.Duplicates
	}
	rep.Refused = int(refused.Load())
	if m, err := ReadMemory(pid); err == nil {
		rep.PeakRSS = m.Peak
	}
	rep.GrowthMiBPerMin = growth(rep.Samples)
	stamp := rep.Started.Format("20060102-150405")
	if b, err := json.MarshalIndent(rep, "", "  "); err == nil {
		path := filepath.Join(out, "soak-"+stamp+".json")
		if err := os.MkdirAll(out, 0o755); err == nil && os.WriteFile(path, append(b, '\n'), 0o644) == nil {
			rep.Files = append(rep.Files, path)
		}
	}
	path := filepath.Join(out, "soak-"+stamp+".png")
	if err := WritePNG(path, rep.Chart()); err != nil {
		tb.Errorf("soak chart: %v", err)
	} else {
		rep.Files = append(rep.Files, path)
	}
	return rep
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// growth is the least-squares slope of RSS (MiB per minute) over the second
// half of the samples.
func growth(samples []SoakSample) float64 {
	half := samples[len(samples)/2:]
	if len(half) < 2 {
		return 0
	}
	var sx, sy, sxx, sxy float64
	for _, s := range half {
		x, y := s.Seconds/60, mib(s.RSS)
		sx += x
		sy += y
		sxx += x * x
		sxy += x * y
	}
	n := float64(len(half))
	den := n*sxx - sx*sx
	if den == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / den
}

// WriteTable prints the samples and the summary.
func (r *SoakReport) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "\nHookline soak — %s\n", r.Started.Format(time.RFC3339))
	fmt.Fprintf(w, "machine: %d cores, %s; load average at start %s\n", r.Machine.Cores, r.Machine.CPUModel, r.Machine.LoadStart)
	fmt.Fprintf(w, "go: %s · nats-server %s · %s\n", r.Versions.Go, r.Versions.Modules["github.com/nats-io/nats-server/v2"], SyncLabel(r.Config.Sync))
	fmt.Fprintf(w, "%d tasks in flight over %d subscriptions, endpoint answers in %s, %d‰ of first attempts fail, %s\n\n",
		r.Config.InFlight, r.Config.Subscriptions, r.Config.EndpointDelay, r.Config.FailPermille, r.Config.Duration)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "t s\tRSS MiB\theap MiB\tgoroutines\toutstanding\tpending\tack pending\tstream msgs\tdeliv/s\t")
	for _, s := range r.Samples {
		fmt.Fprintf(tw, "%.0f\t%.1f\t%.1f\t%.0f\t%d\t%d\t%d\t%d\t%.0f\t\n", s.Seconds, mib(s.RSS), s.HeapInuse/(1<<20), s.Goroutines,
			s.Outstanding, s.Pending, s.AckPending, s.StreamMsgs, s.Rate)
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "\ndeliverer peak RSS %.1f MiB; RSS slope over the second half %+.2f MiB/min; %d delivered, %d duplicates\n",
		mib(r.PeakRSS), r.GrowthMiBPerMin, r.Delivered, r.Duplicates)
	for _, e := range r.Errors {
		fmt.Fprintln(w, "error:", e)
	}
	for _, f := range r.Files {
		fmt.Fprintln(w, "wrote", f)
	}
}

// Chart draws deliverer RSS (and Go heap in use) over time.
func (r *SoakReport) Chart() *image.RGBA {
	const w, h, left, right, top, bottom = 1200, 600, 110, 30, 110, 60
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Bounds(), image.NewUniform(color.White), image.Point{}, draw.Src)
	drawText(img, 20, 16, "HOOKLINE SOAK: DELIVERER MEMORY OVER TIME", textScale+1, colText)
	drawText(img, 20, 50, fmt.Sprintf("%d tasks in flight · %d subscriptions · peak RSS %.1f MiB · slope %+.2f MiB/min",
		r.Config.InFlight, r.Config.Subscriptions, mib(r.PeakRSS), r.GrowthMiBPerMin), textScale, colNote)
	drawText(img, 20, 74, "blue: RSS · orange: go heap in use", textScale, colNote)
	maxY, maxX := 1.0, 1.0
	for _, s := range r.Samples {
		maxY = max(maxY, mib(s.RSS), s.HeapInuse/(1<<20))
		maxX = max(maxX, s.Seconds)
	}
	maxY *= 1.1
	pw, ph := w-left-right, h-top-bottom
	fill(img, left, top, 1, ph, colText)
	fill(img, left, top+ph, pw, 1, colText)
	for i := 0; i <= 4; i++ {
		v := maxY * float64(i) / 4
		y := top + ph - int(float64(ph)*float64(i)/4)
		fill(img, left+1, y, pw, 1, colRule)
		label := fmt.Sprintf("%.0f MIB", v)
		drawText(img, left-8-textWidth(label, textScale), y-7, label, textScale, colNote)
		secs := maxX * float64(i) / 4
		x := left + int(float64(pw)*float64(i)/4)
		drawText(img, x-20, top+ph+12, fmt.Sprintf("%.0f S", secs), textScale, colNote)
	}
	plot := func(val func(SoakSample) float64, c color.RGBA) {
		px, py := -1, -1
		for _, s := range r.Samples {
			x := left + int(float64(pw)*s.Seconds/maxX)
			y := top + ph - int(float64(ph)*val(s)/maxY)
			if px >= 0 {
				line(img, px, py, x, y, c)
			}
			fill(img, x-2, y-2, 5, 5, c)
			px, py = x, y
		}
	}
	plot(func(s SoakSample) float64 { return s.HeapInuse / (1 << 20) }, colDefault)
	plot(func(s SoakSample) float64 { return mib(s.RSS) }, colAlways)
	return img
}

// line draws a 2-pixel line from (x0, y0) to (x1, y1).
func line(img *image.RGBA, x0, y0, x1, y1 int, c color.Color) {
	dx, dy := x1-x0, y1-y0
	steps := max(abs(dx), abs(dy), 1)
	for i := 0; i <= steps; i++ {
		x := x0 + dx*i/steps
		y := y0 + dy*i/steps
		img.Set(x, y, c)
		img.Set(x, y+1, c)
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}
