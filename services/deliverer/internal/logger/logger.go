// Package logger builds the zap logger from the configured level and format.
package logger

import (
	"fmt"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// New returns a logger writing to stderr. level is debug, info, warn or
// error; format is json (production) or console (humans).
func New(level, format string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log level: %w", err)
	}
	var c zap.Config
	switch format {
	case "json":
		c = zap.NewProductionConfig()
		c.EncoderConfig.TimeKey = "ts"
		c.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	case "console":
		c = zap.NewDevelopmentConfig()
	default:
		return nil, fmt.Errorf("log format %q is not json or console", format)
	}
	c.Level = zap.NewAtomicLevelAt(lvl)
	c.Sampling = nil // one line per attempt means one line per attempt
	c.OutputPaths = []string{"stderr"}
	c.ErrorOutputPaths = []string{"stderr"}
	log, err := c.Build()
	if err != nil {
		return nil, fmt.Errorf("build logger: %w", err)
	}
	return log.With(zap.String("service", "deliverer")), nil
}
