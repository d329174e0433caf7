package wsframe

import (
	"bytes"
	"compress/flate"
	"errors"
	"io"
	"sync"
)

// windowSize is DEFLATE's history: a message may refer back this far into
// earlier messages when the sender keeps its context (RFC 7692 section 7.2.3).
const windowSize = 32 << 10

// deflateTail ends every compressed message; senders strip it
// (RFC 7692 section 7.2.1), so it is put back before inflating.
var deflateTail = []byte{0x00, 0x00, 0xff, 0xff}

// inflate decompresses one message for inspection and returns its first
// InspectLimit bytes and its total size (-1 when unknown). complete says
// whether compressed holds the whole message. The sender's history is kept
// as the last 32 KiB of plaintext, so context takeover works (gobwas/ws's
// wsflate reader starts afresh for every message and fails on the second).
func (p *Parser) inflate(compressed []byte, complete bool) ([]byte, int64) {
	takeover := !p.cfg.NoContextTakeover
	if p.inflateLost {
		return nil, -1
	}
	if !complete && takeover {
		// Without every byte the history cannot be rebuilt.
		p.lose()
		return nil, -1
	}
	out := p.cfg.Pool.getBytes()
	p.inflated = out // returned to the pool when the message is released
	src := io.MultiReader(bytes.NewReader(compressed), bytes.NewReader(deflateTail))
	var dict []byte
	if takeover {
		dict = p.window
	}
	fr := p.cfg.Pool.getInflater(src, dict)
	defer p.cfg.Pool.putInflater(fr)

	var total int64
	chunk := p.cfg.Pool.getChunk()
	defer p.cfg.Pool.putChunk(chunk)
	for {
		n, err := fr.Read(chunk)
		if n > 0 {
			if room := p.cfg.InspectLimit - len(*out); room > 0 {
				*out = append(*out, chunk[:min(n, room)]...)
			}
			if takeover {
				p.window = appendWindow(p.window, chunk[:n])
			}
			total += int64(n)
			if total > p.cfg.MaxInflate {
				if takeover {
					p.lose()
				}
				return *out, -1
			}
		}
		if err == nil {
			continue
		}
		if errors.Is(err, io.EOF) || (errors.Is(err, io.ErrUnexpectedEOF) && complete) {
			// The sync-flush tail ends the data without a final block.
			return *out, total
		}
		if !complete {
			return *out, -1 // what a cut-off stream gave, for a look only
		}
		if takeover {
			p.lose()
		}
		return *out, -1
	}
}

func (p *Parser) lose() {
	p.inflateLost = true
	p.window = nil
}

// appendWindow keeps the last windowSize bytes of w followed by b.
func appendWindow(w, b []byte) []byte {
	if len(b) >= windowSize {
		if cap(w) < windowSize {
			w = make([]byte, windowSize)
		}
		w = w[:windowSize]
		copy(w, b[len(b)-windowSize:])
		return w
	}
	if excess := len(w) + len(b) - windowSize; excess > 0 {
		w = append(w[:0], w[excess:]...)
	}
	return append(w, b...)
}

// Pool lends the buffers and decompressors parsers need only while a
// message is in flight, so idle connections hold none. One Pool serves a
// whole proxy; it is safe for concurrent use.
type Pool struct {
	bytes    sync.Pool
	chunks   sync.Pool
	inflater sync.Pool
}

// NewPool returns an empty pool.
func NewPool() *Pool { return &Pool{} }

// GetBytes lends an empty byte slice; give it back with PutBytes.
func (p *Pool) GetBytes() *[]byte { return p.getBytes() }

// PutBytes takes back a slice from GetBytes.
func (p *Pool) PutBytes(b *[]byte) { p.putBytes(b) }

func (p *Pool) getBytes() *[]byte {
	if b, ok := p.bytes.Get().(*[]byte); ok {
		*b = (*b)[:0]
		return b
	}
	b := make([]byte, 0, 4<<10)
	return &b
}

func (p *Pool) putBytes(b *[]byte) {
	if cap(*b) > 4<<20 {
		return // let a rare huge buffer go rather than pin it
	}
	p.bytes.Put(b)
}

func (p *Pool) getChunk() []byte {
	if b, ok := p.chunks.Get().(*[]byte); ok {
		return *b
	}
	return make([]byte, 32<<10)
}

func (p *Pool) putChunk(b []byte) { p.chunks.Put(&b) }

func (p *Pool) getInflater(src io.Reader, dict []byte) io.ReadCloser {
	if fr, ok := p.inflater.Get().(io.ReadCloser); ok {
		if err := fr.(flate.Resetter).Reset(src, dict); err == nil {
			return fr
		}
	}
	return flate.NewReaderDict(src, dict)
}

func (p *Pool) putInflater(fr io.ReadCloser) { p.inflater.Put(fr) }
