package main

import (
	"bytes"
	"strings"
	"sync"
	"testing"
)

func TestConsoleWriterPrefixesWholeLines(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	con := newConsole(&out)
	w := con.Writer("producer")
	for _, chunk := range []string{"first li", "ne\nsecond line\r\nthi", "rd without newline"} {
		if _, err := w.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	want := "producer  | first line\n" +
		"producer  | second line\n" +
		"producer  | third without newline\n"
	if out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", out.String(), want)
	}
}

func TestConsoleLinesNeverInterleave(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	con := newConsole(&out)
	const lines = 200
	var wg sync.WaitGroup
	for _, name := range []string{"producer", "deliverer"} {
		w := con.Writer(name)
		wg.Go(func() {
			defer w.Close()
			for range lines {
				// Two writes per line: a racing writer must not get in between.
				_, _ = w.Write([]byte(name + " says "))
				_, _ = w.Write([]byte("hello\n"))
			}
		})
	}
	wg.Wait()
	got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(got) != 2*lines {
		t.Fatalf("got %d lines, want %d", len(got), 2*lines)
	}
	for _, l := range got {
		if l != "producer  | producer says hello" && l != "deliverer | deliverer says hello" {
			t.Fatalf("mangled line %q", l)
		}
	}
}
