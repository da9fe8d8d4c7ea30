package portal

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestVerify(t *testing.T) {
	t.Parallel()
	key := []byte("0123456789abcdef0123456789abcdef")
	now := time.Unix(1_800_000_000, 0)
	good := Claims{Version: 1, ID: "ps_1", Tenant: "acme", Subscriptions: []string{"sub_A"}, ReadOnly: true,
		IssuedAt: now.UnixMilli(), Expires: now.Add(time.Hour).UnixMilli()}
	tok := Sign(key, good)
	tests := []struct {
		name  string
		token string
		at    time.Time
		want  error
	}{
		{"valid", tok, now, nil},
		{"expired at the second", tok, now.Add(time.Hour), ErrExpired},
		{"other key", Sign([]byte("another key another key another k"), good), now, ErrSignature},
		{"signature changed", flip(tok), now, ErrSignature},
		{"no signature", strings.Split(tok, ".")[0], now, ErrMalformed},
		{"not a token", "Bearer x", now, ErrMalformed},
		{"too long", tokenPrefix + strings.Repeat("a", maxTokenLen), now, ErrMalformed},
		{"other version", Sign(key, Claims{Version: 2, ID: "ps_1", Tenant: "acme", Expires: now.Add(time.Hour).UnixMilli()}), now, ErrMalformed},
		{"no tenant", Sign(key, Claims{Version: 1, ID: "ps_1", Expires: now.Add(time.Hour).UnixMilli()}), now, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Verify(key, tt.token, tt.at)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
			if err == nil && (c.Tenant != "acme" || !c.ReadOnly || len(c.Subscriptions) != 1 || c.ExpiresAt() != now.Add(time.Hour).UTC()) {
				t.Fatalf("claims %+v", c)
			}
		})
	}
	if csrfToken(key, "ps_1") == csrfToken(key, "ps_2") || strings.Contains(tok, csrfToken(key, "ps_1")) {
		t.Fatal("csrf tokens must differ per session and from the token")
	}
}

// flip changes the first character of the signature.
func flip(tok string) string {
	i := strings.IndexByte(tok, '.') + 1
	c := byte('A')
	if tok[i] == 'A' {
		c = 'B'
	}
	return tok[:i] + string(c) + tok[i+1:]
}
