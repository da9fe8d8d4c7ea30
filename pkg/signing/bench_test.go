package signing_test

import (
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/signing"
)

var (
	fixedTime  = time.Unix(1_700_000_000, 0)
	fuzzHMAC   = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	fuzzPublic = "whpk_O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik="
)

// BenchmarkSign is the deliverer's hot path: sign a 1 KiB body with one
// secret, and with two while a rotation overlaps. "strings" is Sign with
// secret strings (parsed keys come from a cache), "keyring" a Keyring parsed
// once, "parse_every_call" ParseKeyring+Sign each time (no cache: the cost
// of decoding), "ed25519" a v1a key.
func BenchmarkSign(b *testing.B) {
	body := make([]byte, 1024)
	s1, s2 := mustHMAC(b), mustHMAC(b)
	ed, _ := mustEd25519(b)
	for _, bc := range []struct {
		name    string
		secrets []string
	}{
		{"one_secret", []string{s1}},
		{"two_secrets", []string{s1, s2}},
		{"ed25519", []string{ed}},
	} {
		b.Run(bc.name+"/strings", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := signing.Sign("evt_01J", fixedTime, body, bc.secrets...); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(bc.name+"/keyring", func(b *testing.B) {
			ring, err := signing.ParseKeyring(bc.secrets...)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ring.Sign("evt_01J", fixedTime, body); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(bc.name+"/parse_every_call", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ring, err := signing.ParseKeyring(bc.secrets...)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := ring.Sign("evt_01J", fixedTime, body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	body := make([]byte, 1024)
	s1 := mustHMAC(b)
	h, err := signing.Sign("evt_01J", fixedTime, body, s1)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := signing.Verify("evt_01J", fixedTime, body, h, s1); err != nil {
			b.Fatal(err)
		}
	}
}
