// Package envconfig loads a binary's configuration struct from environment
// variables (caarlos0/env tags) and names the variable, not the Go field,
// in every parse error. A parse error never carries a secret's value: every
// secret is a plain string, which cannot fail to parse.
package envconfig

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"syscall"

	"github.com/caarlos0/env/v11"
)

// Parse fills dst (a pointer to a struct) from m; tests pass a map, binaries
// pass Environ().
func Parse(dst any, m map[string]string) error {
	err := env.ParseWithOptions(dst, env.Options{Environment: m})
	if err == nil {
		return nil
	}
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return err
	}
	t := reflect.TypeOf(dst).Elem()
	out := make([]error, 0, len(agg.Errors))
	for _, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) {
			if tag := envTag(t, pe.Name, pe.Type); tag != "" {
				e = fmt.Errorf("%s: %w", tag, pe.Err)
			}
		}
		out = append(out, e)
	}
	return errors.Join(out...)
}

// envTag is the env tag of the field named name of type typ in t or in a
// nested struct of t, "" when there is none.
func envTag(t reflect.Type, name string, typ reflect.Type) string {
	for i := range t.NumField() {
		f := t.Field(i)
		if tag := f.Tag.Get("env"); f.Name == name && f.Type == typ && tag != "" {
			return strings.Split(tag, ",")[0]
		}
		if f.Type.Kind() == reflect.Struct && f.Tag.Get("env") == "" {
			if tag := envTag(f.Type, name, typ); tag != "" {
				return tag
			}
		}
	}
	return ""
}

// Environ is the process environment as a map.
func Environ() map[string]string {
	m := make(map[string]string)
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// ValueOrFile reads a setting given either in the variable name (value)
// or in the file that name_FILE names (file, a mounted Kubernetes secret):
// its content, and the variable it came from, for the caller's errors.
// Both set is an error; an error reading the file names the variable and
// the file, never a value.
func ValueOrFile(name, value, file string) (content, from string, err error) {
	if value != "" && file != "" {
		return "", "", fmt.Errorf("set only one of %s and %s_FILE", name, name)
	}
	if file == "" {
		return value, name, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", "", fmt.Errorf("%s_FILE: %w", name, err)
	}
	return string(b), name + "_FILE", nil
}

// ErrUsage marks a command line the binary does not accept (exit status 2).
var ErrUsage = errors.New("usage")

// Main is a service's main: it runs run with a context that ends on
// SIGINT or SIGTERM, then exits as Finish says.
func Main(name string, run func(context.Context) error) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if code := Finish(name, err, os.Stderr); code != 0 {
		os.Exit(code)
	}
}

// Finish prints a service's error to w after its name and returns its exit
// status: 0 without an error, 2 for a command line the service does not
// accept (ErrUsage), 1 for anything else.
func Finish(name string, err error, w io.Writer) int {
	if err == nil {
		return 0
	}
	fmt.Fprintln(w, name+":", err)
	if errors.Is(err, ErrUsage) {
		return 2
	}
	return 1
}

// Args checks the command line of a service, which is configured through
// the environment only. No arguments: go on. -h/--help prints every
// variable of cfg (a pointer to a config struct) with its default, --version prints
// version; done is then true and the binary exits 0. Anything else is an
// error wrapping ErrUsage that says so.
func Args(name string, args []string, cfg any, version string, w io.Writer) (done bool, err error) {
	if len(args) == 0 {
		return false, nil
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		if len(args) == 1 {
			return true, usage(name, cfg, w)
		}
	case "-version", "--version", "version":
		if len(args) == 1 {
			_, err := fmt.Fprintf(w, "%s %s\n", name, version)
			return true, err
		}
	}
	what := "argument"
	if strings.HasPrefix(args[0], "-") {
		what = "flag"
	}
	return false, fmt.Errorf("%w: unknown %s %q: %s takes no flags or arguments; it reads HOOKLINE_* environment variables (%s --help lists them)",
		ErrUsage, what, args[0], name, name)
}

func usage(name string, cfg any, w io.Writer) error {
	params, err := env.GetFieldParams(cfg)
	if err != nil {
		return fmt.Errorf("list variables: %w", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "usage: %s\n\n%s is configured through environment variables only (docs/configuration.md):\n\n", name, name)
	for _, p := range params {
		if p.HasDefaultValue {
			fmt.Fprintf(&b, "  %s (default %q)\n", p.Key, p.DefaultValue)
		} else {
			fmt.Fprintf(&b, "  %s\n", p.Key)
		}
	}
	_, err = io.WriteString(w, b.String())
	return err
}
