package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/auth"
	"github.com/hookline/hookline/tests/harness"
)

// bearer adds a token to every request of the harness's API client.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// hookctl over the producer API only (no NATS URL given) with a token
// bound to one tenant: dead letters listed with the API's filters, a
// server-side replay job started, followed to its end and not started
// twice for the same Idempotency-Key, each entry delivered once, the
// subscription's stats; the other tenant's dead letters are neither
// listed nor replayed.
func TestHookctlThroughTheAPI(t *testing.T) {
	t.Parallel()
	const admin, acmeTok = "tok-e2e-admin-3f9c", "tok-e2e-acme-77d1"
	s := harness.NewStack(t, harness.StackOptions{DefaultSync: true, Env: harness.BreakerOff.With(harness.Env{
		"HOOKLINE_API_TOKENS": "ops:" + auth.HashToken(admin) + ":admin,acme:" + auth.HashToken(acmeTok) + ":admin:acme",
	})})
	s.API.Client.Transport = bearer{token: admin, next: http.DefaultTransport}
	ep, sub := s.Subscribe("acme", "acme-down", []string{"order.*"}, harness.Fail)
	other, otherSub := s.Subscribe("globex", "globex-down", []string{"order.*"}, harness.Fail)
	const events = 5
	var ids []string
	for i := range events {
		ids = append(ids, s.Publish("acme", "order.created", "", fmt.Sprintf(`{"n":%d}`, i)))
		s.Publish("globex", "order.created", "", fmt.Sprintf(`{"n":%d}`, i))
	}
	if r := s.Checker.Await(t, time.Minute, 2*time.Second); r.DeadLettered != 2*events {
		t.Fatalf("want %d dead letters: %s", 2*events, r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	hookctl := func(args ...string) (string, error) {
		stdout, stderr, err := harness.RunHookctl(ctx, s.Bins, harness.Env{
			"HOOKLINE_API_URL":   s.Producer.URL(),
			"HOOKLINE_API_TOKEN": acmeTok,
			// No NATS here: hookctl must not need it.
			"HOOKLINE_NATS_URL": "nats://127.0.0.1:1",
		}, args...)
		t.Logf("hookctl %s: %v\n%s%s", strings.Join(args, " "), err, stdout, stderr)
		return stdout, err
	}

	out, err := hookctl("dlq", "ls", "--api", "--json", "--status", "5xx", "--since", "1h")
	if err != nil {
		t.Fatal(err)
	}
	var ls struct {
		DeadLetters []struct {
			Tenant         string `json:"tenant"`
			SubscriptionID string `json:"subscription_id"`
			EventID        string `json:"event_id"`
		} `json:"dead_letters"`
	}
	if err := json.Unmarshal([]byte(out), &ls); err != nil {
		t.Fatal(err)
	}
	if len(ls.DeadLetters) != events {
		t.Fatalf("listed %d dead letters, want acme's %d", len(ls.DeadLetters), events)
	}
	for _, d := range ls.DeadLetters {
		if d.Tenant != "acme" || d.SubscriptionID != sub.ID {
			t.Fatalf("an acme token listed %+v", d)
		}
	}
	// The attempts behind those dead letters, over the API too.
	out, err = hookctl("attempts", "--api", "--subscription", sub.ID, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var atts struct {
		Attempts []struct {
			SubscriptionID string `json:"subscription_id"`
			Outcome        string `json:"outcome"`
		} `json:"attempts"`
	}
	if err := json.Unmarshal([]byte(out), &atts); err != nil {
		t.Fatal(err)
	}
	deadLettered := 0
	for _, a := range atts.Attempts {
		if a.SubscriptionID != sub.ID {
			t.Fatalf("attempts --api listed %+v", a)
		}
		if a.Outcome == "dead_letter" {
			deadLettered++
		}
	}
	if deadLettered != events {
		t.Fatalf("attempts --api: %d dead_letter attempts of %d records, want %d", deadLettered, len(atts.Attempts), events)
	}
	if _, err := hookctl("attempts", "--api", "--subscription", otherSub.ID); err == nil {
		t.Fatal("an acme token listed globex's attempts")
	}
	// Another tenant's subscription: the job would see nothing of it.
	if _, err := hookctl("replay", "start", "--source", "events", "--subscription", otherSub.ID, "--since", "1h"); err == nil {
		t.Fatal("an acme token started a back-fill of globex's subscription")
	}

	ep.SetBehavior(harness.OK)
	other.SetBehavior(harness.OK)
	// An absolute --since: a relative one ("1h") is another time on the
	// second run, so another request for the same key.
	since := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	args := []string{"replay", "start", "--subscription", sub.ID, "--since", since, "--rate", "0", "--idempotency-key", "e2e-replay-1"}
	out, err = hookctl(append(args, "--wait", "--json")...)
	if err != nil {
		t.Fatal(err)
	}
	var job struct {
		ID    string `json:"id"`
		State string `json:"state"`
		Done  int    `json:"done"`
		Total int    `json:"total"`
	}
	if err := json.Unmarshal([]byte(out), &job); err != nil {
		t.Fatal(err)
	}
	if job.State != "done" || job.Done != events || job.Total != events {
		t.Fatalf("job %+v, want done with %d of %d", job, events, events)
	}
	// The same command again: the same job, nothing started.
	out, err = hookctl(args...)
	if err != nil || !strings.Contains(out, job.ID+" already started") {
		t.Fatalf("same key again: %v %q, want job %s already started", err, out, job.ID)
	}
	// The same key for another selection is refused, and says why.
	if _, err := hookctl("replay", "start", "--subscription", sub.ID, "--since", "2h", "--idempotency-key", "e2e-replay-1"); err == nil {
		t.Fatal("the same key started another selection")
	}
	for _, id := range ids {
		ep.AwaitDelivered(t, id, 30*time.Second)
	}
	settled(t, s)
	for _, id := range ids {
		if h := ep.Hits(id); h == nil || h.Delivered != 1 {
			t.Errorf("%s: %+v, want delivered exactly once", id, h)
		}
	}
	if n := len(other.Delivered()); n != 0 {
		t.Errorf("globex's endpoint got %d events from acme's replay", n)
	}

	out, err = hookctl("subs", "stats", sub.ID, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Outcomes map[string]int `json:"outcomes"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	if st.Outcomes["success"] != events || st.Outcomes["dead_letter"] != events {
		t.Fatalf("stats outcomes %v, want %d successes and %d dead letters", st.Outcomes, events, events)
	}
	if _, err := hookctl("subs", "stats", otherSub.ID); err == nil {
		t.Fatal("an acme token read globex's stats")
	}
}
