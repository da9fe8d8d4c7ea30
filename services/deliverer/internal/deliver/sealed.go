package deliver

import (
	"errors"
	"fmt"
	"time"

	"github.com/hookline/hookline/pkg/secretbox"
	"github.com/hookline/hookline/pkg/subscription"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

// OpenedSecrets is ActiveSecrets for keys sealed at rest: every key not yet
// expired, newest first, opened with box (keys stored in clear pass
// through, so records written before encryption was turned on still
// sign). A nil box refuses sealed keys with ErrEncryptedKey. Errors name
// the key's position, never its value.
func OpenedSecrets(box *secretbox.Box) Secrets {
	return func(sub *hooklinev1.Subscription) ([]string, error) {
		return openedSecrets(box, sub, time.Now())
	}
}

func openedSecrets(box *secretbox.Box, sub *hooklinev1.Subscription, now time.Time) ([]string, error) {
	keys := sub.GetKeys()
	out := make([]string, 0, len(keys))
	for i, k := range keys {
		if exp := k.GetExpiresAt(); exp != nil && !exp.AsTime().After(now) {
			continue
		}
		secret, err := box.OpenFor(subscription.Binding(sub, subscription.FieldSigningKey), k.GetSecret())
		switch {
		case errors.Is(err, secretbox.ErrNoKey):
			return nil, fmt.Errorf("%w (HOOKLINE_SECRET_KEY)", ErrEncryptedKey)
		case err != nil:
			return nil, fmt.Errorf("signing key #%d: %w", i+1, err)
		}
		out = append(out, secret)
	}
	if len(out) == 0 {
		return nil, ErrNoSigningKey
	}
	return out, nil
}
