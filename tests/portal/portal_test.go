package portal

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/hookline/hookline/tests/harness"
)

// portalKey is HOOKLINE_PORTAL_KEY of the stack: the test signs an expired
// token of its own with it.
var portalKey = []byte("portal-test-key-portal-test-key!")

// browser drives one headless Chromium tab.
type browser struct {
	t   *testing.T
	ctx context.Context
}

// newBrowser starts Debian's chromium (installed by `make test-deps`).
func newBrowser(t *testing.T) *browser {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium not found (make test-deps installs Debian's chromium): %v", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // root in CI
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 900),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first run starts the browser and ties it to its context: the
	// browser's own, not a timeout of one step.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900)); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return &browser{t: t, ctx: ctx}
}

func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("browser: %v (page: %s)", err, b.text("body"))
	}
}

// await polls a JavaScript condition until it is true, for at most 30s.
func (b *browser) await(what, js string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 35*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](js, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		b.t.Fatalf("waiting for %s: %v (page: %s)", what, err, b.text("body"))
	}
}

// awaitText waits until the element of sel holds text.
func (b *browser) awaitText(sel, text string) {
	b.t.Helper()
	b.await(fmt.Sprintf("%q in %s", text, sel), fmt.Sprintf(`(() => { const e = document.querySelector(%q); return !!e && e.textContent.includes(%q); })()`, sel, text))
}

func (b *browser) text(sel string) string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`(() => { const e = document.querySelector(%q); return e ? e.textContent : ''; })()`, sel)))
	return s
}

func eval[T any](b *browser, js string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

func (b *browser) click(sel string) { b.t.Helper(); b.do(chromedp.Click(chromedp.CSS(sel))) }

// shot writes a screenshot under results/portal (gitignored).
func (b *browser) shot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := filepath.Join("..", "..", "results", "portal")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// session opens a portal session through the API, as a platform's backend does.
func session(t *testing.T, s *harness.Stack, tenant string, body map[string]any) (url, token, id string) {
	t.Helper()
	var out struct{ URL, Token, ID string }
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.API.Do(ctx, http.MethodPost, "/v1/tenants/"+tenant+"/portal-sessions", body, &out); err != nil {
		t.Fatal(err)
	}
	return out.URL, out.Token, out.ID
}

// expiredToken signs a token that expired an hour ago, in the portal's
// token format (hlps_<claims>.<HMAC-SHA256>).
func expiredToken(tenant string) string {
	now := time.Now()
	claims, _ := json.Marshal(map[string]any{"v": 1, "sid": "ps_01EXPIRED0000000000000000", "ten": tenant,
		"iat": now.Add(-2 * time.Hour).UnixMilli(), "exp": now.Add(-time.Hour).UnixMilli()})
	signed := "hlps_" + base64.RawURLEncoding.EncodeToString(claims)
	m := hmac.New(sha256.New, portalKey)
	m.Write([]byte(signed))
	return signed + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

var eventIDRe = regexp.MustCompile(`Test event (\S+) sent`)

// TestPortal drives the portal in a real Chromium against the real
// producer and deliverer: a developer opens the session link, creates an
// endpoint, sends a test event and sees it delivered; follows a failing
// endpoint's attempts and circuit; replays its dead letters after a dry
// run and sees them delivered; cannot reach another tenant's endpoint, in
// the page or by calling the API from it; and an expired or revoked
// session is refused.
func TestPortal(t *testing.T) {
	s := harness.NewStack(t, harness.StackOptions{DefaultSync: true, Env: harness.Env{
		"HOOKLINE_PORTAL_KEY":  base64.StdEncoding.EncodeToString(portalKey),
		"HOOKLINE_PORTAL_NAME": "Acme webhooks",
	}})
	b := newBrowser(t)
	ok := s.Receiver.Endpoint("ok")
	// Types the picker offers: what acme published lately.
	s.Publish("acme", "order.created", "", `{"order_id":1}`)
	// Another tenant's endpoint, which acme's session must not reach.
	_, globex := s.Subscribe("globex", "globex", []string{"order.*"}, harness.OK)

	url, _, _ := session(t, s, "acme", map[string]any{})
	var subID string

	t.Run("open the session link", func(t *testing.T) {
		b.t = t
		b.do(chromedp.Navigate(url))
		b.awaitText("h1", "Endpoints")
		if loc := eval[string](b, `location.href`); strings.Contains(loc, "session=") || strings.Contains(loc, "hlps_") {
			t.Fatalf("the token stayed in the address bar: %s", loc)
		}
		ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
		defer cancel()
		hist, err := chromedp.Run(ctx, chromedp.NavigationEntries())
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range hist.Entries {
			if strings.Contains(e.URL, "hlps_") {
				t.Fatalf("the browser's history keeps the token: %s", e.URL)
			}
		}
		if c := eval[string](b, `document.cookie`); c != "" {
			t.Fatalf("the session cookie is readable from JavaScript: %q", c)
		}
		if got := b.text(".brand"); got != "Acme webhooks" {
			t.Fatalf("brand %q", got)
		}
	})

	t.Run("create an endpoint", func(t *testing.T) {
		b.t = t
		b.click("#add-endpoint")
		b.awaitText("h1", "Add an endpoint")
		b.await("the picker offers order.created", `!!document.querySelector('input[name=type][value="order.created"]')`)
		if n := eval[int](b, `[...document.querySelectorAll('input,select,textarea')].filter(i => !i.labels.length && !i.getAttribute('aria-label')).length`); n != 0 {
			t.Fatalf("%d form fields without a label", n)
		}
		b.do(chromedp.SendKeys(chromedp.CSS("#url"), ok.URL), chromedp.SendKeys(chromedp.CSS("#description"), "orders"),
			chromedp.Click(chromedp.CSS(`input[name=type][value="order.created"]`)))
		b.shot("create")
		b.click("#create")
		b.await("the secret, shown once", `!!document.querySelector('#secret')`)
		secret := b.text("#secret")
		subID = strings.TrimPrefix(eval[string](b, `location.hash`), "#/endpoints/")
		if !strings.HasPrefix(secret, "whsec_") || !strings.HasPrefix(subID, "sub_") {
			t.Fatalf("secret %q, subscription %q", secret, subID)
		}
		if err := ok.Bind(subID, secret); err != nil {
			t.Fatal(err)
		}
		b.shot("endpoint")
		// Shown once: the page again has no secret.
		b.do(chromedp.Reload())
		b.awaitText("h1", ok.URL)
		if eval[bool](b, `!!document.querySelector('#secret')`) {
			t.Fatal("the secret is shown again after a reload")
		}
	})

	t.Run("send a test event and see it delivered", func(t *testing.T) {
		b.t = t
		b.click("#send-test")
		b.awaitText("#status", "sent")
		m := eventIDRe.FindStringSubmatch(b.text("#status"))
		if m == nil {
			t.Fatalf("status %q", b.text("#status"))
		}
		h := ok.AwaitDelivered(t, m[1], 30*time.Second)
		if h.Delivered != 1 {
			t.Fatalf("test event: %+v", h)
		}
		if st := ok.Stats(); len(st.BadSignatures) != 0 {
			t.Fatalf("the endpoint's secret did not verify: %v", st.BadSignatures)
		}
		b.click(`a[href$="/deliveries"]`)
		b.await("the delivered attempt", `[...document.querySelectorAll('#attempts tbody tr')].some(r => r.textContent.includes('`+m[1]+`') && r.textContent.includes('success'))`)
		b.shot("deliveries")
		b.click(`#attempts a[href*="/events/` + m[1] + `"]`)
		b.awaitText("#delivery-state", "delivered")
	})

	t.Run("a failing endpoint's attempts and circuit", func(t *testing.T) {
		b.t = t
		bad, badSub := s.Subscribe("acme", "bad", []string{"invoice.*"}, harness.Fail)
		var ids []string
		for i := range 3 {
			ids = append(ids, s.Publish("acme", "invoice.paid", fmt.Sprintf("inv_%d", i), `{"n":1}`))
		}
		for _, id := range ids {
			bad.AwaitAttempts(t, id, 3, 30*time.Second) // HOOKLINE_RETRY_SCHEDULE=0s,1s,1s: then dead-lettered
		}
		s.Checker.Await(t, 30*time.Second, 0)
		// The attempt records are written after the outcomes the checker
		// counts, and the page reads them once, as it loads: wait until the
		// API lists all nine (a page loaded before the last was written
		// waited for it in vain, once).
		awaitAttempts(t, s.API, badSub.ID, 9)
		b.do(chromedp.Navigate(strings.Split(url, "#")[0] + "#/endpoints/" + badSub.ID + "/deliveries"))
		b.await("failed attempts", `[...document.querySelectorAll('#attempts tbody tr')].filter(r => r.textContent.includes('500')).length >= 9`)
		b.do(chromedp.SetValue(chromedp.CSS(`select[name=outcome]`), "dead_letter"), chromedp.Click(chromedp.CSS(`#filters button`)))
		b.await("three dead-lettered attempts", `document.querySelectorAll('#attempts tbody tr').length === 3 && [...document.querySelectorAll('#attempts tbody tr')].every(r => r.textContent.includes('dead_letter'))`)
		// One event's story: the headers each attempt sends, secrets hidden.
		b.click(`#attempts a[href*="/events/` + ids[0] + `"]`)
		b.await("the request headers", `[...document.querySelectorAll('table tbody tr')].some(r => r.textContent.startsWith('Webhook-Id') && r.textContent.includes('`+ids[0]+`'))`)
		if sig := eval[string](b, `[...document.querySelectorAll('table tbody tr')].find(r => r.textContent.startsWith('Webhook-Signature')).children[1].textContent`); sig != "REDACTED" {
			t.Fatalf("the story shows the signature as %q", sig)
		}
		b.shot("story")
		b.do(chromedp.Navigate(strings.Split(url, "#")[0] + "#/endpoints/" + badSub.ID + "/deliveries"))
		b.await("the deliveries page", `!!document.querySelector('#attempts')`)
		b.click(`a[href$="/health"]`)
		b.await("the circuit", `!!document.querySelector('#circuit')`)
		if c := b.text("#circuit"); c != "open" && c != "half-open" {
			t.Fatalf("circuit %q after nine failures in a row; want open or half-open", c)
		}
		if got := b.text(".grid .card:nth-child(2) .v"); got != "9" {
			t.Fatalf("failures in a row %q, want 9", got)
		}
		if d := b.text("#deferrals"); !regexp.MustCompile(`^\d+( \(|$)`).MatchString(d) {
			t.Fatalf("deferrals of the last hour %q, want a count (from Redis)", d)
		}
		b.shot("health")

		t.Run("replay its dead letters after a dry run", func(t *testing.T) {
			b.t = t
			bad.SetBehavior(harness.OK)
			b.click(`a[href$="/recovery"]`)
			b.await("three dead letters", `document.querySelectorAll('#dead-letters tbody tr a').length === 3`)
			// Selected by event type: none of them is an order.
			b.do(chromedp.SendKeys(chromedp.CSS(`#replay-form input[name=type]`), "order.*"))
			b.click("#dry-run-btn")
			b.awaitText("#dry-run-count", "0 dead letters would be replayed")
			b.do(chromedp.SetValue(chromedp.CSS(`#replay-form input[name=type]`), "invoice.*"))
			b.click("#dry-run-btn")
			b.awaitText("#dry-run-count", "3 dead letters would be replayed")
			b.shot("recovery")
			b.click("#replay-btn")
			b.awaitText("#job-state", "done: 3 of 3 replayed")
			for _, id := range ids {
				if h := bad.AwaitDelivered(t, id, 30*time.Second); h.Delivered != 1 {
					t.Fatalf("%s after the replay: %+v", id, h)
				}
			}
			b.shot("replayed")
		})
	})

	t.Run("another tenant is out of reach", func(t *testing.T) {
		b.t = t
		b.do(chromedp.Navigate(strings.Split(url, "#")[0] + "#/endpoints/" + globex.ID))
		b.awaitText("h1", "Something went wrong")
		if p := b.text("main"); !strings.Contains(p, "not found") {
			t.Fatalf("another tenant's endpoint: %s", p)
		}
		// The API, called from the page with its cookie and CSRF token.
		st := eval[map[string]int](b, `(async () => {
			const s = await (await fetch('/portal/api/session')).json();
			const h = {'Content-Type': 'application/json', 'X-Hookline-CSRF': s.csrf_token};
			const get = await fetch('/portal/api/v1/subscriptions/`+globex.ID+`');
			const patch = await fetch('/portal/api/v1/subscriptions/`+globex.ID+`', {method: 'PATCH', headers: h, body: '{"disabled":true}'});
			const list = await fetch('/portal/api/v1/subscriptions?tenant=globex');
			const dls = await fetch('/portal/api/v1/dead-letters?tenant=globex');
			const test = await fetch('/portal/api/v1/subscriptions/`+globex.ID+`/test', {method: 'POST', headers: h});
			const noCSRF = await fetch('/portal/api/v1/subscriptions/`+subID+`', {method: 'PATCH', headers: {'Content-Type': 'application/json'}, body: '{"disabled":true}'});
			return {get: get.status, patch: patch.status, list: list.status, dls: dls.status, test: test.status, noCSRF: noCSRF.status};
		})()`)
		want := map[string]int{"get": 404, "patch": 404, "list": 403, "dls": 403, "test": 404, "noCSRF": 403}
		for k, v := range want {
			if st[k] != v {
				t.Errorf("%s: %d, want %d", k, st[k], v)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		g, err := s.API.GetSubscription(ctx, globex.ID)
		if err != nil || g.Disabled {
			t.Fatalf("globex's subscription after acme's attempts: %+v, %v", g, err)
		}
	})

	t.Run("phone width", func(t *testing.T) {
		b.t = t
		b.do(chromedp.EmulateViewport(390, 844), chromedp.Navigate(strings.Split(url, "#")[0]+"#/"))
		b.awaitText("h1", "Endpoints")
		if over := eval[bool](b, `document.documentElement.scrollWidth > window.innerWidth`); over {
			t.Fatal("the endpoints page scrolls sideways at 390 px")
		}
		b.shot("phone")
		b.do(chromedp.EmulateViewport(1280, 900))
	})

	t.Run("an expired session is refused", func(t *testing.T) {
		b.t = t
		b.do(chromedp.Navigate(strings.Split(url, "#")[0] + "#session=" + expiredToken("acme")))
		b.awaitText("h1", "Session ended")
		if p := b.text("#ended"); !strings.Contains(p, "expired") {
			t.Fatalf("expired session: %q", p)
		}
	})

	t.Run("a revoked session is refused, even while open", func(t *testing.T) {
		b.t = t
		u, _, id := session(t, s, "acme", map[string]any{"ttl_seconds": 300})
		b.do(chromedp.Navigate(u))
		b.awaitText("h1", "Endpoints")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.API.Do(ctx, http.MethodDelete, "/v1/tenants/acme/portal-sessions/"+id, nil, nil); err != nil {
			t.Fatal(err)
		}
		// Any next call finds the session revoked. Navigate by the hash, not
		// by clicking a link: the page's own refresh may already have found
		// it and replaced the links with "Session ended".
		eval[string](b, `location.hash = "#/endpoints/after-revoke"`)
		b.awaitText("h1", "Session ended")
		if p := b.text("#ended"); !strings.Contains(p, "revoked") {
			t.Fatalf("revoked session: %q", p)
		}
		b.shot("revoked")
		// A reload finds no cookie either: it was cleared.
		b.do(chromedp.Reload())
		b.awaitText("h1", "Session ended")
	})
}

// awaitAttempts polls the delivery API until subscription id lists n
// attempt records (30 s at most).
func awaitAttempts(t *testing.T, api *harness.API, id string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var out struct {
			Attempts []json.RawMessage `json:"attempts"`
		}
		err := api.Do(ctx, http.MethodGet, "/v1/subscriptions/"+id+"/attempts?limit=100", nil, &out)
		cancel()
		if err != nil {
			t.Fatalf("list attempts of %s: %v", id, err)
		}
		if len(out.Attempts) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d attempt records of %s listed after 30 s, want %d", len(out.Attempts), id, n)
		}
		time.Sleep(50 * time.Millisecond) // polling the API: nothing to await
	}
}
