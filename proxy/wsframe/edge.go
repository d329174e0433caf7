package wsframe

import "encoding/binary"

// Edge follows the frames of a byte stream written to a peer, without
// keeping them, so that whoever writes into it knows whether the peer is
// between two frames. A frame of hopscope's own (a close) may go out only
// there: in the middle of a frame the peer would read it as payload.
type Edge struct {
	hdr       headerBuf
	remaining int64
	// inMessage is set between the first and the last frame of a
	// fragmented data message; closed once a close frame began.
	inMessage, closed bool
}

// Wrote accounts for bytes that were written to the peer.
func (e *Edge) Wrote(b []byte) {
	for len(b) > 0 {
		if e.remaining > 0 {
			n := min(int64(len(b)), e.remaining)
			e.remaining -= n
			b = b[n:]
			continue
		}
		if e.hdr.n == 0 && len(b) >= 2 {
			// The usual case, a whole header in b, is read where it
			// lies rather than gathered byte runs at a time.
			if size := headerSize(b[:2]); len(b) >= size {
				e.begin(b[:size])
				b = b[size:]
				continue
			}
		}
		n, done := e.hdr.fill(b)
		b = b[n:]
		if !done {
			continue // b is used up
		}
		e.begin(e.hdr.b[:e.hdr.n])
		e.hdr.n = 0
	}
}

// begin starts following the frame whose complete header is h.
func (e *Edge) begin(h []byte) {
	e.remaining = headerLength(h)
	switch fin, op := h[0]&0x80 != 0, h[0]&0x0f; {
	case op == 0x8:
		e.closed = true
	case op < 0x8:
		e.inMessage = !fin
	}
}

// Between reports whether the bytes written so far end on a frame
// boundary.
func (e *Edge) Between() bool { return e.hdr.n == 0 && e.remaining == 0 }

// BetweenMessages reports whether the bytes written so far end between
// two data messages (not inside a fragmented one): a data message of
// hopscope's own may go out only there.
func (e *Edge) BetweenMessages() bool { return e.Between() && !e.inMessage }

// Closed reports whether a close frame has been written: nothing but the
// connection's end may follow it.
func (e *Edge) Closed() bool { return e.closed }

// headerLength decodes the payload length of a complete header.
func headerLength(h []byte) int64 {
	switch n := h[1] & 0x7f; n {
	case 126:
		return int64(binary.BigEndian.Uint16(h[2:4]))
	case 127:
		return int64(binary.BigEndian.Uint64(h[2:10]) &^ (1 << 63))
	default:
		return int64(n)
	}
}
