package deliver_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/fixture"
	"github.com/hookline/hookline/pkg/secretbox"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/subscription"
	"github.com/hookline/hookline/pkg/wire"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

// TestSealedAuthWithoutKeyIsPermanent: a deliverer that cannot open an
// endpoint authentication's secret dead-letters the task rather than POST
// without the receiver's credential; the dead letter names the field,
// never its value.
func TestSealedAuthWithoutKeyIsPermanent(t *testing.T) {
	t.Parallel()
	key, _ := secretbox.NewKey()
	box, err := secretbox.Config{Key: key}.Box()
	if err != nil {
		t.Fatal(err)
	}
	_, cert, pk := fixture.ClientCert(t, "hookline", time.Now().Add(time.Hour))
	auths := map[string]*hooklinev1.EndpointAuth{
		"client_secret": {Type: subscription.AuthOAuth2ClientCredentials, TokenUrl: "http://127.0.0.1:9/token", ClientId: "c", ClientSecret: "cl1ent_s3cret"},
		"private_key":   {Type: subscription.AuthMTLS, Certificate: cert, PrivateKey: pk},
	}
	ep := endpoint(t, http.StatusOK, 0)
	r := newRig(t, stream.Config{AckWait: 10 * time.Second})
	i := 0
	for _, a := range auths {
		i++
		sealed, err := subscription.SealAuth(box, a, nil)
		if err != nil {
			t.Fatal(err)
		}
		r.createSub(t, &hooklinev1.Subscription{Id: fmt.Sprintf("sub_anokey%d", i), Url: ep.srv.URL + "/in", Auth: sealed})
	}
	r.run(t) // no Auth option: no key
	for n := 1; n <= len(auths); n++ {
		sub := &hooklinev1.Subscription{Id: fmt.Sprintf("sub_anokey%d", n)}
		r.taskWith(t, sub, fmt.Sprintf("evt_anokey%d", n), "order.created", "2026-01-02T15:04:05Z", []byte(`{}`))
	}
	eventually(t, "the dead letters", func() bool { return r.streamMsgs(t, stream.DeadLetter) == uint64(len(auths)) })
	fields := map[string]bool{}
	for n := 1; n <= len(auths); n++ {
		dl := r.deadLetter(t, uint64(n))
		if reason := dl.Header.Get(stream.HeaderReason); reason != wire.DeadLetterPermanentFailure {
			t.Fatalf("reason %q", reason)
		}
		last := dl.Header.Get(stream.HeaderLastError)
		if !strings.Contains(last, "HOOKLINE_SECRET_KEY") || strings.Contains(last, "s3cret") || strings.Contains(last, "PRIVATE KEY") {
			t.Fatalf("last error %q", last)
		}
		for f := range auths {
			if strings.Contains(last, "auth "+f) {
				fields[f] = true
			}
		}
	}
	if len(fields) != len(auths) {
		t.Fatalf("dead letters named %v, want every field", fields)
	}
	if ep.n.Load() != 0 {
		t.Fatal("POSTed without the endpoint authentication")
	}
}
