package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rogpeppe/go-internal/testscript"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hookline/hookline/pkg/attempt"
	"github.com/hookline/hookline/pkg/fixture"
	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/pkg/scan"
	"github.com/hookline/hookline/pkg/stream"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

// TestMain makes the test binary double as hookctl: scripts run the real
// command (main) as a subprocess.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){"hookctl": main})
}

const apiToken = "tok_s3cret_never_printed"

// TestScripts runs every testdata/script/*.txtar against its own embedded
// NATS server (with Hookline's topology) and its own fake producer API.
func TestScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/script/*.txtar")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txtar"), func(t *testing.T) {
			t.Parallel()
			srv := natstest.Start(t)
			_, js := srv.Connect(t)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			t.Cleanup(cancel)
			// Scripts named bare_* start without Hookline's streams.
			if !strings.HasPrefix(filepath.Base(file), "bare_") {
				if err := fixture.Topology(ctx, js); err != nil {
					t.Fatal(err)
				}
			}
			// A deliverer's replay server: hookctl asks it to replay.
			fixture.Replayer(t, srv)
			api := newFakeAPI(t, js)
			testscript.Run(t, testscript.Params{
				Files:               []string{file},
				RequireExplicitExec: true,
				Setup: func(env *testscript.Env) error {
					env.Setenv("HOOKLINE_NATS_URL", srv.URL())
					env.Setenv("HOOKLINE_API_URL", api.URL)
					env.Setenv("HOOKLINE_API_TOKEN", apiToken)
					return nil
				},
				Cmds: scriptCommands(ctx, js, api),
			})
		})
	}
}

// scriptCommands are the fixtures a script can call. Each script gets its
// own (the batch command's state is per script).
func scriptCommands(ctx context.Context, js jetstream.JetStream, api *fakeAPI) map[string]func(ts *testscript.TestScript, neg bool, args []string) {
	// batch: the lines of the ATTEMPTS message being built (nil: attempt
	// publishes at once), and the event id of each (empty for a bad line).
	var batch *attemptBatch
	return map[string]func(ts *testscript.TestScript, neg bool, args []string){
		// dl TENANT SUB EVENT [type=… reason=… status=… ago=… attempts=… error=… data=…]
		// publishes one dead letter and sets $SEQ_<EVENT>.
		"dl": func(ts *testscript.TestScript, neg bool, args []string) {
			if len(args) < 3 {
				ts.Fatalf("usage: dl TENANT SUB EVENT [key=value…]")
			}
			seq := publishDeadLetter(ctx, ts, js, args[0], args[1], args[2], args[3:])
			ts.Setenv("SEQ_"+args[2], strconv.FormatUint(seq, 10))
		},
		// dls N TENANT SUB [key=value…]: N dead letters, events <sub>_evt_<i>.
		"dls": func(ts *testscript.TestScript, neg bool, args []string) {
			if len(args) < 3 {
				ts.Fatalf("usage: dls N TENANT SUB [key=value…]")
			}
			n, err := strconv.Atoi(args[0])
			ts.Check(err)
			for i := 1; i <= n; i++ {
				publishDeadLetter(ctx, ts, js, args[1], args[2], fmt.Sprintf("%s_evt_%d", args[2], i), args[3:])
			}
		},
		// batch: the attempt and badline commands that follow, up to send,
		// go into one ATTEMPTS message (one line each), as the deliverer
		// batches a subscription's records.
		"batch": func(ts *testscript.TestScript, neg bool, args []string) {
			if batch != nil {
				ts.Fatalf("batch: a batch is open already (send it first)")
			}
			batch = &attemptBatch{}
		},
		// badline TEXT: a line that is not an attempt record, in the batch.
		"badline": func(ts *testscript.TestScript, neg bool, args []string) {
			if batch == nil || len(args) != 1 {
				ts.Fatalf("usage: batch, then badline TEXT")
			}
			batch.lines, batch.events = append(batch.lines, []byte(args[0])), append(batch.events, "")
		},
		// send: publish the batch as one message (the Hookline-Event-Id
		// header only when it holds one record) and set $ATTEMPTS_SEQ.
		"send": func(ts *testscript.TestScript, neg bool, args []string) {
			if batch == nil || batch.tenant == "" {
				ts.Fatalf("send: no batch, or no attempt in it")
			}
			eventID := ""
			if len(batch.lines) == 1 {
				eventID = batch.events[0]
			}
			seq, err := fixture.AttemptLines(ctx, js, batch.tenant, batch.sub, eventID, batch.lines...)
			ts.Check(err)
			ts.Setenv("ATTEMPTS_SEQ", strconv.FormatUint(seq, 10))
			batch = nil
		},
		// attempt TENANT SUB EVENT N STATUS OUTCOME STARTED [class=… excerpt=…]
		// publishes one record as a message of its own, or adds it to the
		// open batch.
		"attempt": func(ts *testscript.TestScript, neg bool, args []string) {
			if len(args) < 7 {
				ts.Fatalf("usage: attempt TENANT SUB EVENT N STATUS OUTCOME STARTED(RFC3339) [key=value…]")
			}
			n, err := strconv.Atoi(args[3])
			ts.Check(err)
			status, err := strconv.Atoi(args[4])
			ts.Check(err)
			started, err := time.Parse(time.RFC3339, args[6])
			ts.Check(err)
			kv := keyValues(ts, args[7:])
			a := &hooklinev1.Attempt{
				EventId: args[2], Tenant: args[0], SubscriptionId: args[1], EventType: "order.created",
				Attempt: uint32(n), Status: int32(status), Outcome: args[5], StartedAt: timestamppb.New(started),
				DurationSeconds: 0.25, ErrorClass: kv["class"], ResponseExcerpt: kv["excerpt"],
			}
			if batch == nil {
				_, err = fixture.Attempt(ctx, js, a)
				ts.Check(err)
				return
			}
			if batch.tenant == "" {
				batch.tenant, batch.sub = a.GetTenant(), a.GetSubscriptionId()
			}
			if a.GetTenant() != batch.tenant || a.GetSubscriptionId() != batch.sub {
				ts.Fatalf("attempt: a batch holds the records of one subscription (%s %s)", batch.tenant, batch.sub)
			}
			line, err := fixture.AttemptLine(a)
			ts.Check(err)
			batch.lines, batch.events = append(batch.lines, line), append(batch.events, a.GetEventId())
		},
		// sub TENANT ID [disabled]: put a subscription in the registry.
		"sub": func(ts *testscript.TestScript, neg bool, args []string) {
			if len(args) < 2 {
				ts.Fatalf("usage: sub TENANT ID [disabled]")
			}
			s := &hooklinev1.Subscription{Id: args[1], Tenant: args[0], Url: "https://example.com/hooks", EventTypes: []string{">"}}
			if len(args) > 2 && args[2] == "disabled" {
				s.Disabled, s.DisabledReason = true, "manual"
			}
			ts.Check(fixture.Subscription(ctx, js, s))
		},
		// unsub TENANT ID: delete it from the registry.
		"unsub": func(ts *testscript.TestScript, neg bool, args []string) {
			ts.Check(fixture.DeleteSubscription(ctx, js, args[0], args[1]))
		},
		// topology: create Hookline's streams, consumers and KV bucket.
		"topology": func(ts *testscript.TestScript, neg bool, args []string) {
			ts.Check(fixture.Topology(ctx, js))
		},
		// nokv: delete the subscription registry bucket.
		"nokv": func(ts *testscript.TestScript, neg bool, args []string) {
			ts.Check(js.DeleteKeyValue(ctx, stream.SubscriptionsBucket))
		},
		// count STREAM FILTER N: the stream holds exactly N messages on FILTER.
		"count": func(ts *testscript.TestScript, neg bool, args []string) {
			if len(args) != 3 {
				ts.Fatalf("usage: count STREAM FILTER N")
			}
			n, err := fixture.Count(ctx, js, args[0], args[1])
			ts.Check(err)
			if got := strconv.FormatUint(n, 10); (got == args[2]) == neg {
				ts.Fatalf("%s %s holds %s messages; want %s%s", args[0], args[1], got, map[bool]string{true: "not ", false: ""}[neg], args[2])
			}
		},
		// waitcount STREAM FILTER N: wait (10s at most) until at least N.
		"waitcount": func(ts *testscript.TestScript, neg bool, args []string) {
			want, err := strconv.ParseUint(args[2], 10, 64)
			ts.Check(err)
			deadline := time.Now().Add(10 * time.Second)
			for {
				n, err := fixture.Count(ctx, js, args[0], args[1])
				ts.Check(err)
				if n >= want {
					return
				}
				if time.Now().After(deadline) {
					ts.Fatalf("%s %s holds %d messages after 10s; want at least %d", args[0], args[1], n, want)
				}
				time.Sleep(5 * time.Millisecond) // polling a condition with a deadline
			}
		},
		// tasks: print every task in DELIVERIES, one line each, sorted:
		// <subject> <event id> replay=<seq> attempt=<attempt header>
		"tasks": func(ts *testscript.TestScript, neg bool, args []string) {
			tasks, err := fixture.Tasks(ctx, js)
			ts.Check(err)
			var lines []string
			for _, t := range tasks {
				lines = append(lines, fmt.Sprintf("%s %s replay=%s attempt=%s body=%s", t.Subject, t.Header.Get(stream.HeaderEventID),
					t.Header.Get(stream.HeaderReplay), t.Header.Get(stream.HeaderAttempt), t.Data))
			}
			slices.Sort(lines)
			for _, l := range lines {
				fmt.Fprintln(ts.Stdout(), l)
			}
		},
		// exits CODE hookctl ARGS…: run it and check the exit code.
		"exits": func(ts *testscript.TestScript, neg bool, args []string) {
			if len(args) < 2 {
				ts.Fatalf("usage: exits CODE command [args…]")
			}
			want, err := strconv.Atoi(args[0])
			ts.Check(err)
			err = ts.Exec(args[1], args[2:]...)
			got := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				got = ee.ExitCode()
			} else if err != nil {
				ts.Fatalf("%v", err)
			}
			if got != want {
				ts.Fatalf("exit code %d, want %d", got, want)
			}
		},
		// resume FILE: run the command printed after "Resume with:" in FILE
		// (a copy of an interrupted run's stderr).
		"resume": func(ts *testscript.TestScript, neg bool, args []string) {
			if len(args) != 1 {
				ts.Fatalf("usage: resume FILE")
			}
			stderr := ts.ReadFile(args[0])
			_, after, ok := strings.Cut(stderr, "Resume with:\n")
			if !ok {
				ts.Fatalf("no 'Resume with:' in %s", args[0])
			}
			line, _, _ := strings.Cut(after, "\n")
			fields := strings.Fields(line)
			for i, f := range fields {
				fields[i] = strings.ReplaceAll(f, "'", "") // the values here need no shell
			}
			ts.Logf("resuming: %s", line)
			ts.Check(ts.Exec(fields[0], fields[1:]...))
		},
		// apireqs: print the requests the fake producer API received.
		"apireqs": func(ts *testscript.TestScript, neg bool, args []string) {
			for _, r := range api.requests() {
				fmt.Fprintln(ts.Stdout(), r)
			}
		},
	}
}

// attemptBatch is an ATTEMPTS message a script is building.
type attemptBatch struct {
	tenant, sub string
	lines       [][]byte
	events      []string
}

func keyValues(ts *testscript.TestScript, args []string) map[string]string {
	kv := map[string]string{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			ts.Fatalf("want key=value, got %q", a)
		}
		kv[k] = v
	}
	return kv
}

func publishDeadLetter(ctx context.Context, ts *testscript.TestScript, js jetstream.JetStream, tenant, sub, event string, args []string) uint64 {
	kv := keyValues(ts, args)
	rec := &hooklinev1.DeadLetter{EventId: event, Tenant: tenant, SubscriptionId: sub, EventType: "order.created", LastStatus: 503, LastError: "HTTP 503"}
	if v, ok := kv["type"]; ok {
		rec.EventType = v
	}
	if v, ok := kv["reason"]; ok {
		rec.Reason = v
	}
	if v, ok := kv["status"]; ok {
		n, err := strconv.Atoi(v)
		ts.Check(err)
		rec.LastStatus = int32(n)
	}
	if v, ok := kv["error"]; ok {
		rec.LastError = v
	}
	if v, ok := kv["attempts"]; ok {
		n, err := strconv.Atoi(v)
		ts.Check(err)
		rec.Attempts = uint32(n)
	}
	if v, ok := kv["ago"]; ok {
		d, err := time.ParseDuration(v)
		ts.Check(err)
		rec.DeadLetteredAt = timestamppb.New(time.Now().Add(-d))
	}
	if v, ok := kv["at"]; ok {
		tm, err := time.Parse(time.RFC3339, v)
		ts.Check(err)
		rec.DeadLetteredAt = timestamppb.New(tm)
	}
	if v, ok := kv["data"]; ok {
		rec.Data = []byte(v)
	}
	seq, err := fixture.DeadLetter(ctx, js, rec)
	ts.Check(err)
	return seq
}

// fakeAPI stands in for the producer (a separate module): it records every
// request and keeps subscriptions in memory.
type fakeAPI struct {
	*httptest.Server
	mu     sync.Mutex
	log    []string
	subs   map[string]map[string]any
	events map[string]bool
	n      int
}

func newFakeAPI(t *testing.T, js jetstream.JetStream) *fakeAPI {
	f := &fakeAPI{subs: map[string]map[string]any{}, events: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/subscriptions/{id}/attempts", func(w http.ResponseWriter, r *http.Request) {
		f.attempts(w, r, js)
	})
	mux.HandleFunc("POST /v1/subscriptions", f.create)
	mux.HandleFunc("GET /v1/subscriptions", f.list)
	mux.HandleFunc("GET /v1/subscriptions/{id}", f.withSub(func(w http.ResponseWriter, s map[string]any, _ map[string]any) { writeJSON(w, 200, s) }))
	mux.HandleFunc("PATCH /v1/subscriptions/{id}", f.withSub(func(w http.ResponseWriter, s map[string]any, body map[string]any) {
		for k, v := range body {
			s[k] = v
		}
		writeJSON(w, 200, s)
	}))
	mux.HandleFunc("DELETE /v1/subscriptions/{id}", f.withSub(func(w http.ResponseWriter, s map[string]any, _ map[string]any) {
		delete(f.subs, s["id"].(string))
		w.WriteHeader(http.StatusNoContent)
	}))
	mux.HandleFunc("POST /v1/subscriptions/{id}/test", f.withSub(func(w http.ResponseWriter, s map[string]any, _ map[string]any) {
		writeJSON(w, 202, map[string]any{"event_id": "evt_test_1"})
	}))
	mux.HandleFunc("POST /v1/subscriptions/{id}/rotate-secret", f.withSub(func(w http.ResponseWriter, s map[string]any, _ map[string]any) {
		out := map[string]any{"secret": "whsec_rotated"}
		for k, v := range s {
			out[k] = v
		}
		writeJSON(w, 200, out)
	}))
	mux.HandleFunc("GET /v1/subscriptions/{id}/effective-policy", f.withSub(func(w http.ResponseWriter, s map[string]any, _ map[string]any) {
		writeJSON(w, 200, map[string]any{
			"subscription_id": s["id"], "tenant": s["tenant"],
			"retry_schedule":     map[string]any{"value": []string{"0s", "10s", "1m"}, "source": "tenant"},
			"attempt_timeout":    map[string]any{"value": "2s", "source": "subscription"},
			"auto_disable_after": map[string]any{"value": "120h0m0s", "source": "environment"},
			"max_in_flight":      map[string]any{"value": 0, "source": "environment"},
			"rate_limit":         map[string]any{"per_second": 5, "burst": 10, "source": "tenant"},
			"payload_format":     map[string]any{"value": "envelope", "source": "subscription"},
		})
	}))
	tenants := map[string]map[string]any{}
	mux.HandleFunc("GET /v1/tenants/{tenant}", func(w http.ResponseWriter, r *http.Request) {
		t, ok := tenants[r.PathValue("tenant")]
		if !ok {
			t = map[string]any{"tenant": r.PathValue("tenant"), "defaults": map[string]any{}}
		}
		writeJSON(w, 200, t)
	})
	mux.HandleFunc("PUT /v1/tenants/{tenant}", func(w http.ResponseWriter, r *http.Request) {
		t := decode(r)
		t["tenant"] = r.PathValue("tenant")
		tenants[r.PathValue("tenant")] = t
		writeJSON(w, 200, t)
	})
	mux.HandleFunc("POST /v1/events", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 202, f.publish(decode(r)))
	})
	mux.HandleFunc("POST /v1/events/batch", func(w http.ResponseWriter, r *http.Request) {
		var out []any
		for _, e := range decode(r)["events"].([]any) {
			out = append(out, f.publish(e.(map[string]any)))
		}
		writeJSON(w, 202, map[string]any{"events": out})
	})
	f.Server = httptest.NewServer(f.record(mux))
	t.Cleanup(f.Close)
	return f
}

// record logs "METHOD PATH?QUERY auth=ok|<missing|wrong> BODY" and checks
// the bearer token.
func (f *fakeAPI) record(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		auth := "ok"
		if r.Header.Get("Authorization") != "Bearer "+apiToken {
			auth = "wrong"
		}
		line := r.Method + " " + r.URL.RequestURI() + " auth=" + auth
		if len(body) > 0 {
			line += " " + string(body)
		}
		f.mu.Lock()
		f.log = append(f.log, line)
		f.mu.Unlock()
		if auth != "ok" {
			problem(w, 401, "Unauthorized", "missing or wrong bearer token", nil)
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

func (f *fakeAPI) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.log)
}

func decode(r *http.Request) map[string]any {
	m := map[string]any{}
	_ = json.NewDecoder(r.Body).Decode(&m)
	return m
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func problem(w http.ResponseWriter, status int, title, detail string, errs any) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	p := map[string]any{"type": "about:blank", "title": title, "status": status, "detail": detail}
	if errs != nil {
		p["errors"] = errs
	}
	_ = json.NewEncoder(w).Encode(p)
}

func (f *fakeAPI) create(w http.ResponseWriter, r *http.Request) {
	body := decode(r)
	if u, _ := body["url"].(string); !strings.HasPrefix(u, "https://") {
		problem(w, 422, "Invalid subscription", "the subscription is invalid", []any{map[string]any{"field": "url", "message": "must be an https URL"}})
		return
	}
	f.n++
	id := fmt.Sprintf("sub_%d", f.n)
	s := map[string]any{"id": id, "created_at": "2026-11-28T12:00:00Z"}
	for k, v := range body {
		s[k] = v
	}
	f.subs[id] = s
	out := map[string]any{"secret": "whsec_onetime"}
	for k, v := range s {
		out[k] = v
	}
	writeJSON(w, 201, out)
}

// fakeListPage is the most the fake API puts in a page, whatever the
// limit asked: hookctl must follow next_cursor.
const fakeListPage = 2

func (f *fakeAPI) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := strconv.Atoi(q.Get("limit"))
	if err != nil || limit < 1 {
		problem(w, 400, "Bad Request", "query parameter limit must be a whole number from 1 to 500", nil)
		return
	}
	limit = min(limit, fakeListPage)
	ids := make([]string, 0, len(f.subs))
	for id := range f.subs {
		if t := q.Get("tenant"); (t == "" || f.subs[id]["tenant"] == t) && id > q.Get("cursor") {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	out := []any{}
	for _, id := range ids[:min(limit, len(ids))] {
		out = append(out, f.subs[id])
	}
	page := map[string]any{"subscriptions": out}
	if len(ids) > limit {
		page["next_cursor"] = ids[limit-1]
	}
	writeJSON(w, 200, page)
}

// attempts serves GET /v1/subscriptions/{id}/attempts from the real
// ATTEMPTS stream (the scripts' attempt fixtures), at most fakeListPage a
// page, with a "seq:index" cursor.
func (f *fakeAPI) attempts(w http.ResponseWriter, r *http.Request, js jetstream.JetStream) {
	q := r.URL.Query()
	limit, err := strconv.Atoi(q.Get("limit"))
	if err != nil || limit < 1 || limit > 500 {
		problem(w, 400, "Bad Request", "query parameter limit must be a whole number from 1 to 500", nil)
		return
	}
	fl := attempt.Filter{Query: attempt.Query{Subscription: r.PathValue("id"), EventID: q.Get("event_id")}}
	for k, t := range map[string]*time.Time{"since": &fl.Since, "until": &fl.Until} {
		if v := q.Get(k); v != "" {
			if *t, err = time.Parse(time.RFC3339Nano, v); err != nil {
				problem(w, 400, "Bad Request", "query parameter "+k+" must be RFC 3339", nil)
				return
			}
		}
	}
	var cursor *scan.Pos
	if c := q.Get("cursor"); c != "" {
		var p scan.Pos
		if _, err := fmt.Sscanf(c, "%d:%d", &p.Seq, &p.Idx); err != nil {
			problem(w, 400, "Bad Request", "bad cursor", nil)
			return
		}
		cursor = &p
	}
	res, err := attempt.Page(r.Context(), js, fl, q.Get("order") != "asc", cursor, min(limit, fakeListPage))
	if err != nil {
		problem(w, 503, "Service Unavailable", err.Error(), nil)
		return
	}
	out := []any{}
	for _, rec := range res.Items {
		a := rec.Attempt
		out = append(out, map[string]any{"seq": rec.Seq, "index": rec.Index, "event_id": a.GetEventId(), "tenant": a.GetTenant(),
			"event_type": a.GetEventType(), "subscription_id": a.GetSubscriptionId(), "attempt": a.GetAttempt(),
			"started_at": a.GetStartedAt().AsTime().UTC().Format(time.RFC3339Nano), "duration_seconds": a.GetDurationSeconds(),
			"status": a.GetStatus(), "outcome": a.GetOutcome(), "error_class": a.GetErrorClass(), "response_excerpt": a.GetResponseExcerpt()})
	}
	page := map[string]any{"attempts": out}
	if res.More {
		page["next_cursor"] = fmt.Sprintf("%d:%d", res.Next.Seq, res.Next.Idx)
	}
	writeJSON(w, 200, page)
}

func (f *fakeAPI) withSub(h func(w http.ResponseWriter, s map[string]any, body map[string]any)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, ok := f.subs[r.PathValue("id")]
		if !ok {
			problem(w, 404, "Not Found", "subscription "+r.PathValue("id")+" not found", nil)
			return
		}
		h(w, s, decode(r))
	}
}

func (f *fakeAPI) publish(e map[string]any) map[string]any {
	id, _ := e["id"].(string)
	if id == "" {
		f.n++
		id = fmt.Sprintf("evt_gen_%d", f.n)
	}
	dup := f.events[id]
	f.events[id] = true
	return map[string]any{"id": id, "duplicate": dup}
}
