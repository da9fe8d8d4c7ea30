package deliver

import (
	"errors"
	"slices"
	"testing"
	"time"

	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// OpenedSecrets without a key: the keys in clear, newest first, expired
// ones dropped, sealed ones refused.
func TestOpenedSecretsWithoutAKey(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	key := func(secret string, expires time.Duration) *hooklinev1.SigningKey {
		k := &hooklinev1.SigningKey{Secret: secret}
		if expires != 0 {
			k.ExpiresAt = timestamppb.New(now.Add(expires))
		}
		return k
	}
	tests := []struct {
		name    string
		keys    []*hooklinev1.SigningKey
		want    []string
		wantErr error
	}{
		{"one", []*hooklinev1.SigningKey{key("whsec_a", 0)}, []string{"whsec_a"}, nil},
		{"rotation overlap", []*hooklinev1.SigningKey{key("whsec_new", 0), key("whsec_old", time.Hour)}, []string{"whsec_new", "whsec_old"}, nil},
		{"expired dropped", []*hooklinev1.SigningKey{key("whsec_new", 0), key("whsec_old", -time.Second)}, []string{"whsec_new"}, nil},
		{"none", nil, nil, ErrNoSigningKey},
		{"all expired", []*hooklinev1.SigningKey{key("whsec_old", -time.Hour)}, nil, ErrNoSigningKey},
		{"encrypted", []*hooklinev1.SigningKey{key("enc:xyz", 0)}, nil, ErrEncryptedKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := openedSecrets(nil, &hooklinev1.Subscription{Keys: tt.keys}, now)
			if !errors.Is(err, tt.wantErr) || !slices.Equal(got, tt.want) {
				t.Fatalf("activeSecrets = %v, %v; want %v, %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}
