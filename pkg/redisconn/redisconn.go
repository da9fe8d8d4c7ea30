// Package redisconn connects to Redis with the settings every Hookline
// binary shares: URL (redis:// or rediss:// for TLS), ACL user and password.
package redisconn

import (
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Config is embedded in each binary's config.
type Config struct {
	URL      string `env:"HOOKLINE_REDIS_URL" envDefault:"redis://127.0.0.1:6379/0"`
	Username string `env:"HOOKLINE_REDIS_USERNAME"`
	Password string `env:"HOOKLINE_REDIS_PASSWORD"`
}

// Validate names the variable at fault; it never prints a secret.
func (c Config) Validate() error {
	if c.URL == "" {
		return errors.New("HOOKLINE_REDIS_URL is empty")
	}
	if _, err := redis.ParseURL(c.URL); err != nil {
		return errors.New("HOOKLINE_REDIS_URL is not a redis:// or rediss:// URL")
	}
	return nil
}

// Open returns a client; it does not dial until first use.
func Open(c Config) (*redis.Client, error) {
	o, err := redis.ParseURL(c.URL)
	if err != nil {
		return nil, fmt.Errorf("HOOKLINE_REDIS_URL: %w", errors.New("not a redis:// or rediss:// URL"))
	}
	if c.Username != "" {
		o.Username = c.Username
	}
	if c.Password != "" {
		o.Password = c.Password
	}
	// Honour context deadlines: a caller that bounds a Redis call (endpoint
	// health does, then decides locally) must not wait out ReadTimeout.
	o.ContextTimeoutEnabled = true
	return redis.NewClient(o), nil
}
