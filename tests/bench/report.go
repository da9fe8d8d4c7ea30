package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Process names, as reported.
const (
	ProcNATS      = "nats-server"
	ProcRedis     = "redis-server"
	ProcProducer  = "producer"
	ProcDeliverer = "deliverer"
	// ProcBench is this process: the loader, the sink and the bare client.
	ProcBench = "bench"
)

// ProcOrder is the order processes are printed in.
var ProcOrder = []string{ProcNATS, ProcRedis, ProcProducer, ProcDeliverer, ProcBench}

// CPUUse is the CPU a process used during a scenario.
type CPUUse struct {
	Seconds float64 `json:"seconds"`
	// Per1000 is CPU seconds per 1,000 deliveries (requests for the limit).
	Per1000 float64 `json:"per_1000"`
}

// Scenario is the outcome of one throughput or latency scenario.
type Scenario struct {
	Name string `json:"name"`
	// Path is how events entered: nats, api-batch, api-single; "bare" for
	// the limit.
	Path          string `json:"path"`
	Subscriptions int    `json:"subscriptions"`
	Events        int    `json:"events"`
	// Deliveries expected (events × subscriptions) and received (distinct).
	Deliveries int `json:"deliveries"`
	Received   int `json:"received"`
	Duplicates int `json:"duplicates"`
	// PublishSeconds: first publish → last publish acknowledged.
	PublishSeconds float64 `json:"publish_seconds"`
	// Seconds: first publish → last delivery received.
	Seconds          float64 `json:"seconds"`
	PublishedPerSec  float64 `json:"published_per_sec"`
	DeliveriesPerSec float64 `json:"deliveries_per_sec"`
	// OfLimit is DeliveriesPerSec over the bare client's requests/s.
	OfLimit float64 `json:"of_limit,omitempty"`
	// Rate is the fixed publish rate of a latency scenario (events/s).
	Rate          int     `json:"rate,omitempty"`
	Latency       Latency `json:"latency"`
	MaxConcurrent int     `json:"max_concurrent"`
	// Stored is how many messages DELIVERIES stored during the scenario
	// (tasks, retries and deferrals): a delivery whose first attempt was
	// made from dispatch and succeeded stores none.
	Stored uint64 `json:"stored"`
	// StoredByStream is how many messages each stream stored during the
	// scenario (the change of its last sequence). Under sync_interval:
	// always a single nats-server fsyncs each stored message (at most; a
	// write that finds the previous one still being synced shares its
	// fsync), so per delivery it is the fsync budget, and unlike a rate
	// it does not depend on how busy the machine is.
	StoredByStream map[string]uint64 `json:"stored_by_stream,omitempty"`
	// Direct is what became of the first attempts dispatch made, or why
	// it stored a task instead (hookline_direct_attempts_total by result,
	// over the scenario).
	Direct map[string]float64 `json:"direct,omitempty"`
	CPU    map[string]CPUUse  `json:"cpu"`
	Error  string             `json:"error,omitempty"`
}

// Mode is every scenario under one NATS sync setting.
type Mode struct {
	// Sync is "always" (one node, sync_interval: always), "default" (one
	// node, the server's default: every 2 minutes) or "r3" (a three-node
	// cluster, sync_interval: always, streams at three replicas).
	Sync string `json:"sync"`
	// Setting is Sync for people (SyncLabel).
	Setting string `json:"setting"`
	// NATSNodes is how many nats-server processes ran. CPU and peak RSS of
	// nats-server are the sums over all of them.
	NATSNodes int `json:"nats_nodes"`
	// StreamReplicas of the EVENTS stream as the services created it.
	StreamReplicas int        `json:"stream_replicas"`
	Scenarios      []Scenario `json:"scenarios"`
	// PeakRSS is VmHWM per process at the end of the mode, bytes (summed
	// over the nodes of nats-server: each node's own high-water mark, so
	// the sum may exceed what the three held at any one moment).
	PeakRSS  map[string]int64  `json:"peak_rss_bytes"`
	Profiles map[string]string `json:"profiles,omitempty"`
	// Logs kept because a scenario failed, by process (nats-server-n1,
	// -n2, -n3 under r3).
	Logs  map[string]string `json:"logs,omitempty"`
	Error string            `json:"error,omitempty"`
}

// SyncLabel names a sync setting for people.
func SyncLabel(sync string) string {
	switch sync {
	case SyncAlways:
		return "sync_interval: always"
	case SyncDefault:
		return "sync_interval: default (2m)"
	case SyncR3:
		return fmt.Sprintf("%d-node cluster, R%d, sync_interval: always", clusterNodes, clusterNodes)
	default:
		return "unknown setting " + sync
	}
}

// Label names the mode's sync setting for people.
func (m Mode) Label() string { return SyncLabel(m.Sync) }

// ProcLabel names a process in the mode's tables: "nats-server ×3" when
// its numbers are the sum over three nodes.
func (m Mode) ProcLabel(proc string) string {
	if proc == ProcNATS && m.NATSNodes > 1 {
		return fmt.Sprintf("%s ×%d", proc, m.NATSNodes)
	}
	return proc
}

// Report is a whole run.
type Report struct {
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds"`
	Machine  Machine   `json:"machine"`
	Versions Versions  `json:"versions"`
	Config   Config    `json:"config"`
	Modes    []Mode    `json:"modes"`
	// Files written (JSON, chart, profiles).
	Files []string `json:"files,omitempty"`
}

// WriteTable prints the report for people.
func (r *Report) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "\nHookline end-to-end benchmark — %s\n", r.Started.Format(time.RFC3339))
	fmt.Fprintf(w, "machine: %d cores, %s, %s, kernel %s, memory %s\n",
		r.Machine.Cores, r.Machine.CPUModel, r.Machine.OS, r.Machine.Kernel, r.Machine.MemTotal)
	fmt.Fprintf(w, "load average at start: %s, at end: %s%s\n", r.Machine.LoadStart, r.Machine.LoadEnd, busyNote(r.Machine))
	fmt.Fprintf(w, "go: %s", r.Versions.Go)
	for _, m := range slices.Sorted(maps.Keys(r.Versions.Modules)) {
		fmt.Fprintf(w, " · %s %s", shortModule(m), r.Versions.Modules[m])
	}
	c := r.Config
	fmt.Fprintf(w, "\nload: payload %d B, concurrency %d (deliverer workers = max_in_flight = bare client), "+
		"1×1 %d events, 1×10 %d events, latency %d/s for %s, api batch %d×%d, api single ×%d\n",
		c.PayloadBytes, c.Concurrency, c.Events, c.FanoutEvents, c.LatencyRate, c.LatencyDuration,
		c.APIBatchSize, c.APIBatchConcurrency, c.APISingleConcurrency)
	for _, m := range r.Modes {
		fmt.Fprintf(w, "\n== %s ==\n", m.Label())
		if m.Error != "" {
			fmt.Fprintf(w, "error: %s\n", m.Error)
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "scenario\tdeliveries\tdeliv/s\tof limit\tpublish/s\tp50 ms\tp90 ms\tp99 ms\tmax ms\tconc\tdups\tstored/deliv\t")
		for _, s := range m.Scenarios {
			ratio := "—"
			if s.OfLimit > 0 {
				ratio = fmt.Sprintf("%.0f%%", 100*s.OfLimit)
			}
			stored := "—"
			if s.Received > 0 && s.Path != "bare" {
				stored = fmt.Sprintf("%.2f", float64(s.Stored)/float64(s.Received))
			}
			fmt.Fprintf(tw, "%s\t%d/%d\t%.0f\t%s\t%.0f\t%.1f\t%.1f\t%.1f\t%.1f\t%d\t%d\t%s\t\n",
				s.Name, s.Received, s.Deliveries, s.DeliveriesPerSec, ratio, s.PublishedPerSec,
				s.Latency.P50, s.Latency.P90, s.Latency.P99, s.Latency.Max, s.MaxConcurrent, s.Duplicates, stored)
		}
		_ = tw.Flush()
		fmt.Fprintln(w, "\nCPU seconds per 1,000 deliveries")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprint(tw, "scenario\t")
		for _, p := range ProcOrder {
			fmt.Fprintf(tw, "%s\t", m.ProcLabel(p))
		}
		fmt.Fprintln(tw, "total\t")
		for _, s := range m.Scenarios {
			fmt.Fprintf(tw, "%s\t", s.Name)
			var total float64
			for _, p := range ProcOrder {
				u, ok := s.CPU[p]
				if !ok {
					fmt.Fprint(tw, "—\t")
					continue
				}
				total += u.Per1000
				fmt.Fprintf(tw, "%.3f\t", u.Per1000)
			}
			fmt.Fprintf(tw, "%.3f\t\n", total)
		}
		_ = tw.Flush()
		printDirect(w, m.Scenarios)
		printStoredByStream(w, m.Scenarios)
		fmt.Fprint(w, "\npeak RSS (VmHWM):")
		for _, p := range ProcOrder {
			if v, ok := m.PeakRSS[p]; ok {
				fmt.Fprintf(w, " %s %.1f MiB ·", m.ProcLabel(p), float64(v)/(1<<20))
			}
		}
		fmt.Fprintln(w)
		if m.NATSNodes > 1 {
			fmt.Fprintf(w, "nats-server ×%d: CPU and peak RSS summed over the %d nodes; streams at %d replicas\n",
				m.NATSNodes, m.NATSNodes, m.StreamReplicas)
		}
		for _, s := range m.Scenarios {
			if s.Error != "" {
				fmt.Fprintf(w, "error in %s: %s\n", s.Name, s.Error)
			}
		}
		for _, p := range slices.Sorted(maps.Keys(m.Logs)) {
			fmt.Fprintf(w, "log of %s kept: %s\n", p, m.Logs[p])
		}
		for _, k := range slices.Sorted(maps.Keys(m.Profiles)) {
			fmt.Fprintf(w, "profile %s: %s\n", k, m.Profiles[k])
		}
	}
	for _, f := range r.Files {
		fmt.Fprintf(w, "wrote %s\n", f)
	}
}

// busyNote warns when something else kept the machine busy: the 1-minute
// load average at the start exceeded the core count.
func busyNote(m Machine) string {
	f := strings.Fields(m.LoadStart)
	if len(f) == 0 {
		return ""
	}
	if l, err := strconv.ParseFloat(f[0], 64); err == nil && l > float64(m.Cores) {
		return " — the machine was busy before the run: treat the rates as lower bounds (CPU per delivery is still comparable)"
	}
	return ""
}

func shortModule(m string) string {
	m = strings.TrimPrefix(m, "github.com/")
	m = strings.TrimPrefix(m, "google.golang.org/")
	m = strings.TrimPrefix(m, "go.uber.org/")
	return m
}

// WriteJSON writes the report to dir/bench-<timestamp>.json and returns the
// path.
func (r *Report) WriteJSON(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "bench-"+r.Started.Format("20060102-150405")+".json")
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", err
	}
	return path, os.WriteFile(path, append(b, '\n'), 0o644)
}

// printDirect lists, per scenario, what became of the first attempts
// dispatch made and why it stored tasks instead.
func printDirect(w io.Writer, scenarios []Scenario) {
	header := false
	for _, s := range scenarios {
		if len(s.Direct) == 0 {
			continue
		}
		if !header {
			fmt.Fprintln(w, "\nfirst attempts from dispatch (hookline_direct_attempts_total by result), admission refusals (hookline_admission_refused_total, as refused <reason>) and deferrals (hookline_admission_deferred_total, as deferred for <reason>)")
			header = true
		}
		keys := make([]string, 0, len(s.Direct))
		for k := range s.Direct {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = fmt.Sprintf("%s %.0f", k, s.Direct[k])
		}
		fmt.Fprintf(w, "  %s: %s\n", s.Name, strings.Join(parts, ", "))
	}
}

// printStoredByStream prints the messages each stream stored per delivery,
// most first, for the scenarios that have the counts.
func printStoredByStream(w io.Writer, scenarios []Scenario) {
	header := false
	for _, s := range scenarios {
		if len(s.StoredByStream) == 0 || s.Received == 0 {
			continue
		}
		if !header {
			fmt.Fprintln(w, "\nmessages stored per delivery, by stream (under sync_interval: always, one fsync each at most)")
			header = true
		}
		names := make([]string, 0, len(s.StoredByStream))
		var total uint64
		for k, n := range s.StoredByStream {
			if n > 0 {
				names = append(names, k)
				total += n
			}
		}
		sort.Slice(names, func(i, j int) bool {
			a, b := s.StoredByStream[names[i]], s.StoredByStream[names[j]]
			if a != b {
				return a > b
			}
			return names[i] < names[j]
		})
		per := func(n uint64) string { return fmt.Sprintf("%.3f", float64(n)/float64(s.Received)) }
		parts := make([]string, len(names))
		for i, k := range names {
			parts[i] = k + " " + per(s.StoredByStream[k])
		}
		fmt.Fprintf(w, "  %s: %s (total %s)\n", s.Name, strings.Join(parts, ", "), per(total))
	}
}
