// Package envconfig loads a binary's configuration struct from environment
// variables (caarlos0/env tags) and names the variable, not the Go field,
// in every parse error. A parse error never carries a secret's value: every
// secret is a plain string, which cannot fail to parse.
package envconfig

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"

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
