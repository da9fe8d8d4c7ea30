package security_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/auth"
	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/pkg/secretbox"
	"github.com/hookline/hookline/pkg/signing"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/subscription"
	"github.com/hookline/hookline/tests/harness"
	"github.com/nats-io/nats.go/jetstream"
)

// bearer adds a token to every request of a harness.API.
type bearer struct{ token string }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}

func apiAs(base, token string) *harness.API {
	a := harness.NewAPI(base)
	a.Client = &http.Client{Timeout: 15 * time.Second, Transport: bearer{token}}
	return a
}

// The whole system as production runs it, everything switched on: NATS
// with the example least-privilege users, Redis with the example ACL,
// API tokens, secrets sealed at rest, the SSRF policy. It delivers
// (HMAC with a rotation, ed25519), retries and dead-letters, refuses a
// blocked destination, and hookctl reads the dead letters with its own
// user. No component ever trips a permission, and the logs of all of it
// hold no secret, token, password, sealed value, signature or URL query.
func TestEndToEndLeastPrivilegeLogsHoldNoSecrets(t *testing.T) {
	bins := harness.Build(t)
	natsURL, natsPW := startSecureNATS(t)
	redisAddr, redisPW := startSecureRedis(t)
	admin := connect(t, natsURL, "admin", natsPW["admin"])

	secretKey, err := secretbox.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	const (
		adminToken   = "e2e-admin-token-7d1c9e0b"
		publishToken = "e2e-publish-acme-4a2f8c61"
		wrongToken   = "e2e-wrong-token-0f3e5d27"
		querySecret  = "query-secret-6b9d2e"
	)
	tokens := "ops:" + auth.HashToken(adminToken) + ":admin\nci:" + auth.HashToken(publishToken) + ":publish:acme"

	common := harness.DefaultEnv.With(harness.Env{
		"HOOKLINE_NATS_URL":     natsURL,
		"HOOKLINE_REDIS_URL":    "redis://" + redisAddr + "/0",
		"HOOKLINE_SECRET_KEY":   secretKey,
		"HOOKLINE_LOG_LEVEL":    "debug",
		"HOOKLINE_LOG_FORMAT":   "json",
		"HOOKLINE_HTTP_TIMEOUT": "2s",
		// The shipped users cannot change a stream: the services only
		// check the topology, which the admin step below creates.
		"HOOKLINE_TOPOLOGY": "check",
	})
	// The admin step, as k8s runs it: `deliverer topology` as admin.
	topo := exec.Command(bins.Deliverer, "topology")
	topo.Env = os.Environ()
	for k, v := range common.With(harness.Env{"HOOKLINE_NATS_USER": "admin", "HOOKLINE_NATS_PASSWORD": natsPW["admin"]}) {
		topo.Env = append(topo.Env, k+"="+v)
	}
	if out, err := topo.CombinedOutput(); err != nil {
		t.Fatalf("deliverer topology as admin: %v\n%s", err, out)
	}
	producer := harness.StartProducer(t, bins, "producer", common.With(harness.Env{
		"HOOKLINE_NATS_USER":           "producer",
		"HOOKLINE_NATS_PASSWORD":       natsPW["producer"],
		"HOOKLINE_REDIS_USERNAME":      "producer",
		"HOOKLINE_REDIS_PASSWORD":      redisPW["producer"],
		"HOOKLINE_API_TOKENS":          tokens,
		"HOOKLINE_ALLOW_PRIVATE_CIDRS": "127.0.0.0/8",
	}))
	// The deliverer allows only 127.0.0.1: a subscription on 127.0.0.2
	// passes the producer's check and is refused at connect time.
	deliverer := harness.StartDeliverer(t, bins, "deliverer", common.With(harness.Env{
		"HOOKLINE_NATS_USER":           "deliverer",
		"HOOKLINE_NATS_PASSWORD":       natsPW["deliverer"],
		"HOOKLINE_REDIS_USERNAME":      "deliverer",
		"HOOKLINE_REDIS_PASSWORD":      redisPW["deliverer"],
		"HOOKLINE_ALLOW_PRIVATE_CIDRS": "127.0.0.1/32",
	}))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ops, ci := apiAs(producer.URL(), adminToken), apiAs(producer.URL(), publishToken)
	var sae *harness.StatusError
	if _, err := apiAs(producer.URL(), wrongToken).Publish(ctx, harness.Event{Tenant: "acme", Type: "order.created", Data: []byte(`{}`)}); !errors.As(err, &sae) || sae.Status != 401 {
		t.Fatalf("a wrong token: %v, want 401", err)
	}
	if _, err := ci.CreateSubscription(ctx, "acme", "https://x.example/", []string{"a"}); !errors.As(err, &sae) || sae.Status != 403 {
		t.Fatalf("a publish token creating a subscription: %v, want 403", err)
	}

	recv := harness.NewReceiver(t)
	ok, failing, ed := recv.Endpoint("ok"), recv.Endpoint("failing"), recv.Endpoint("ed25519")
	failing.SetBehavior(harness.Status(http.StatusInternalServerError))
	secrets := []string{}
	create := func(ep *harness.Endpoint, url string, bind bool) harness.Subscription {
		sub, err := ops.CreateSubscription(ctx, "acme", url, []string{"order.*"})
		if err != nil {
			t.Fatalf("create subscription: %v", err)
		}
		secrets = append(secrets, sub.Secret)
		if bind {
			if err := ep.Bind(sub.ID, sub.Secret); err != nil {
				t.Fatal(err)
			}
		}
		return sub
	}
	okSub := create(ok, ok.URL+"?token="+querySecret, true)
	failingSub := create(failing, failing.URL, true)
	// A receiver's own credential as a custom header, on a subscription
	// that delivers and on one whose attempts fail and are dead-lettered.
	const headerSecret = "header-secret-3c8a1f"
	for _, id := range []string{okSub.ID, failingSub.ID} {
		var patched map[string]any
		if err := ops.Do(ctx, "PATCH", "/v1/subscriptions/"+id, map[string]any{
			"headers": map[string]string{"X-Api-Key": headerSecret},
		}, &patched); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(patched["headers"]) != "map[X-Api-Key:REDACTED]" {
			t.Fatalf("PATCH answered headers %v", patched["headers"])
		}
	}
	// An OAuth 2.0 client of the receiver's own token endpoint: its
	// secret and the access token it yields must stay out of every log,
	// answer, attempt record and dead letter too.
	const (
		oauthSecret = "oauth-client-secret-5e7b2d"
		accessToken = "oauth-access-token-91c4af"
	)
	tokenSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id, secret, ok := r.BasicAuth(); !ok || id != "hookline" || secret != oauthSecret {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":%q,"token_type":"Bearer","expires_in":3600}`, accessToken)
	}))
	defer tokenSrv.Close()
	oauthEP := recv.Endpoint("oauth")
	oauthSub := create(oauthEP, oauthEP.URL, true)
	var patchedAuth map[string]any
	if err := ops.Do(ctx, "PATCH", "/v1/subscriptions/"+oauthSub.ID, map[string]any{"auth": map[string]string{
		"type": "oauth2_client_credentials", "token_url": tokenSrv.URL + "/token", "client_id": "hookline", "client_secret": oauthSecret,
	}}, &patchedAuth); err != nil {
		t.Fatal(err)
	}
	if a, _ := patchedAuth["auth"].(map[string]any); a["client_secret"] != "REDACTED" {
		t.Fatalf("PATCH answered auth %v", patchedAuth["auth"])
	}
	blockedURL := strings.Replace(ok.URL, "127.0.0.1", "127.0.0.2", 1) + "?token=" + querySecret
	create(nil, blockedURL, false)
	type keyed struct {
		ID        string `json:"id"`
		Secret    string `json:"secret"`
		PublicKey string `json:"public_key"`
	}
	var edSub, edFull keyed
	if err := ops.Do(ctx, "POST", "/v1/subscriptions", map[string]any{
		"tenant": "acme", "url": ed.URL, "event_types": []string{"order.*"}, "signature_scheme": "v1a",
	}, &edSub); err != nil {
		t.Fatal(err)
	}
	if err := ops.Do(ctx, "GET", "/v1/subscriptions/"+edSub.ID, nil, &edFull); err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, edSub.Secret)

	first, err := ci.Publish(ctx, harness.Event{Tenant: "acme", Type: "order.created", Data: []byte(`{"n":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	if got := ok.AwaitDelivered(t, first.ID, 30*time.Second).Header.Get("X-Api-Key"); got != headerSecret {
		t.Fatalf("the custom header arrived as %q", got)
	}
	if got := oauthEP.AwaitDelivered(t, first.ID, 30*time.Second).Header.Get("Authorization"); got != "Bearer "+accessToken {
		t.Fatalf("the OAuth subscription's request carried Authorization %q", got)
	}
	// No answer of the API holds them.
	for _, path := range []string{"/v1/subscriptions/" + oauthSub.ID, "/v1/subscriptions?tenant=acme"} {
		var answer map[string]any
		if err := ops.Do(ctx, "GET", path, nil, &answer); err != nil {
			t.Fatal(err)
		}
		if b := jsonString(answer); strings.Contains(b, oauthSecret) || strings.Contains(b, accessToken) || !strings.Contains(b, `"client_secret":"REDACTED"`) {
			t.Errorf("GET %s: %s", path, b)
		}
	}

	// Rotate: the next event is signed with both secrets.
	var rotated harness.Subscription
	if err := ops.Do(ctx, "POST", "/v1/subscriptions/"+okSub.ID+"/rotate-secret", nil, &rotated); err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, rotated.Secret)
	second, err := ci.Publish(ctx, harness.Event{Tenant: "acme", Type: "order.created", Data: []byte(`{"n":2}`)})
	if err != nil {
		t.Fatal(err)
	}
	// The producer's least-privilege NATS and Redis users cover its event
	// id marks and the stats' endpoint health: each stored id is marked
	// (asynchronously), an explicit id is looked up, the stats read Redis.
	again, err := ci.Publish(ctx, harness.Event{ID: first.ID, Tenant: "acme", Type: "order.created", Data: []byte(`{"n":1}`)})
	if err != nil || !again.Duplicate {
		t.Fatalf("the same id again: %+v %v, want a duplicate", again, err)
	}
	marks, err := admin.js.KeyValue(ctx, stream.EventIDsBucket)
	if err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 10*time.Second, func() error {
		_, err := marks.Get(ctx, stream.EventIDKey("acme", second.ID))
		return err
	})
	var stats struct {
		Health *struct {
			Circuit string `json:"circuit"`
		} `json:"health"`
	}
	if err := ops.Do(ctx, "GET", "/v1/subscriptions/"+okSub.ID+"/stats", nil, &stats); err != nil || stats.Health == nil || stats.Health.Circuit != "closed" {
		t.Fatalf("stats as the producer's Redis user: %+v %v, want health with a closed circuit", stats.Health, err)
	}
	var signatures []string
	for _, id := range []string{first.ID, second.ID} {
		h := ok.AwaitDelivered(t, id, 30*time.Second)
		signatures = append(signatures, h.Header.Get(signing.HeaderSignature))
		h = ed.AwaitDelivered(t, id, 30*time.Second)
		signatures = append(signatures, h.Header.Get(signing.HeaderSignature))
		if err := signing.VerifyHeaders(h.Header, h.Body, time.Now(), 0, edSub.PublicKey); err != nil || edFull.PublicKey != edSub.PublicKey {
			t.Fatalf("ed25519 delivery of %s: %v (public key from GET %q)", id, err, edFull.PublicKey)
		}
	}
	h := ok.Hits(second.ID)
	for _, s := range []string{okSub.Secret, rotated.Secret} {
		if err := signing.VerifyHeaders(h.Header, h.Body, time.Now(), 0, s); err != nil {
			t.Fatalf("during the rotation overlap one secret alone does not verify: %v", err)
		}
	}
	if bad := ok.Stats().BadSignatures; len(bad) != 0 {
		t.Fatalf("bad signatures: %v", bad)
	}

	// Dead letters: the failing endpoint after its attempts, the blocked
	// one at once; nothing ever reached 127.0.0.2.
	dls := func() map[string]int {
		out := map[string]int{}
		for _, m := range natstest.Messages(t, admin.js, stream.DeadLetter) {
			out[m.Header.Get(stream.HeaderReason)]++
		}
		return out
	}
	harness.Eventually(t, 60*time.Second, func() error {
		if d := dls(); d["attempts_exhausted"] < 2 || d["blocked_destination"] < 2 {
			return errors.New("dead letters so far: " + jsonString(d))
		}
		return nil
	})

	// hookctl with its own least-privileged user lists them.
	out, errOut, err := harness.RunHookctl(ctx, bins, harness.Env{
		"HOOKLINE_NATS_URL":      natsURL,
		"HOOKLINE_NATS_USER":     "hookctl",
		"HOOKLINE_NATS_PASSWORD": natsPW["hookctl"],
		"HOOKLINE_API_URL":       producer.URL(),
	}, "dlq", "ls")
	if err != nil || !strings.Contains(out, "blocked_destination") {
		t.Fatalf("hookctl dlq ls as hookctl: %v\n%s\n%s", err, out, errOut)
	}

	// Replay as hookctl: the deliverer re-sends exactly what DEADLETTER
	// held (hookctl may not publish a task itself).
	var held []*jetstream.RawStreamMsg
	for _, m := range natstest.Messages(t, admin.js, stream.DeadLetter) {
		if m.Header.Get(stream.HeaderSubscriptionID) == failingSub.ID && m.Header.Get(stream.HeaderReason) == "attempts_exhausted" {
			held = append(held, m)
		}
	}
	if len(held) != 2 {
		t.Fatalf("%d dead letters of the failing subscription, want 2", len(held))
	}
	failing.SetBehavior(harness.Status(http.StatusOK))
	replayOut, replayErr, err := harness.RunHookctl(ctx, bins, harness.Env{
		"HOOKLINE_NATS_URL":      natsURL,
		"HOOKLINE_NATS_USER":     "hookctl",
		"HOOKLINE_NATS_PASSWORD": natsPW["hookctl"],
		"HOOKLINE_API_URL":       producer.URL(),
	}, "dlq", "replay", "--subscription", failingSub.ID, "--rate", "0")
	if err != nil || !strings.Contains(replayOut, "replayed 2 of 2") {
		t.Fatalf("hookctl dlq replay as hookctl: %v\n%s\n%s", err, replayOut, replayErr)
	}
	for _, m := range held {
		h := failing.AwaitDelivered(t, m.Header.Get(stream.HeaderEventID), 30*time.Second)
		env, err := harness.ParseEnvelope(h.Body)
		if err != nil {
			t.Fatal(err)
		}
		if string(env.Data) != string(m.Data) {
			t.Fatalf("replayed %s: delivered %q, DEADLETTER held %q", m.Header.Get(stream.HeaderEventID), h.Body, m.Data)
		}
	}
	out += replayOut
	errOut += replayErr

	// The sealed values in the registry, to look for in the logs too.
	kv, err := admin.js.KeyValue(ctx, stream.SubscriptionsBucket)
	if err != nil {
		t.Fatal(err)
	}
	var sealed []string
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for k := range keys.Keys() {
		e, err := kv.Get(ctx, k)
		if err != nil {
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				continue
			}
			t.Fatal(err)
		}
		sub, err := subscription.Unmarshal(e.Value())
		if err != nil {
			t.Fatal(err)
		}
		for _, key := range sub.GetKeys() {
			if !strings.HasPrefix(key.GetSecret(), "enc:v2:") {
				t.Fatalf("subscription %s holds a key in clear in the registry", sub.GetId())
			}
			sealed = append(sealed, key.GetSecret())
		}
	}

	for _, p := range []*harness.Service{producer, deliverer} {
		if _, err := p.Stop(15 * time.Second); err != nil {
			t.Errorf("%s: %v", p.Name, err)
		}
	}

	forbidden := map[string]string{
		"HOOKLINE_SECRET_KEY": secretKey, "admin token": adminToken, "publish token": publishToken,
		"wrong token": wrongToken, "URL query": querySecret, "custom header": headerSecret,
		"OAuth client secret": oauthSecret, "OAuth access token": accessToken,
	}
	// Nor does any attempt record or dead letter hold the custom header
	// or the OAuth secrets.
	for _, name := range []string{stream.Attempts, stream.DeadLetter} {
		for _, m := range natstest.Messages(t, admin.js, name) {
			for _, secret := range []string{headerSecret, oauthSecret, accessToken} {
				if strings.Contains(string(m.Data), secret) || strings.Contains(fmt.Sprint(m.Header), secret) {
					t.Errorf("a message of %s holds a credential", name)
				}
			}
		}
	}
	for user, pw := range natsPW {
		forbidden["NATS password of "+user] = pw
	}
	for user, pw := range redisPW {
		forbidden["Redis password of "+user] = pw
	}
	for i, s := range secrets {
		_, b64, _ := strings.Cut(s, "_")
		forbidden[fmt.Sprintf("signing secret #%d", i+1)] = b64
	}
	for i, s := range sealed {
		forbidden[fmt.Sprintf("sealed secret #%d", i+1)] = s[len("enc:v1:"):]
	}
	for i, s := range signatures {
		for j, entry := range strings.Fields(s) {
			_, sig, _ := strings.Cut(entry, ",")
			forbidden[fmt.Sprintf("signature #%d.%d", i+1, j+1)] = sig
		}
	}
	sigPattern := regexp.MustCompile(`v1a?,[A-Za-z0-9+/]{40,}={0,2}`)
	logs := map[string]string{
		"producer": producer.Log(), "deliverer": deliverer.Log(), "hookctl": out + errOut,
	}
	for name, text := range logs {
		if !strings.Contains(text, "{") && name != "hookctl" {
			t.Fatalf("%s wrote no JSON log lines: the scan would prove nothing", name)
		}
		for what, value := range forbidden {
			if value != "" && strings.Contains(text, value) {
				t.Errorf("%s's log contains the %s", name, what)
			}
		}
		for _, bad := range []string{"Bearer ", "whsec_", "whsk_", "enc:v1:", "enc:v2:", "Permissions Violation", "permissions violation", "NOPERM"} {
			if strings.Contains(text, bad) {
				t.Errorf("%s's log contains %q:\n%s", name, bad, lineWith(text, bad))
			}
		}
		if m := sigPattern.FindString(text); m != "" {
			t.Errorf("%s's log contains a signature-like value %q", name, m)
		}
	}
	if !strings.Contains(logs["deliverer"], "blocked") {
		t.Error("the deliverer logged nothing about the blocked destination: the scan covered less than intended")
	}
}

func lineWith(text, s string) string {
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
