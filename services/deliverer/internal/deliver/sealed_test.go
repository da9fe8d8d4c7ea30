package deliver

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/secretbox"
	"github.com/hookline/hookline/pkg/subscription"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestOpenedSecrets(t *testing.T) {
	t.Parallel()
	k1, _ := secretbox.NewKey()
	k2, _ := secretbox.NewKey()
	box, err := secretbox.Config{Key: k1}.Box()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := secretbox.Config{Key: k2}.Box()
	now := time.Unix(1_700_000_000, 0)
	seal := func(b *secretbox.Box, s string) string {
		out, err := b.Seal(s)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	key := func(secret string, expires time.Duration) *hooklinev1.SigningKey {
		k := &hooklinev1.SigningKey{Secret: secret}
		if expires != 0 {
			k.ExpiresAt = timestamppb.New(now.Add(expires))
		}
		return k
	}
	const a, b = "whsec_QUFBQUFBQUFBQUFB", "whsec_QkJCQkJCQkJCQkJC"
	tests := []struct {
		name    string
		box     *secretbox.Box
		keys    []*hooklinev1.SigningKey
		want    []string
		wantErr error
	}{
		{name: "sealed", box: box, keys: []*hooklinev1.SigningKey{key(seal(box, a), 0)}, want: []string{a}},
		{name: "sealed and clear during a rotation", box: box, keys: []*hooklinev1.SigningKey{key(seal(box, a), 0), key(b, time.Hour)}, want: []string{a, b}},
		{name: "expired skipped", box: box, keys: []*hooklinev1.SigningKey{key(seal(box, a), 0), key(seal(box, b), -time.Second)}, want: []string{a}},
		{name: "clear without a key", box: nil, keys: []*hooklinev1.SigningKey{key(a, 0)}, want: []string{a}},
		{name: "sealed without a key", box: nil, keys: []*hooklinev1.SigningKey{key(seal(box, a), 0)}, wantErr: ErrEncryptedKey},
		{name: "sealed with another key", box: other, keys: []*hooklinev1.SigningKey{key(seal(box, a), 0)}, wantErr: secretbox.ErrDecrypt},
		{name: "all expired", box: box, keys: []*hooklinev1.SigningKey{key(seal(box, a), -time.Minute)}, wantErr: ErrNoSigningKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := openedSecrets(tt.box, &hooklinev1.Subscription{Keys: tt.keys}, now)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Fatalf("secrets %v, want %v", got, tt.want)
			}
			if err != nil && (strings.Contains(err.Error(), "QUFB") || strings.Contains(err.Error(), "enc:v1:")) {
				t.Fatalf("error %q shows key material", err)
			}
		})
	}
}

// A sealed signing key copied from another subscription's record (a
// writer of the registry that is not Hookline) does not open: the key is
// bound to its subscription, so nothing is ever signed with a secret that
// was not this subscription's.
func TestSealedKeyCopiedFromAnotherSubscriptionDoesNotOpen(t *testing.T) {
	key, _ := secretbox.NewKey()
	box, err := secretbox.Config{Key: key}.Box()
	if err != nil {
		t.Fatal(err)
	}
	a := &hooklinev1.Subscription{Tenant: "acme", Id: "sub_a"}
	sealed, err := box.SealFor(subscription.Binding(a, subscription.FieldSigningKey), "whsec_c2VjcmV0LWE=")
	if err != nil {
		t.Fatal(err)
	}
	a.Keys = []*hooklinev1.SigningKey{{Secret: sealed}}
	if got, err := OpenedSecrets(box)(a); err != nil || len(got) != 1 {
		t.Fatalf("its own subscription: %v, %v", got, err)
	}
	b := &hooklinev1.Subscription{Tenant: "evil", Id: "sub_b", Keys: a.Keys}
	if got, err := OpenedSecrets(box)(b); !errors.Is(err, secretbox.ErrBound) || got != nil {
		t.Fatalf("a key copied into another subscription opened: %v, %v", got, err)
	}
}
