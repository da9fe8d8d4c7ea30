package main

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
)

// console is the terminal that every part of the stack writes to. Each line
// carries the name of its source, like docker compose does, and lines from
// different sources never interleave mid-line.
type console struct {
	mu    sync.Mutex
	w     io.Writer
	width int
}

func newConsole(w io.Writer) *console {
	return &console{w: w, width: len("deliverer")}
}

// Line writes one line from source.
func (c *console) Line(source, format string, args ...any) {
	c.writeLine(source, fmt.Sprintf(format, args...))
}

// Block writes text as is, without a prefix: the copy-paste commands.
func (c *console) Block(text string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, _ = io.WriteString(c.w, text)
}

func (c *console) writeLine(source, line string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, _ = fmt.Fprintf(c.w, "%-*s | %s\n", c.width, source, strings.TrimRight(line, "\r"))
}

// Writer returns a writer that prefixes each line written to it with source:
// a child process's stdout and stderr. Close flushes a last unterminated line.
func (c *console) Writer(source string) io.WriteCloser {
	return &lineWriter{c: c, source: source}
}

type lineWriter struct {
	mu     sync.Mutex
	c      *console
	source string
	buf    []byte
}

// maxLine bounds a line held back while waiting for its newline.
const maxLine = 64 << 10

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.c.writeLine(w.source, string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > maxLine {
		w.c.writeLine(w.source, string(w.buf))
		w.buf = w.buf[:0]
	}
	return len(p), nil
}

func (w *lineWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.c.writeLine(w.source, string(w.buf))
		w.buf = nil
	}
	return nil
}
