package envconfig_test

import (
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/envconfig"
)

type nested struct {
	Timeout time.Duration `env:"HOOKLINE_TEST_TIMEOUT" envDefault:"1s"`
}

type config struct {
	Nested  nested
	Workers int    `env:"HOOKLINE_TEST_WORKERS" envDefault:"2"`
	Token   string `env:"HOOKLINE_TEST_TOKEN"`
}

func TestParseNamesTheVariable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, variable, value string
	}{
		{name: "top level", variable: "HOOKLINE_TEST_WORKERS", value: "many"},
		{name: "nested", variable: "HOOKLINE_TEST_TIMEOUT", value: "a week"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var c config
			err := envconfig.Parse(&c, map[string]string{tt.variable: tt.value, "HOOKLINE_TEST_TOKEN": "s3cret"})
			if err == nil || !strings.Contains(err.Error(), tt.variable) {
				t.Fatalf("error %v, want one naming %s", err, tt.variable)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("error %q shows a secret", err)
			}
		})
	}
}

func TestParseDefaults(t *testing.T) {
	t.Parallel()
	var c config
	if err := envconfig.Parse(&c, map[string]string{}); err != nil {
		t.Fatal(err)
	}
	if c.Workers != 2 || c.Nested.Timeout != time.Second {
		t.Fatalf("defaults not applied: %+v", c)
	}
}
