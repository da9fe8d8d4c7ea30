package subscription_test

import (
	"strings"
	"testing"

	"github.com/hookline/hookline/pkg/secretbox"
	"github.com/hookline/hookline/pkg/subscription"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

func TestValidateHeader(t *testing.T) {
	t.Parallel()
	ok := map[string]string{"Authorization": "Bearer x", "x-api-key": "k", "X-Tab": "a\tb", "Cookie": "a=b"}
	for n, v := range ok {
		if err := subscription.ValidateHeader(n, v); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
	bad := []struct{ name, value, reason string }{
		{"Connection", "close", "hop-by-hop"},
		{"keep-alive", "1", "hop-by-hop"},
		{"TE", "trailers", "hop-by-hop"},
		{"Upgrade", "h2c", "hop-by-hop"},
		{"Proxy-Authorization", "x", "hop-by-hop"},
		{"host", "x", "subscription URL"},
		{"Content-Length", "1", "set by Hookline"},
		{"content-type", "x", "set by Hookline"},
		{"User-Agent", "x", "set by Hookline"},
		{"Idempotency-Key", "x", "set by Hookline"},
		{"Webhook-Id", "x", "webhook-*"},
		{"hookline-attempt", "x", "Hookline-*"},
		{"X-A", "a\nb", "CR or LF"},
		{"X-A", "a\rb", "CR or LF"},
		{"X-A", "a\x00b", "control"},
		{"X-A", " a", "whitespace"},
		{"X-A", "enc:v1:abc", "sealed"},
		{"X-A", "", "empty"},
		{"", "v", "empty"},
		{"X A", "v", "token"},
		{"X:A", "v", "token"},
		{strings.Repeat("x", subscription.MaxHeaderNameLen+1), "v", "at most"},
		{"X-A", strings.Repeat("v", subscription.MaxHeaderValueLen+1), "at most"},
	}
	for _, b := range bad {
		err := subscription.ValidateHeader(b.name, b.value)
		if err == nil || !strings.Contains(err.Error(), b.reason) {
			t.Errorf("%q=%q: %v, want %q", b.name, b.value, err, b.reason)
		}
		if err != nil && b.value != "" && len(b.value) > 3 && strings.Contains(err.Error(), b.value) {
			t.Errorf("%q: the error quotes the value", b.name)
		}
	}
}

func TestSealAndOpenHeaders(t *testing.T) {
	t.Parallel()
	key, _ := secretbox.NewKey()
	box, err := secretbox.Config{Key: key}.Box()
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := subscription.SealHeaders(box, map[string]string{"x-api-key": "k3y"}, nil)
	if err != nil || !strings.HasPrefix(sealed["X-Api-Key"], "enc:v1:") {
		t.Fatalf("%v %v", sealed, err)
	}
	kept, err := subscription.SealHeaders(box, map[string]string{"X-API-KEY": subscription.Redacted, "X-B": "b"}, sealed)
	if err != nil || kept["X-Api-Key"] != sealed["X-Api-Key"] {
		t.Fatalf("%v %v", kept, err)
	}
	if _, err := subscription.SealHeaders(box, map[string]string{"X-C": subscription.Redacted}, sealed); err == nil {
		t.Fatal("REDACTED without a stored value was accepted")
	}
	h, err := subscription.OpenHeaders(box, &hooklinev1.Subscription{Headers: kept})
	if err != nil || h["X-Api-Key"] != "k3y" || h["X-B"] != "b" {
		t.Fatalf("%v %v", h, err)
	}
	_, err = subscription.OpenHeaders(nil, &hooklinev1.Subscription{Headers: kept})
	if err == nil || strings.Contains(err.Error(), "k3y") {
		t.Fatalf("no key: %v", err)
	}
	if m := subscription.MaskHeaders(kept); m["X-Api-Key"] != subscription.Redacted || len(m) != 2 {
		t.Fatalf("mask %v", m)
	}
}
