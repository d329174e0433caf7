package proxy

import (
	"encoding/binary"
	"errors"
	"os"
	"time"

	"github.com/gobwas/ws"
)

// While a decider holds a message (a person's breakpoint), the direction
// keeps reading its peer: the bytes wait in ahead, to be parsed once the
// message is decided, so that later messages stay behind it; the pings and
// pongs among them go out at once, since a peer's heartbeat must not wait
// for a person. A close frame, and anything after it, waits in order.
//
// The frames sent ahead are counted (sentAhead) and not sent again when the
// parser reaches them; the scan that finds them follows frame boundaries
// from the end of the held message.

// aheadLimit bounds what a direction reads while a message is held; beyond
// it the peer waits (TCP back-pressure).
const aheadLimit = 4 << 20

// aheadScan finds complete ping and pong frames in the bytes read ahead.
type aheadScan struct {
	// on is set while the scan follows the stream: from the end of a held
	// message until everything read ahead has been parsed.
	on bool
	// tail holds a frame header, or a control frame, not yet complete.
	tail []byte
	// skip counts data frame payload bytes still to pass over.
	skip int64
	// stopped is set at a close frame or a control frame the parser will
	// refuse: nothing after it goes ahead.
	stopped bool
}

// aheadRead is one read of the hold's reader.
type aheadRead struct {
	b   []byte
	err error
}

// holdMessage is WSMessageView.Hold: it returns once until is closed or
// the session ends, reading ahead meanwhile.
func (d *wsDirection) holdMessage(until <-chan struct{}) {
	done := d.sess.live.done
	if !d.scan.on {
		if d.lastEnd < 0 || d.lastEnd > len(d.chunk) {
			// Where the message ended in this chunk is not known (its
			// last header came in pieces): wait without reading ahead.
			select {
			case <-until:
			case <-done:
			}
			return
		}
		d.scan = aheadScan{on: true}
		d.scanAhead(d.chunk[d.lastEnd:])
	}
	// The pump's reader may have a deadline armed (to notice a quiet
	// source, or the idle clock's): the hold reads without one, and the
	// pump's reader arms its own again afterwards.
	_ = d.src.conn.SetReadDeadline(time.Time{})
	if d.cr != nil {
		d.cr.quietArmed = false
	}
	reads := make(chan aheadRead, 1)
	stopReading := make(chan struct{})
	reading := false
	start := func() {
		reading = true
		go func() {
			for {
				b := make([]byte, 32<<10)
				n, err := d.src.conn.Read(b)
				select {
				case reads <- aheadRead{b[:n], err}:
				case <-stopReading:
					// Never reached with bytes: the hold takes every
					// read before it stops this goroutine.
					return
				}
				if err != nil {
					return
				}
			}
		}()
	}
	if d.aheadBytes < aheadLimit && d.aheadErr == nil {
		start()
	}
	take := func(r aheadRead) {
		if len(r.b) > 0 {
			if d.sess.idle != nil {
				d.sess.idle.touch()
			}
			d.ahead = append(d.ahead, r.b)
			d.aheadBytes += len(r.b)
			d.scanAhead(r.b)
		}
	}
	for reading {
		select {
		case r := <-reads:
			take(r)
			if r.err != nil {
				d.aheadErr, reading = r.err, false
				if !d.scan.stopped {
					// The peer's stream ended with no close frame: it
					// went away, and nobody will read an answer. Stop
					// holding (the decider forwards, as when the
					// session ends), so the direction reaches the end
					// and the session closes instead of waiting for a
					// decision, the other peer's connection held.
					return
				}
				continue
			}
			if d.aheadBytes >= aheadLimit {
				d.stopReader(reads, stopReading, take)
				reading = false
			}
			continue
		case <-until:
		case <-done:
		}
		d.stopReader(reads, stopReading, take)
		return
	}
	select {
	case <-until:
	case <-done:
	}
}

// stopReader ends the hold's reader: a past deadline wakes its Read, and
// what it read before that is kept.
func (d *wsDirection) stopReader(reads <-chan aheadRead, stop chan struct{}, take func(aheadRead)) {
	_ = d.src.conn.SetReadDeadline(time.Now())
	for {
		r := <-reads
		take(r)
		if r.err != nil {
			if !errors.Is(r.err, os.ErrDeadlineExceeded) {
				d.aheadErr = r.err
			}
			break
		}
	}
	close(stop)
	_ = d.src.conn.SetReadDeadline(time.Time{}) // the idle clock re-arms on the next read
}

// scanAhead follows b's frames and sends the complete pings and pongs on.
func (d *wsDirection) scanAhead(b []byte) {
	s := &d.scan
	for len(b) > 0 && !s.stopped {
		if s.skip > 0 {
			n := int64(len(b))
			if n > s.skip {
				n = s.skip
			}
			s.skip -= n
			b = b[n:]
			continue
		}
		s.tail = append(s.tail, b...)
		b = nil
		for len(s.tail) > 0 && !s.stopped && s.skip == 0 {
			hdr, payload, ok := frameHead(s.tail)
			if !ok {
				break
			}
			op := ws.OpCode(s.tail[0] & 0x0f)
			if !op.IsControl() {
				rest := int64(len(s.tail) - hdr)
				if rest >= payload {
					s.tail = s.tail[:copy(s.tail, s.tail[int64(hdr)+payload:])]
					continue
				}
				s.skip = payload - rest
				s.tail = s.tail[:0]
				break
			}
			if !d.goodControl(s.tail[0], s.tail[1], op, payload) {
				s.stopped = true
				break
			}
			size := hdr + int(payload)
			if len(s.tail) < size {
				break
			}
			if d.write(s.tail[:size]) == nil {
				d.sentAhead++
			} else {
				s.stopped = true
			}
			s.tail = s.tail[:copy(s.tail, s.tail[size:])]
		}
	}
}

// goodControl reports whether a control frame header is a ping or pong the
// parser will pass: final, no RSV bits, at most 125 bytes, masked exactly
// when the client sent it.
func (d *wsDirection) goodControl(b0, b1 byte, op ws.OpCode, payload int64) bool {
	masked := b1&0x80 != 0
	return (op == ws.OpPing || op == ws.OpPong) && b0&0x80 != 0 && b0&0x70 == 0 && payload <= 125 &&
		masked == (d.from.String() == "client")
}

// frameHead decodes a frame header at the start of b: its size and the
// payload length. ok is false until the header is complete.
func frameHead(b []byte) (hdr int, payload int64, ok bool) {
	if len(b) < 2 {
		return 0, 0, false
	}
	hdr = 2
	switch n := b[1] & 0x7f; n {
	case 126:
		hdr += 2
	case 127:
		hdr += 8
	default:
		payload = int64(n)
	}
	if b[1]&0x80 != 0 {
		hdr += 4
	}
	if len(b) < hdr {
		return 0, 0, false
	}
	switch b[1] & 0x7f {
	case 126:
		payload = int64(binary.BigEndian.Uint16(b[2:4]))
	case 127:
		payload = int64(binary.BigEndian.Uint64(b[2:10]) &^ (1 << 63))
	}
	return hdr, payload, true
}

// feedAhead parses what was read while a message was held, then ends the
// scan. It returns the error the hold's reads ended with, if any.
func (d *wsDirection) feedAhead() error {
	for len(d.ahead) > 0 {
		b := d.ahead[0]
		d.ahead[0] = nil
		d.ahead = d.ahead[1:]
		d.aheadBytes -= len(b)
		if err := d.feed(b); err != nil {
			return err
		}
	}
	d.ahead, d.scan = nil, aheadScan{}
	if err := d.aheadErr; err != nil {
		d.aheadErr = nil
		return err
	}
	return nil
}
