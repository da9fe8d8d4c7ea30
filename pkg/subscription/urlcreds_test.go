package subscription_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/hookline/hookline/pkg/secretbox"
	"github.com/hookline/hookline/pkg/subscription"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

func TestMaskURL(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in, want string
		has      bool
	}{
		{"https://example.com/hook", "https://example.com/hook", false},
		{"https://example.com/hook?tenant=acme&v=2", "https://example.com/hook?tenant=acme&v=2", false},
		{"https://example.com/hook?api_key=s3cr3t", "https://example.com/hook?api_key=REDACTED", true},
		{"https://example.com/h?a=1&Token=s3cr3t;X-Api-Key=k3y&b=%20", "https://example.com/h?a=1&Token=REDACTED;X-Api-Key=REDACTED&b=%20", true},
		{"https://example.com/h?access_token=a&password=b&client_secret=c&sig=d&apikey=e&key=f&auth=g&session_id=h",
			"https://example.com/h?access_token=REDACTED&password=REDACTED&client_secret=REDACTED&sig=REDACTED&apikey=REDACTED&key=REDACTED&auth=REDACTED&session_id=REDACTED", true},
		{"https://example.com/h?%74oken=s3cr3t", "https://example.com/h?%74oken=REDACTED", true}, // %74 = t
		{"https://example.com/h?token=", "https://example.com/h?token=", false},
		{"https://user:pa55@example.com/h", "https://user:REDACTED@example.com/h", true},
		{"https://tok_123@example.com/h", "https://REDACTED@example.com/h", true},
		{"https://example.com/h?api_key=REDACTED", "https://example.com/h?api_key=REDACTED", false},
	} {
		got, has := subscription.MaskURL(tt.in)
		if got != tt.want || has != tt.has {
			t.Errorf("MaskURL(%q) = %q, %v; want %q, %v", tt.in, got, has, tt.want, tt.has)
		}
		if again, has := subscription.MaskURL(got); again != got || has {
			t.Errorf("MaskURL is not idempotent on %q: %q, %v", got, again, has)
		}
	}
}

func TestSealAndOpenURL(t *testing.T) {
	t.Parallel()
	key, _ := secretbox.NewKey()
	box, err := (secretbox.Config{Key: key}).Box()
	if err != nil {
		t.Fatal(err)
	}
	const full = "https://user:pa55@example.com/h?api_key=s3cr3t&v=1"
	masked, sealed, err := subscription.SealURL(box, full)
	if err != nil {
		t.Fatal(err)
	}
	if masked != "https://user:REDACTED@example.com/h?api_key=REDACTED&v=1" || !secretbox.IsSealed(sealed) {
		t.Fatalf("masked %q sealed %q", masked, sealed)
	}
	if strings.Contains(sealed, "s3cr3t") || strings.Contains(sealed, "pa55") {
		t.Fatal("the sealed url holds a credential in clear")
	}
	sub := &hooklinev1.Subscription{Url: masked, SealedUrl: sealed}
	if got, err := subscription.OpenURL(box, sub); err != nil || got != full {
		t.Fatalf("OpenURL = %q, %v", got, err)
	}
	if _, err := subscription.OpenURL(nil, sub); !errors.Is(err, subscription.ErrURLNoKey) {
		t.Fatalf("OpenURL without a key: %v", err)
	}
	// A sealed URL moved onto a record whose url masks another one.
	moved := &hooklinev1.Subscription{Url: "https://evil.example/h?api_key=REDACTED&v=1", SealedUrl: sealed}
	if _, err := subscription.OpenURL(box, moved); !errors.Is(err, subscription.ErrSealedURLMismatch) {
		t.Fatalf("OpenURL of a moved sealed url: %v", err)
	}
	// No credentials: nothing sealed, the url as given.
	if m, s, err := subscription.SealURL(box, "https://example.com/h?v=1"); m != "https://example.com/h?v=1" || s != "" || err != nil {
		t.Fatalf("SealURL without credentials = %q, %q, %v", m, s, err)
	}
	if got, err := subscription.OpenURL(box, &hooklinev1.Subscription{Url: "https://example.com/h"}); got != "https://example.com/h" || err != nil {
		t.Fatalf("OpenURL without sealed url = %q, %v", got, err)
	}
}
