package secretbox_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hookline/hookline/pkg/secretbox"
)

func key(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, secretbox.KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func b64(k []byte) string { return base64.StdEncoding.EncodeToString(k) }

const plain = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func TestSealOpen(t *testing.T) {
	t.Parallel()
	box, err := secretbox.New(key(t))
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := box.Seal(plain)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(sealed, "enc:v1:") || strings.Contains(sealed, plain) || strings.Contains(sealed, "MfKQ9r8G") {
		t.Fatalf("sealed value %q: want enc:v1: and no plaintext", sealed)
	}
	again, _ := box.Seal(plain)
	if again == sealed {
		t.Fatal("two seals of the same value are equal: the nonce is not fresh")
	}
	if got, err := box.Open(sealed); err != nil || got != plain {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if twice, _ := box.Seal(sealed); twice != sealed {
		t.Fatal("sealing a sealed value changed it")
	}
	// A plain value passes through: encryption can be turned on later.
	if got, err := box.Open(plain); err != nil || got != plain {
		t.Fatalf("Open(plain) = %q, %v; want it unchanged", got, err)
	}
	if got, err := box.Open(""); err != nil || got != "" {
		t.Fatalf("Open(\"\") = %q, %v", got, err)
	}
}

func TestRotation(t *testing.T) {
	t.Parallel()
	oldKey, newKey := key(t), key(t)
	oldBox, _ := secretbox.New(oldKey)
	sealedOld, err := oldBox.Seal(plain)
	if err != nil {
		t.Fatal(err)
	}
	rotated, err := secretbox.New(newKey, oldKey)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := rotated.Open(sealedOld); err != nil || got != plain {
		t.Fatalf("Open of a value sealed with the previous key = %q, %v", got, err)
	}
	sealedNew, _ := rotated.Seal(plain)
	if _, err := oldBox.Open(sealedNew); !errors.Is(err, secretbox.ErrDecrypt) {
		t.Fatalf("a new seal opens with the old key alone (%v): Seal did not use the new key", err)
	}
	newOnly, _ := secretbox.New(newKey)
	if _, err := newOnly.Open(sealedOld); !errors.Is(err, secretbox.ErrDecrypt) {
		t.Fatalf("Open without the previous key = %v, want ErrDecrypt", err)
	}
}

func TestOpenErrorsShowNothing(t *testing.T) {
	t.Parallel()
	box, _ := secretbox.New(key(t))
	sealed, _ := box.Seal(plain)
	raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(sealed, "enc:v1:"))
	raw[len(raw)-1] ^= 1
	tampered := "enc:v1:" + base64.StdEncoding.EncodeToString(raw)
	tests := []struct {
		name, value string
		want        error
	}{
		{"tampered", tampered, secretbox.ErrDecrypt},
		{"other key", func() string { b, _ := secretbox.New(key(t)); s, _ := b.Seal(plain); return s }(), secretbox.ErrDecrypt},
		{"unknown version", "enc:v9:" + strings.TrimPrefix(sealed, "enc:v1:"), secretbox.ErrFormat},
		{"not base64", "enc:v1:%%%%", secretbox.ErrFormat},
		{"too short", "enc:v1:AAAA", secretbox.ErrFormat},
		{"empty", "enc:v1:", secretbox.ErrFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := box.Open(tt.value)
			if !errors.Is(err, tt.want) || got != "" {
				t.Fatalf("Open = %q, %v; want %v", got, err, tt.want)
			}
			if strings.Contains(err.Error(), "MfKQ") || strings.Contains(err.Error(), tt.value[len("enc:v1:"):]) && len(tt.value) > 12 {
				t.Fatalf("error %q shows the value", err)
			}
		})
	}
}

func TestNilBoxIsEncryptionOff(t *testing.T) {
	t.Parallel()
	var box *secretbox.Box
	if s, err := box.Seal(plain); err != nil || s != plain {
		t.Fatalf("nil Seal = %q, %v; want the input", s, err)
	}
	if s, err := box.Open(plain); err != nil || s != plain {
		t.Fatalf("nil Open(plain) = %q, %v", s, err)
	}
	if _, err := box.Open("enc:v1:AAAA"); !errors.Is(err, secretbox.ErrNoKey) {
		t.Fatalf("nil Open(sealed) = %v, want ErrNoKey", err)
	}
}

func TestNewRejectsBadKeys(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 16, 31, 33, 64} {
		if _, err := secretbox.New(make([]byte, n)); !errors.Is(err, secretbox.ErrBadKey) {
			t.Errorf("New(%d bytes) = %v, want ErrBadKey", n, err)
		}
	}
	if _, err := secretbox.New(key(t), make([]byte, 5)); !errors.Is(err, secretbox.ErrBadKey) {
		t.Errorf("New with a bad previous key = %v, want ErrBadKey", err)
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	k1, k2 := key(t), key(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "key")
	if err := os.WriteFile(file, []byte(b64(k1)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	secretLooking := "c2VjcmV0LXNlY3JldC1zZWNyZXQ=" // valid base64, wrong length
	tests := []struct {
		name    string
		cfg     secretbox.Config
		off     bool
		wantErr string
	}{
		{name: "off", cfg: secretbox.Config{}, off: true},
		{name: "key", cfg: secretbox.Config{Key: b64(k1)}},
		{name: "key file", cfg: secretbox.Config{KeyFile: file}},
		{name: "with previous", cfg: secretbox.Config{Key: b64(k1), Previous: b64(k2) + ", "}},
		{name: "both", cfg: secretbox.Config{Key: b64(k1), KeyFile: file}, wantErr: "only one of"},
		{name: "short key", cfg: secretbox.Config{Key: secretLooking}, wantErr: "HOOKLINE_SECRET_KEY: secret key must be 32 bytes"},
		{name: "missing file", cfg: secretbox.Config{KeyFile: filepath.Join(dir, "nope")}, wantErr: "HOOKLINE_SECRET_KEY_FILE"},
		{name: "bad previous", cfg: secretbox.Config{Key: b64(k1), Previous: b64(k2) + "," + secretLooking}, wantErr: "HOOKLINE_SECRET_KEY_PREVIOUS entry #2"},
		{name: "previous alone", cfg: secretbox.Config{Previous: b64(k2)}, wantErr: "without HOOKLINE_SECRET_KEY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			box, err := tt.cfg.Box()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Box() = %v, want an error with %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), secretLooking) || strings.Contains(err.Error(), b64(k1)) {
					t.Fatalf("error %q shows a key", err)
				}
				if verr := tt.cfg.Validate(); verr == nil {
					t.Fatal("Validate accepted what Box refused")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (box == nil) != tt.off {
				t.Fatalf("Box() = %v, want off %v", box, tt.off)
			}
		})
	}
	// The file key and the env key are the same key.
	fromFile, _ := secretbox.Config{KeyFile: file}.Box()
	fromEnv, _ := secretbox.Config{Key: b64(k1)}.Box()
	s, _ := fromFile.Seal(plain)
	if got, err := fromEnv.Open(s); err != nil || got != plain {
		t.Fatalf("file key and env key differ: %q, %v", got, err)
	}
	// Previous keys open old values.
	rotated, _ := secretbox.Config{Key: b64(k2), Previous: b64(k1)}.Box()
	if got, err := rotated.Open(s); err != nil || got != plain {
		t.Fatalf("rotated config cannot open an old value: %q, %v", got, err)
	}
}

func TestNewKey(t *testing.T) {
	t.Parallel()
	k, err := secretbox.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(k)
	if err != nil || len(raw) != secretbox.KeySize || bytes.Equal(raw, make([]byte, secretbox.KeySize)) {
		t.Fatalf("NewKey = %q", k)
	}
	if _, err := (secretbox.Config{Key: k}).Box(); err != nil {
		t.Fatalf("NewKey's output is not a valid HOOKLINE_SECRET_KEY: %v", err)
	}
}

func TestSignVerifyAcrossRotation(t *testing.T) {
	t.Parallel()
	oldKey, newKey := bytes.Repeat([]byte{1}, secretbox.KeySize), bytes.Repeat([]byte{2}, secretbox.KeySize)
	old, err := secretbox.New(oldKey)
	if err != nil {
		t.Fatal(err)
	}
	rotated, err := secretbox.New(newKey, oldKey)
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := secretbox.New(bytes.Repeat([]byte{3}, secretbox.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("acme\x00sub_1\x0042\x00{}")
	tg := old.Sign(data)
	if !old.Verify(data, tg) || !rotated.Verify(data, tg) {
		t.Fatal("a tag of the old key is refused during the rotation")
	}
	if stranger.Verify(data, tg) || old.Verify([]byte("acme\x00sub_1\x0043\x00{}"), tg) || old.Verify(data, tg[:21]+"A") {
		t.Fatal("a tag verified for the wrong key or data")
	}
	if rotated.Sign(data) == tg {
		t.Fatal("the rotated box signs with the old key")
	}
}

// A value sealed for one place opens only there: not for another
// subscription or field, not through Open; an unbound (v1) value still
// opens through OpenFor, and Rebind binds it.
func TestSealForBindsToItsPlace(t *testing.T) {
	box, err := secretbox.New(key(t))
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := box.SealFor("acme.sub_a/signing-key", "whsec_plain")
	if err != nil || !strings.HasPrefix(sealed, "enc:v2:") {
		t.Fatalf("SealFor = %q, %v", sealed, err)
	}
	if got, err := box.OpenFor("acme.sub_a/signing-key", sealed); err != nil || got != "whsec_plain" {
		t.Fatalf("OpenFor its place = %q, %v", got, err)
	}
	for _, other := range []string{"acme.sub_b/signing-key", "evil.sub_a/signing-key", "acme.sub_a/url"} {
		if _, err := box.OpenFor(other, sealed); !errors.Is(err, secretbox.ErrBound) {
			t.Errorf("OpenFor(%s) = %v, want ErrBound", other, err)
		}
	}
	if _, err := box.Open(sealed); !errors.Is(err, secretbox.ErrBound) {
		t.Errorf("Open of a bound value = %v, want ErrBound", err)
	}
	legacy, _ := box.Seal("whsec_old")
	if got, err := box.OpenFor("acme.sub_a/signing-key", legacy); err != nil || got != "whsec_old" {
		t.Fatalf("an unbound value through OpenFor = %q, %v", got, err)
	}
	bound, err := box.Rebind("acme.sub_a/signing-key", legacy)
	if err != nil || !strings.HasPrefix(bound, "enc:v2:") {
		t.Fatalf("Rebind = %q, %v", bound, err)
	}
	if again, err := box.Rebind("acme.sub_a/signing-key", bound); err != nil || again != bound {
		t.Fatalf("Rebind of a value bound there = %q, %v; want it unchanged", again, err)
	}
	if _, err := box.Rebind("acme.sub_b/signing-key", bound); !errors.Is(err, secretbox.ErrBound) {
		t.Fatalf("Rebind of a value bound elsewhere = %v, want ErrBound", err)
	}
}
