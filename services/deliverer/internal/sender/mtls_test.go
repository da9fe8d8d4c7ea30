package sender_test

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/fixture"
	"github.com/hookline/hookline/services/deliverer/internal/sender"
)

// An endpoint that requires a client certificate gets the subscription's
// own: a subscription without one fails the handshake (class tls), one
// with a certificate its CA does not trust too, and connections made with
// one subscription's certificate are never lent to another.
func TestMTLSClientCertificate(t *testing.T) {
	t.Parallel()
	ca, cert, key := fixture.ClientCert(t, "sub-a", time.Now().Add(time.Hour))
	_, otherCert, otherKey := fixture.ClientCert(t, "sub-b", time.Now().Add(time.Hour))
	var (
		mu   sync.Mutex
		seen []string
	)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.TLS.PeerCertificates[0].Subject.CommonName)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	s := newSender(t, sender.Options{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs})

	with := func(key string, c *sender.ClientCert) sender.Request {
		r := request(srv.URL + "/hook")
		r.Auth = sender.Auth{Key: key, Cert: c}
		return r
	}
	if res := s.Send(context.Background(), with("", nil)); res.ErrorClass != sender.ClassTLS {
		t.Fatalf("without a client certificate: %+v, want class tls", res)
	}
	for range 2 {
		if res := s.Send(context.Background(), with("sub_a", &sender.ClientCert{CertificatePEM: cert, PrivateKeyPEM: key})); !res.OK() {
			t.Fatalf("with the client certificate: %+v", res)
		}
	}
	// Another subscription's certificate, from a CA the server does not
	// trust: refused, although a connection with sub_a's is idle.
	if res := s.Send(context.Background(), with("sub_b", &sender.ClientCert{CertificatePEM: otherCert, PrivateKeyPEM: otherKey})); res.OK() || res.ErrorClass != sender.ClassTLS {
		t.Fatalf("an untrusted client certificate: %+v, want class tls", res)
	}
	// A pair that does not load: a clear error, never the key.
	res := s.Send(context.Background(), with("sub_c", &sender.ClientCert{CertificatePEM: cert, PrivateKeyPEM: otherKey}))
	if res.ErrorClass != sender.ClassTLS || strings.Contains(res.Err.Error(), "PRIVATE KEY") || !strings.Contains(res.Err.Error(), "client certificate") {
		t.Fatalf("a mismatched pair: %+v", res)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(seen, ",") != "sub-a,sub-a" {
		t.Fatalf("the server saw client certificates %v, want sub-a twice", seen)
	}
}
