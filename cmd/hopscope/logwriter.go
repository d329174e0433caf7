package main

import (
	"io"
	"sync"
)

// batchWriter gathers the event lines written while the event log works
// through a batch of records and writes them in one call when the batch
// ends: under load the relay publishes a record per message, and a write
// system call per line cost the proxy as much as the message itself.
// Outside a batch, lines are written at once. It is the event log's
// eventlog.Batcher.
type batchWriter struct {
	mu   sync.Mutex
	w    io.Writer
	buf  []byte
	held bool
}

// batchLimit is how much a batch gathers before it is written anyway.
const batchLimit = 64 << 10

func newBatchWriter(w io.Writer) *batchWriter { return &batchWriter{w: w} }

func (b *batchWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.held {
		return b.w.Write(p)
	}
	b.buf = append(b.buf, p...)
	if len(b.buf) >= batchLimit {
		if err := b.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Begin starts gathering lines.
func (b *batchWriter) Begin() {
	b.mu.Lock()
	b.held = true
	b.mu.Unlock()
}

// End writes what was gathered and stops gathering.
func (b *batchWriter) End() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.held = false
	_ = b.flushLocked()
}

func (b *batchWriter) flushLocked() error {
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.w.Write(b.buf)
	if cap(b.buf) > 4*batchLimit {
		b.buf = nil // a burst's buffer is not kept for good
	} else {
		b.buf = b.buf[:0]
	}
	return err
}
