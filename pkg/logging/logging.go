// Package logging builds each binary's zap logger from the settings every
// Hookline service shares: HOOKLINE_LOG_LEVEL and HOOKLINE_LOG_FORMAT.
package logging

import (
	"errors"
	"fmt"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Config is embedded in each binary's config.
type Config struct {
	// Level is debug, info, warn or error.
	Level string `env:"HOOKLINE_LOG_LEVEL" envDefault:"info"`
	// Format is json (production) or console (humans).
	Format string `env:"HOOKLINE_LOG_FORMAT" envDefault:"json"`
}

// Validate names the variable at fault.
func (c Config) Validate() error {
	var errs []error
	if c.Level != "debug" && c.Level != "info" && c.Level != "warn" && c.Level != "error" {
		errs = append(errs, fmt.Errorf("HOOKLINE_LOG_LEVEL must be debug, info, warn or error, not %q", c.Level))
	}
	if c.Format != "json" && c.Format != "console" {
		errs = append(errs, fmt.Errorf("HOOKLINE_LOG_FORMAT must be json or console, not %q", c.Format))
	}
	return errors.Join(errs...)
}

// New returns a logger writing to stderr, every line carrying
// service=<service>. Sampling is off: one line per request or per attempt
// means one line per request or per attempt.
func New(cfg Config, service string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(cfg.Level)
	if err != nil {
		return nil, fmt.Errorf("log level: %w", err)
	}
	var c zap.Config
	switch cfg.Format {
	case "json":
		c = zap.NewProductionConfig()
		c.EncoderConfig.TimeKey = "ts"
		c.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	case "console":
		c = zap.NewDevelopmentConfig()
		c.DisableStacktrace = true // a warning is a line, not a stack, for humans too
	default:
		return nil, fmt.Errorf("log format %q is not json or console", cfg.Format)
	}
	c.Level = zap.NewAtomicLevelAt(lvl)
	c.Sampling = nil
	c.OutputPaths = []string{"stderr"}
	c.ErrorOutputPaths = []string{"stderr"}
	log, err := c.Build()
	if err != nil {
		return nil, fmt.Errorf("build logger: %w", err)
	}
	return log.With(zap.String("service", service)), nil
}
