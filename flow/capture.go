package flow

import (
	"crypto/sha256"
	"encoding/hex"
	"hash"
)

// BodyTap watches a body stream by: it keeps the first bytes, up to a cap,
// counts and hashes all of them, and never holds more than the cap, so a
// 4 GiB download costs an observer the cap and a hash. A tap is used by
// one goroutine at a time; the publisher makes a Body of it at the end.
type BodyTap struct {
	limit int
	data  []byte
	n     int64
	sum   hash.Hash
}

// NewBodyTap returns a tap keeping up to limit bytes, or nil when limit is
// 0 or less: a nil tap keeps nothing and costs nothing.
func NewBodyTap(limit int) *BodyTap {
	if limit <= 0 {
		return nil
	}
	return &BodyTap{limit: limit, sum: sha256.New()}
}

// Write notes p, a piece of the body as it streams by. It never fails.
func (t *BodyTap) Write(p []byte) (int, error) {
	if t == nil {
		return len(p), nil
	}
	t.n += int64(len(p))
	t.sum.Write(p)
	if room := t.limit - len(t.data); room > 0 {
		t.data = append(t.data, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// Body describes what crossed: n bytes in all (the publisher's count,
// which a nil tap cannot know), with the kept bytes and the digest when
// the tap was used, and the digest only when the body ended (complete).
func (t *BodyTap) Body(n int64, complete bool) Body {
	if t == nil {
		return Body{Len: n}
	}
	b := Body{Data: t.data, Len: n, Truncated: int64(len(t.data)) < n}
	if complete && t.n == n {
		b.SHA256 = hex.EncodeToString(t.sum.Sum(nil))
	}
	return b
}

// Slab hands out copies of small payloads carved from a shared block, so
// a relay that copies every message's payload for observers allocates
// once per block rather than once per message. The copies are immutable
// and capped (appending to one reallocates), so they are safe to share;
// a kept copy keeps its block alive, which a store that counts bytes
// should know (see Copy). The zero value is ready; a Slab is used by one
// goroutine at a time.
type Slab struct {
	block []byte
}

const (
	slabBlock = 16 << 10
	slabFirst = 256
	// slabLargest is the largest payload carved from a block; bigger ones
	// get an allocation of their own.
	slabLargest = 1 << 10
)

// Copy returns a copy of the first limit bytes of p (all of p when limit
// is larger), or nil when limit is 0 or p is nil. Copies of at most 1 KiB
// share blocks of 256 bytes to 16 KiB, growing as a stream goes on.
func (s *Slab) Copy(p []byte, limit int) []byte {
	if limit <= 0 || p == nil {
		return nil
	}
	n := min(len(p), limit)
	if n > slabLargest {
		return append(make([]byte, 0, n), p[:n]...)
	}
	if cap(s.block)-len(s.block) < n {
		// Blocks start small and double up to slabBlock, so that a
		// session that sends a message or two (most of them, idle ones)
		// does not keep 16 KiB per direction.
		size := min(max(2*cap(s.block), slabFirst), slabBlock)
		s.block = make([]byte, 0, max(size, n))
	}
	start := len(s.block)
	s.block = append(s.block, p[:n]...)
	return s.block[start : start+n : start+n]
}
