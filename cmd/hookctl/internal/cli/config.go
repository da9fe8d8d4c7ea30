package cli

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/caarlos0/env/v11"

	"github.com/hookline/hookline/pkg/natsconn"
)

// Config is hookctl's environment. Flags given on the command line override
// it (see the root command's flags).
type Config struct {
	NATS natsconn.Config
	// APIURL is the producer API base URL.
	APIURL string `env:"HOOKLINE_API_URL" envDefault:"http://localhost:8080"`
	// APIToken is sent as a bearer token; env only (never a flag, so it
	// stays out of shell history and ps), never printed.
	APIToken string `env:"HOOKLINE_API_TOKEN"`
}

// LoadConfig reads the configuration from an environment map (os.Environ
// in main, a literal map in tests).
func LoadConfig(environ map[string]string) (Config, error) {
	var c Config
	if err := env.ParseWithOptions(&c, env.Options{Environment: environ}); err != nil {
		return Config{}, usageErr(fmt.Errorf("configuration: %w", err))
	}
	return c, nil
}

// Validate names the variable or flag at fault; it never prints a secret.
func (c Config) Validate() error {
	if err := c.NATS.Validate(); err != nil {
		return usageErr(err)
	}
	return nil
}

// Environ turns os.Environ() into a map.
func Environ(kv []string) map[string]string {
	m := make(map[string]string, len(kv))
	for _, e := range kv {
		if k, v, ok := strings.Cut(e, "="); ok {
			m[k] = v
		}
	}
	return m
}

// redactURLs hides passwords in a comma-separated NATS URL list.
func redactURLs(raw string) string {
	parts := strings.Split(raw, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil {
			parts[i] = "<unparseable URL>"
			continue
		}
		if u.User != nil {
			u.User = url.User("redacted")
		}
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}

var errNoJetStream = errors.New("JetStream is not enabled on this NATS server (is this Hookline's NATS? check --nats-url / HOOKLINE_NATS_URL)")
