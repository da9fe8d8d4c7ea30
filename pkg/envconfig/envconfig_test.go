package envconfig_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

func TestArgs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args     []string
		done     bool
		usage    bool   // err wraps ErrUsage
		contains string // in the error, or in the output when there is none
	}{
		{args: nil},
		{args: []string{"--help"}, done: true, contains: "  HOOKLINE_TEST_TIMEOUT (default \"1s\")\n  HOOKLINE_TEST_WORKERS (default \"2\")\n  HOOKLINE_TEST_TOKEN\n"},
		{args: []string{"-h"}, done: true, contains: "usage: svc\n"},
		{args: []string{"--version"}, done: true, contains: "svc v1.2.3\n"},
		{args: []string{"--foo"}, usage: true, contains: `unknown flag "--foo": svc takes no flags or arguments`},
		{args: []string{"serve"}, usage: true, contains: `unknown argument "serve"`},
		{args: []string{"--help", "extra"}, usage: true, contains: `unknown flag "--help"`},
	}
	for _, tt := range tests {
		var out strings.Builder
		done, err := envconfig.Args("svc", tt.args, &config{}, "v1.2.3", &out)
		if done != tt.done || (err != nil) != tt.usage || (err != nil && !errors.Is(err, envconfig.ErrUsage)) {
			t.Errorf("Args(%q) = %v, %v; want done %v, usage error %v", tt.args, done, err, tt.done, tt.usage)
			continue
		}
		got := out.String()
		if err != nil {
			got = err.Error()
			if out.Len() != 0 {
				t.Errorf("Args(%q) wrote %q as well as the error", tt.args, out.String())
			}
		}
		if !strings.Contains(got, tt.contains) {
			t.Errorf("Args(%q): %q does not contain %q", tt.args, got, tt.contains)
		}
	}
}

// A service's error is printed after its name and ends it with status 2
// for a command line it does not accept, 1 for anything else.
func TestFinish(t *testing.T) {
	for _, tt := range []struct {
		err  error
		code int
		out  string
	}{
		{nil, 0, ""},
		{fmt.Errorf("%w: unknown flag \"-x\"", envconfig.ErrUsage), 2, "svc: usage: unknown flag \"-x\"\n"},
		{errors.New("nats: no servers available"), 1, "svc: nats: no servers available\n"},
	} {
		var w strings.Builder
		if code := envconfig.Finish("svc", tt.err, &w); code != tt.code || w.String() != tt.out {
			t.Errorf("%v: status %d, printed %q; want %d, %q", tt.err, code, w.String(), tt.code, tt.out)
		}
	}
}

// A setting is given in its variable or in a file named by NAME_FILE, not
// both; an error reading the file names the variable and the file, and a
// value is never in an error.
func TestValueOrFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "token")
	if err := os.WriteFile(path, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		value, file      string
		content, from    string
		wantErr, notInIt string
	}{
		{value: "inline", content: "inline", from: "HOOKLINE_X"},
		{file: path, content: "from-file\n", from: "HOOKLINE_X_FILE"},
		{content: "", from: "HOOKLINE_X"},
		{value: "inline-secret", file: path, wantErr: "set only one of HOOKLINE_X and HOOKLINE_X_FILE", notInIt: "inline-secret"},
		{file: filepath.Join(dir, "nope"), wantErr: "HOOKLINE_X_FILE: open " + filepath.Join(dir, "nope")},
	} {
		content, from, err := envconfig.ValueOrFile("HOOKLINE_X", tt.value, tt.file)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || (tt.notInIt != "" && strings.Contains(err.Error(), tt.notInIt)) {
				t.Errorf("%+v: err %v; want %q", tt, err, tt.wantErr)
			}
			continue
		}
		if err != nil || content != tt.content || from != tt.from {
			t.Errorf("%+v: %q from %s, err %v", tt, content, from, err)
		}
	}
}
