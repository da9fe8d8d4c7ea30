package sender

import (
	"io"
	"strings"
	"testing"
)

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func TestDrainReadsAtMostTheCap(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		cap      int64
		bodySize int
		wantRead int64
		excerpt  int
	}{
		{"large body", 1000, 1 << 20, 1000, ExcerptBytes},
		{"small body", 1000, 10, 10, 10},
		{"cap below excerpt", 100, 1 << 20, 100, 100},
		{"cap zero", 0, 1 << 20, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := &Sender{maxBody: tt.cap}
			r := &countingReader{r: strings.NewReader(strings.Repeat("x", tt.bodySize))}
			got := s.drain(r)
			if r.n != tt.wantRead || len(got) != tt.excerpt {
				t.Fatalf("read %d bytes, excerpt %d; want %d and %d", r.n, len(got), tt.wantRead, tt.excerpt)
			}
		})
	}
}
