package signing_test

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/signing"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

func mustHMAC(t testing.TB) string {
	t.Helper()
	s, err := signing.NewHMACSecret()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustEd25519(t testing.TB) (secret, public string) {
	t.Helper()
	s, p, err := signing.NewEd25519Key()
	if err != nil {
		t.Fatal(err)
	}
	return s, p
}

// referenceVerify checks a header with the Standard Webhooks reference
// library, clock and all.
func referenceVerify(t *testing.T, secret, id string, ts time.Time, body []byte, header string) error {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatalf("reference library refused our secret: %v", err)
	}
	h := http.Header{}
	h.Set(standardwebhooks.HeaderWebhookID, id)
	h.Set(standardwebhooks.HeaderWebhookTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(standardwebhooks.HeaderWebhookSignature, header)
	return wh.Verify(body, h)
}

// Conformance with the reference library: our v1 signatures verify with it,
// during a rotation either secret alone verifies, and a tampered body or a
// timestamp outside its tolerance fails.
func TestConformanceWithReferenceLibrary(t *testing.T) {
	t.Parallel()
	oldSecret, newSecret := mustHMAC(t), mustHMAC(t)
	id, body := "evt_01JABCDEF", []byte(`{"order_id":42,"note":"ünïcode"}`)
	now := time.Now()
	rotation, err := signing.Sign(id, now, body, newSecret, oldSecret)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(strings.Fields(rotation)); n != 2 {
		t.Fatalf("rotation header has %d entries, want 2: %q", n, rotation)
	}
	single, err := signing.Sign(id, now, body, newSecret)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		secret  string
		ts      time.Time
		body    []byte
		header  string
		wantErr error
	}{
		{name: "one secret", secret: newSecret, ts: now, body: body, header: single},
		{name: "rotation: new secret alone", secret: newSecret, ts: now, body: body, header: rotation},
		{name: "rotation: old secret alone", secret: oldSecret, ts: now, body: body, header: rotation},
		{name: "wrong secret", secret: mustHMAC(t), ts: now, body: body, header: rotation, wantErr: standardwebhooks.ErrNoMatchingSignature},
		{name: "tampered body", secret: newSecret, ts: now, body: []byte(`{"order_id":43,"note":"ünïcode"}`), header: rotation, wantErr: standardwebhooks.ErrNoMatchingSignature},
		{name: "tampered timestamp", secret: newSecret, ts: now.Add(time.Second), body: body, header: rotation, wantErr: standardwebhooks.ErrNoMatchingSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := referenceVerify(t, tt.secret, id, tt.ts, tt.body, tt.header)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("reference Verify = %v, want %v", err, tt.wantErr)
			}
			// Our own verifier agrees with the reference.
			ours := signing.Verify(id, tt.ts, tt.body, tt.header, tt.secret)
			if (ours == nil) != (tt.wantErr == nil) {
				t.Fatalf("signing.Verify = %v, reference = %v", ours, err)
			}
		})
	}

	t.Run("timestamp outside tolerance", func(t *testing.T) {
		t.Parallel()
		for _, ts := range []time.Time{now.Add(-10 * time.Minute), now.Add(10 * time.Minute)} {
			h, err := signing.Sign(id, ts, body, newSecret)
			if err != nil {
				t.Fatal(err)
			}
			err = referenceVerify(t, newSecret, id, ts, body, h)
			if !errors.Is(err, standardwebhooks.ErrMessageTooOld) && !errors.Is(err, standardwebhooks.ErrMessageTooNew) {
				t.Fatalf("reference Verify of a %s-old signature = %v, want too old/new", now.Sub(ts), err)
			}
		}
	})

	t.Run("reference signature verifies with ours", func(t *testing.T) {
		t.Parallel()
		wh, err := standardwebhooks.NewWebhook(newSecret)
		if err != nil {
			t.Fatal(err)
		}
		h, err := wh.Sign(id, now, body)
		if err != nil {
			t.Fatal(err)
		}
		if h != single {
			t.Fatalf("reference signs %q, we sign %q", h, single)
		}
		if err := signing.VerifyWithTolerance(id, now, body, h, now, signing.DefaultTolerance, newSecret); err != nil {
			t.Fatal(err)
		}
	})
}

func TestEd25519(t *testing.T) {
	t.Parallel()
	secret, public := mustEd25519(t)
	otherSecret, otherPublic := mustEd25519(t)
	id, body, ts := "evt_1", []byte(`{"a":1}`), time.Unix(1_700_000_000, 0)

	h, err := signing.Sign(id, ts, body, secret)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "v1a,") {
		t.Fatalf("ed25519 header %q does not start with v1a,", h)
	}
	derived, err := signing.PublicKey(secret)
	if err != nil || derived != public {
		t.Fatalf("PublicKey(secret) = %q, %v; want the generated public key", derived, err)
	}
	if p, err := signing.PublicKey(public); err != nil || p != public {
		t.Fatalf("PublicKey(public) = %q, %v; want it unchanged", p, err)
	}

	tests := []struct {
		name    string
		body    []byte
		keys    []string
		wantErr error
	}{
		{name: "public key", body: body, keys: []string{public}},
		{name: "secret key", body: body, keys: []string{secret}},
		{name: "other key then right key", body: body, keys: []string{otherPublic, public}},
		{name: "wrong public key", body: body, keys: []string{otherPublic}, wantErr: signing.ErrNoMatch},
		{name: "hmac secret does not verify v1a", body: body, keys: []string{mustHMAC(t)}, wantErr: signing.ErrNoMatch},
		{name: "tampered body", body: []byte(`{"a":2}`), keys: []string{public}, wantErr: signing.ErrNoMatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := signing.Verify(id, ts, tt.body, h, tt.keys...); !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify = %v, want %v", err, tt.wantErr)
			}
		})
	}

	t.Run("mixed rotation v1 and v1a", func(t *testing.T) {
		t.Parallel()
		hm := mustHMAC(t)
		mixed, err := signing.Sign(id, ts, body, otherSecret, hm)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{otherPublic, hm} {
			if err := signing.Verify(id, ts, body, mixed, k); err != nil {
				t.Errorf("Verify with one key of a mixed header: %v", err)
			}
		}
		if err := signing.Verify(id, ts, body, mixed, public); !errors.Is(err, signing.ErrNoMatch) {
			t.Errorf("Verify with an unrelated public key = %v, want ErrNoMatch", err)
		}
	})

	t.Run("32-byte seed form signs the same", func(t *testing.T) {
		t.Parallel()
		raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, signing.Ed25519SecretPrefix))
		seed := signing.Ed25519SecretPrefix + base64.StdEncoding.EncodeToString(raw[:32])
		h2, err := signing.Sign(id, ts, body, seed)
		if err != nil || h2 != h {
			t.Fatalf("seed form signs %q, %v; want %q", h2, err, h)
		}
	})

	t.Run("public key cannot sign", func(t *testing.T) {
		t.Parallel()
		if _, err := signing.Sign(id, ts, body, public); !errors.Is(err, signing.ErrVerifyOnly) {
			t.Fatalf("Sign with whpk_ = %v, want ErrVerifyOnly", err)
		}
	})
}

func TestVerifyWithTolerance(t *testing.T) {
	t.Parallel()
	secret := mustHMAC(t)
	id, body := "evt_1", []byte("{}")
	now := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name    string
		ts      time.Time
		wantErr error
	}{
		{name: "now", ts: now},
		{name: "edge of the past", ts: now.Add(-5 * time.Minute)},
		{name: "edge of the future", ts: now.Add(5 * time.Minute)},
		{name: "too old", ts: now.Add(-5*time.Minute - time.Second), wantErr: signing.ErrTooOld},
		{name: "too new", ts: now.Add(5*time.Minute + time.Second), wantErr: signing.ErrTooNew},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, err := signing.Sign(id, tt.ts, body, secret)
			if err != nil {
				t.Fatal(err)
			}
			err = signing.VerifyWithTolerance(id, tt.ts, body, h, now, 5*time.Minute, secret)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("VerifyWithTolerance = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestVerifyHeaders(t *testing.T) {
	t.Parallel()
	secret := mustHMAC(t)
	now := time.Unix(1_700_000_000, 0)
	body := []byte(`{"x":true}`)
	sig, err := signing.Sign("evt_9", now, body, secret)
	if err != nil {
		t.Fatal(err)
	}
	good := http.Header{}
	good.Set(signing.HeaderID, "evt_9")
	good.Set(signing.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	good.Set(signing.HeaderSignature, sig)
	badTS := good.Clone()
	badTS.Set(signing.HeaderTimestamp, "yesterday")
	noSig := good.Clone()
	noSig.Del(signing.HeaderSignature)
	tests := []struct {
		name    string
		h       http.Header
		wantErr error
	}{
		{name: "good", h: good},
		{name: "bad timestamp", h: badTS, wantErr: signing.ErrBadTimestamp},
		{name: "missing signature", h: noSig, wantErr: signing.ErrMissingHeaders},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := signing.VerifyHeaders(tt.h, body, now, 0, secret); !errors.Is(err, tt.wantErr) {
				t.Fatalf("VerifyHeaders = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// Errors never carry key material, whatever is wrong with the key.
func TestErrorsNeverShowKeyMaterial(t *testing.T) {
	t.Parallel()
	good := mustHMAC(t)
	edSecret, _ := mustEd25519(t)
	bad := []string{
		"whsec_not base64 !!! SUPERSECRETVALUE",
		"whsec_",
		"SUPERSECRETVALUE",
		"whsk_" + base64.StdEncoding.EncodeToString([]byte("SUPERSECRETVALUE-wrong-length")),
		"whpk_" + base64.StdEncoding.EncodeToString([]byte("SUPERSECRETVALUE")),
		// A 64-byte private key whose public half was tampered with.
		edSecret[:len(edSecret)-8] + "AAAAAAA=",
	}
	for i, s := range bad {
		t.Run(fmt.Sprintf("bad#%d", i), func(t *testing.T) {
			t.Parallel()
			_, signErr := signing.Sign("id", time.Now(), nil, good, s)
			verifyErr := signing.Verify("id", time.Now(), nil, "v1,AAAA", good, s)
			_, parseErr := signing.ParseKey(s)
			_, pubErr := signing.PublicKey(s)
			for _, err := range []error{signErr, verifyErr, parseErr, pubErr} {
				if !errors.Is(err, signing.ErrBadSecret) {
					t.Fatalf("error %v, want ErrBadSecret", err)
				}
				msg := err.Error()
				for _, leak := range []string{s, strings.TrimPrefix(s, "whsec_"), "SUPERSECRET", good, good[len("whsec_"):]} {
					if leak != "" && len(leak) > 3 && strings.Contains(msg, leak) {
						t.Fatalf("error %q contains key material", msg)
					}
				}
			}
			if !strings.Contains(signErr.Error(), "secret #2") {
				t.Fatalf("Sign error %q does not say which secret", signErr)
			}
		})
	}
	k, err := signing.ParseKey(good)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%v %+v %#v %s", k, k, k, k)} {
		if strings.Contains(s, good[len("whsec_"):len("whsec_")+8]) {
			t.Fatalf("formatting a Key shows material: %q", s)
		}
	}
	if _, err := signing.PublicKey(good); !errors.Is(err, signing.ErrBadSecret) {
		t.Fatalf("PublicKey(whsec_) = %v, want ErrBadSecret", err)
	}
}

// Sign through the cache and through a Keyring gives the same bytes, and
// many distinct secrets (more than the cache holds) stay correct.
func TestKeyringMatchesSign(t *testing.T) {
	t.Parallel()
	ts := time.Unix(1_700_000_000, 0)
	for i := range 5000 {
		s := "whsec_" + base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf("secret-%06d-padding", i)))
		wantRing, err := signing.ParseKeyring(s)
		if err != nil {
			t.Fatal(err)
		}
		want, err := wantRing.Sign("evt", ts, []byte("body"))
		if err != nil {
			t.Fatal(err)
		}
		got, err := signing.Sign("evt", ts, []byte("body"), s)
		if err != nil || got != want {
			t.Fatalf("secret %d: Sign = %q, %v; Keyring.Sign = %q", i, got, err, want)
		}
	}
}

func TestSignWithoutSecrets(t *testing.T) {
	t.Parallel()
	h, err := signing.Sign("id", time.Now(), []byte("x"))
	if err != nil || h != "" {
		t.Fatalf("Sign() = %q, %v; want an empty header", h, err)
	}
	if err := signing.Verify("id", time.Now(), []byte("x"), "v1,AAAA"); !errors.Is(err, signing.ErrNoKeys) {
		t.Fatalf("Verify without keys = %v, want ErrNoKeys", err)
	}
}
