package signing

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
)

// NewHMACSecret returns a fresh whsec_ secret of 32 random bytes.
func NewHMACSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate secret: %w", err)
	}
	return HMACSecretPrefix + base64.StdEncoding.EncodeToString(b), nil
}
