package main

import (
	"strings"
	"testing"
)

// writes records each Write call it receives.
type writes struct{ calls []string }

func (w *writes) Write(p []byte) (int, error) {
	w.calls = append(w.calls, string(p))
	return len(p), nil
}

// Lines of a batch reach the file in one write when the batch ends; lines
// outside a batch (the listen event, a shutdown) are written at once.
func TestBatchWriterGathersABatch(t *testing.T) {
	w := &writes{}
	b := newBatchWriter(w)
	_, _ = b.Write([]byte("listen\n"))
	if len(w.calls) != 1 {
		t.Fatalf("a line outside a batch waited: %q", w.calls)
	}
	b.Begin()
	_, _ = b.Write([]byte("one\n"))
	_, _ = b.Write([]byte("two\n"))
	if len(w.calls) != 1 {
		t.Fatalf("lines of an open batch were written: %q", w.calls)
	}
	b.End()
	if len(w.calls) != 2 || w.calls[1] != "one\ntwo\n" {
		t.Fatalf("writes %q, want the batch in one", w.calls)
	}
	b.Begin()
	big := strings.Repeat("x", batchLimit)
	_, _ = b.Write([]byte(big))
	if len(w.calls) != 3 {
		t.Fatalf("a batch past the limit was held: %d writes", len(w.calls))
	}
	b.End()
	if len(w.calls) != 3 {
		t.Fatalf("an empty remainder was written: %d writes", len(w.calls))
	}
}
