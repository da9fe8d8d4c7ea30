package service_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/subscription"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

// TestSealedURLIsOpenedWithTheSecretKey: the service opens a sealed URL
// with HOOKLINE_SECRET_KEY, so the receiver gets the credential the record
// holds only sealed; no log line holds it.
func TestSealedURLIsOpenedWithTheSecretKey(t *testing.T) {
	t.Parallel()
	key, box := sealingKey(t)
	e := start(t, map[string]string{"HOOKLINE_SECRET_KEY": key})
	got := make(chan string, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.URL.RequestURI()
	}))
	t.Cleanup(srv.Close)

	full := srv.URL + "/in?api_key=k3y_s3rvice&v=1"
	masked, sealed, err := subscription.SealURL(box, full)
	if err != nil {
		t.Fatal(err)
	}
	sub, _ := e.subscribe(t, masked, "order.*")
	e.update(t, sub.GetId(), func(s *hooklinev1.Subscription) { s.SealedUrl = sealed })
	e.publish(t, "order.created", "evt_sealed_url", `{"n":1}`)
	select {
	case uri := <-got:
		if uri != "/in?api_key=k3y_s3rvice&v=1" {
			t.Fatalf("the receiver saw %s", uri)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery")
	}
	for _, entry := range e.logs.All() {
		if line := fmt.Sprint(entry.Message, entry.ContextMap()); strings.Contains(line, "k3y_s3rvice") {
			t.Fatalf("a log line holds the URL credential: %s", line)
		}
	}
}
