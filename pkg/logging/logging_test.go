package logging_test

import (
	"strings"
	"testing"

	"github.com/hookline/hookline/pkg/envconfig"
	"github.com/hookline/hookline/pkg/logging"
	"go.uber.org/zap"
)

func TestDefaults(t *testing.T) {
	t.Parallel()
	var c logging.Config
	if err := envconfig.Parse(&c, map[string]string{}); err != nil {
		t.Fatal(err)
	}
	if c.Level != "info" || c.Format != "json" {
		t.Fatalf("defaults %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
}

func TestValidateNamesTheVariable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg  logging.Config
		want []string
	}{
		{logging.Config{Level: "loud", Format: "json"}, []string{"HOOKLINE_LOG_LEVEL"}},
		{logging.Config{Level: "info", Format: "xml"}, []string{"HOOKLINE_LOG_FORMAT"}},
		{logging.Config{Level: "", Format: ""}, []string{"HOOKLINE_LOG_LEVEL", "HOOKLINE_LOG_FORMAT"}},
	} {
		err := tc.cfg.Validate()
		if err == nil {
			t.Errorf("%+v: no error", tc.cfg)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: error %q does not name %s", tc.cfg, err, w)
			}
		}
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"json", "console"} {
		log, err := logging.New(logging.Config{Level: "warn", Format: format}, "test")
		if err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		if log.Core().Enabled(zap.InfoLevel) || !log.Core().Enabled(zap.WarnLevel) {
			t.Errorf("%s: level warn not applied", format)
		}
	}
	if _, err := logging.New(logging.Config{Level: "info", Format: "xml"}, "test"); err == nil {
		t.Error("format xml accepted")
	}
	if _, err := logging.New(logging.Config{Level: "loud", Format: "json"}, "test"); err == nil {
		t.Error("level loud accepted")
	}
}
