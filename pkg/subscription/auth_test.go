package subscription_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/fixture"
	"github.com/hookline/hookline/pkg/secretbox"
	"github.com/hookline/hookline/pkg/subscription"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

func oauthAuth(secret string) *hooklinev1.EndpointAuth {
	return &hooklinev1.EndpointAuth{Type: subscription.AuthOAuth2ClientCredentials, TokenUrl: "https://auth.example/token",
		ClientId: "hookline", ClientSecret: secret}
}

// A client secret is sealed for the record, opened for the deliverer,
// REDACTED in answers; REDACTED keeps it only while the token endpoint and
// the client stay the same.
func TestSealOpenMaskAuth(t *testing.T) {
	t.Parallel()
	key, _ := secretbox.NewKey()
	box, err := secretbox.Config{Key: key}.Box()
	if err != nil {
		t.Fatal(err)
	}
	stored, err := subscription.SealAuth(box, oauthAuth("s3cret"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !secretbox.IsSealed(stored.GetClientSecret()) || strings.Contains(stored.GetClientSecret(), "s3cret") {
		t.Fatalf("stored secret %q is not sealed", stored.GetClientSecret())
	}
	if m := stored.GetTokenAuthMethod(); m != subscription.TokenAuthBasic {
		t.Fatalf("default token_auth_method %q", m)
	}
	opened, err := subscription.OpenAuth(box, &hooklinev1.Subscription{Auth: stored})
	if err != nil || opened.GetClientSecret() != "s3cret" {
		t.Fatalf("opened %q, %v", opened.GetClientSecret(), err)
	}
	if m := subscription.MaskAuth(stored); m.GetClientSecret() != subscription.Redacted || m.GetClientId() != "hookline" {
		t.Fatalf("masked %v", m)
	}
	if _, err := subscription.OpenAuth(nil, &hooklinev1.Subscription{Auth: stored}); !errors.Is(err, subscription.ErrAuthNoKey) {
		t.Fatalf("no key: %v", err)
	}

	kept, err := subscription.SealAuth(box, oauthAuth(subscription.Redacted), stored)
	if err != nil || kept.GetClientSecret() != stored.GetClientSecret() {
		t.Fatalf("REDACTED did not keep the secret: %v", err)
	}
	if errs := subscription.ValidateAuth(oauthAuth(subscription.Redacted), stored, time.Now()); errs != nil {
		t.Fatalf("REDACTED refused: %v", errs)
	}
	moved := oauthAuth(subscription.Redacted)
	moved.TokenUrl = "https://evil.example/token"
	if errs := subscription.ValidateAuth(moved, stored, time.Now()); errs["client_secret"] == nil {
		t.Fatalf("REDACTED with a new token_url accepted")
	}
	if _, err := subscription.SealAuth(box, moved, stored); !errors.Is(err, subscription.ErrRedactedAuth) {
		t.Fatalf("SealAuth with a new token_url and REDACTED: %v", err)
	}
	if a, err := subscription.SealAuth(box, &hooklinev1.EndpointAuth{}, stored); a != nil || err != nil {
		t.Fatalf("{} did not remove: %v %v", a, err)
	}
}

// An mTLS certificate must be PEM, valid now and match its key; the key
// is sealed and kept by REDACTED only while the certificate is the same.
func TestValidateMTLS(t *testing.T) {
	t.Parallel()
	_, cert, key := fixture.ClientCert(t, "hookline", time.Now().Add(time.Hour))
	_, expired, expiredKey := fixture.ClientCert(t, "old", time.Now().Add(-time.Minute))
	_, other, _ := fixture.ClientCert(t, "other", time.Now().Add(time.Hour))
	mtls := func(c, k string) *hooklinev1.EndpointAuth {
		return &hooklinev1.EndpointAuth{Type: subscription.AuthMTLS, Certificate: c, PrivateKey: k}
	}
	if errs := subscription.ValidateAuth(mtls(cert, key), nil, time.Now()); errs != nil {
		t.Fatalf("a valid pair: %v", errs)
	}
	for _, tc := range []struct {
		a            *hooklinev1.EndpointAuth
		field, words string
	}{
		{mtls(expired, expiredKey), "certificate", "expired"},
		{mtls(other, key), "private_key", "matching"},
		{mtls("not pem", key), "certificate", "PEM"},
		{mtls(cert, ""), "private_key", "required"},
		{mtls(cert, subscription.Redacted), "private_key", "REDACTED"},
		{&hooklinev1.EndpointAuth{Type: subscription.AuthMTLS, Certificate: cert, PrivateKey: key, ClientId: "x"}, "client_id", "not a field"},
	} {
		errs := subscription.ValidateAuth(tc.a, nil, time.Now())
		if errs[tc.field] == nil || !strings.Contains(errs[tc.field].Error(), tc.words) {
			t.Errorf("want %s %q, got %v", tc.field, tc.words, errs)
		}
		for _, err := range errs {
			if strings.Contains(err.Error(), "PRIVATE KEY") {
				t.Errorf("an error quotes the key: %v", err)
			}
		}
	}
	key2, _ := secretbox.NewKey()
	box, _ := secretbox.Config{Key: key2}.Box()
	stored, err := subscription.SealAuth(box, mtls(cert, key), nil)
	if err != nil || !secretbox.IsSealed(stored.GetPrivateKey()) || stored.GetCertificate() != cert {
		t.Fatalf("sealed %v %v", stored, err)
	}
	if errs := subscription.ValidateAuth(mtls(cert, subscription.Redacted), stored, time.Now()); errs != nil {
		t.Fatalf("REDACTED with the same certificate: %v", errs)
	}
	if errs := subscription.ValidateAuth(mtls(other, subscription.Redacted), stored, time.Now()); errs["private_key"] == nil {
		t.Fatal("REDACTED with another certificate accepted")
	}
	if m := subscription.MaskAuth(stored); m.GetPrivateKey() != subscription.Redacted || m.GetCertificate() != cert {
		t.Fatalf("masked %v", m)
	}
}
