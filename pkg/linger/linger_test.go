package linger

import (
	"strings"
	"sync"
	"testing"
	"time"
)

type sink struct {
	mu  sync.Mutex
	got []*Batch[string]
	pub chan struct{}
}

func newSink() *sink { return &sink{pub: make(chan struct{}, 100)} }

func (s *sink) publish(b *Batch[string]) {
	s.mu.Lock()
	s.got = append(s.got, b)
	s.mu.Unlock()
	s.pub <- struct{}{}
}

func (s *sink) batches() []*Batch[string] {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Batch[string](nil), s.got...)
}

// Records of one key gather until MaxRecords; another key's are apart; the
// first record names the batch.
func TestBatchesFillByKey(t *testing.T) {
	s := newSink()
	b := New[string](time.Hour, 3, 1<<20, s.publish)
	b.Add("a", "e1", []byte("1"))
	b.Add("b", "e9", []byte("x"))
	b.Add("a", "e2", []byte("2"))
	if n := len(s.batches()); n != 0 {
		t.Fatalf("%d batches published before any was full", n)
	}
	b.Add("a", "e3", []byte("3"))
	got := s.batches()
	if len(got) != 1 || got[0].Key != "a" || got[0].N != 3 || string(got[0].Body) != "1\n2\n3\n" || got[0].First != "e1" {
		t.Fatalf("published %+v, want a's three records named e1", got)
	}
	b.Flush()
	got = s.batches()
	if len(got) != 2 || got[1].Key != "b" || string(got[1].Body) != "x\n" {
		t.Fatalf("after Flush: %+v, want b's record too", got)
	}
	b.Flush()
	if n := len(s.batches()); n != 2 {
		t.Fatalf("a second Flush published again: %d batches", n)
	}
}

// A batch goes out Linger after its first record, and MaxBytes fills one
// as MaxRecords does; Linger 0 publishes each record alone.
func TestBatchesLingerAndBytes(t *testing.T) {
	s := newSink()
	b := New[string](20*time.Millisecond, 100, 8, s.publish)
	b.Add("a", "", []byte("1"))
	<-s.pub // the linger's timer
	b.Add("big", "", []byte(strings.Repeat("z", 10)))
	<-s.pub
	got := s.batches()
	if len(got) != 2 || got[0].N != 1 || got[1].Key != "big" {
		t.Fatalf("published %+v", got)
	}
	s2 := newSink()
	at := New[string](0, 100, 1<<20, s2.publish)
	at.Add("a", "", []byte("1"))
	at.Add("a", "", []byte("2"))
	if n := len(s2.batches()); n != 2 {
		t.Fatalf("linger 0: %d batches for 2 records, want 2", n)
	}
}
