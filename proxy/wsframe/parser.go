// Package wsframe reads one direction of a WebSocket connection as it
// streams through the proxy: it splits the bytes into frames, validates
// them per RFC 6455 and RFC 7692, and keeps an unmasked (and, for
// permessage-deflate, decompressed) copy of each message for inspection,
// without ever changing or delaying the bytes themselves. It does no I/O:
// the relay feeds it whatever chunk of bytes it has read, so a connection
// holds no read buffer while it is idle.
package wsframe

import (
	"encoding/binary"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// Side names the peer that sent a stream of frames.
type Side uint8

const (
	// Client is the side that opened the WebSocket.
	Client Side = iota
	// Server is the side that accepted it.
	Server
)

func (s Side) String() string {
	if s == Client {
		return "client"
	}
	return "server"
}

// Config describes one direction of a connection.
type Config struct {
	// From is the sender of this direction's frames.
	From Side
	// Deflate is set when permessage-deflate was negotiated: RSV1 on the
	// first frame of a data message marks it compressed.
	Deflate bool
	// NoContextTakeover is set when the sender resets its compressor for
	// every message, so no history is kept between messages.
	NoContextTakeover bool
	// UnknownExtensions is set when an extension hopscope does not know
	// was negotiated: RSV bits then mean something else and are not
	// checked, and nothing is decompressed.
	UnknownExtensions bool
	// InspectLimit is how many bytes of each message's plaintext are kept
	// for inspection. 0 keeps none.
	InspectLimit int
	// MaxMessage caps a data message's payload bytes on the wire; 0 means
	// no cap. A bigger message is a violation with code 1009.
	MaxMessage int64
	// MaxInflate caps the decompressed size of one message. Beyond it,
	// decompression stops and, with context takeover, the history is lost,
	// so later compressed messages of this direction are no longer
	// inspected. Default 64 MiB.
	MaxInflate int64
	// Pool lends message buffers and decompressors. nil: a private pool.
	Pool *Pool
}

// Violation is a breach of RFC 6455 or RFC 7692, or of MaxMessage, with the
// close code the offender is sent.
type Violation struct {
	Code   ws.StatusCode
	Reason string
	// InFrame is set when the violation lies in the payload or end of a
	// frame whose header the Sink was already shown; otherwise the
	// offending frame's header itself was refused and the Sink saw
	// nothing of it.
	InFrame bool
}

func (v *Violation) Error() string {
	return fmt.Sprintf("websocket violation (%d): %s", v.Code, v.Reason)
}

func protocolError(format string, args ...any) *Violation {
	return &Violation{Code: ws.StatusProtocolError, Reason: fmt.Sprintf(format, args...)}
}

// Message is a complete data message or a control frame.
type Message struct {
	// Op is text, binary, close, ping or pong.
	Op ws.OpCode
	// Fragments is the number of frames the message came in.
	Fragments int
	// Compressed is set for a permessage-deflate compressed message.
	Compressed bool
	// WireLen counts the message's bytes on the wire, headers included.
	WireLen int64
	// PayloadLen counts its payload bytes on the wire.
	PayloadLen int64
	// Len is the payload length after decompression, or -1 when it could
	// not be decompressed (history lost, unknown extension).
	Len int64
	// Payload holds the first InspectLimit bytes of the plaintext. It is
	// valid only until the Sink's Message method returns.
	Payload []byte
	// Truncated is set when Payload holds less than the whole message.
	Truncated bool
	// CloseCode and CloseReason are set for close frames; a close frame
	// without a body has code 1005 (no status received).
	CloseCode   ws.StatusCode
	CloseReason string
}

// Sink receives what the parser finds, in stream order. raw slices are the
// bytes exactly as they came on the wire; off is their offset in the chunk
// given to Feed, or -1 when they were assembled from earlier chunks (a
// header split across reads). An error returned by a Sink method stops Feed
// and is returned by it.
type Sink interface {
	Header(h ws.Header, raw []byte, off int) error
	Payload(raw []byte, off int) error
	Message(m *Message) error
}

// Parser follows one direction of a connection.
type Parser struct {
	cfg Config

	// The frame header being read, possibly across chunks.
	hdr headerBuf
	// The decoder's reader and scratch live here, not on the stack, so
	// that decoding a header allocates nothing.
	rd      byteReader
	scratch [ws.MaxHeaderSize - 2]byte

	frame     ws.Header
	inFrame   bool
	remaining int64
	maskOff   int

	// The data message in progress.
	inMessage  bool
	msgOp      ws.OpCode
	fragments  int
	compressed bool
	wireLen    int64
	payloadLen int64
	kept       *[]byte // unmasked payload (compressed bytes for compressed messages)
	inflated   *[]byte // decompressed start of a compressed message
	keepCap    int
	overflow   bool // kept dropped bytes

	// UTF-8 validation of the uncompressed text message in progress, as
	// it streams: text is set while one is checked; part holds the
	// plaintext of a code point cut at a chunk or frame edge, held its
	// wire bytes not yet shown to the Sink (those of the current frame).
	text     bool
	utf8     utf8State
	held     [utf8.UTFMax - 1]byte
	heldN    int
	plainBuf [512]byte

	// The control frame in progress (control frames may come between the
	// fragments of a data message, so they have their own state).
	ctrl     [125]byte
	ctrlN    int
	ctrlWire int64

	// permessage-deflate history: the last 32 KiB of this direction's
	// plaintext, kept when the sender uses context takeover.
	window      []byte
	inflateLost bool

	msg Message
}

// New returns a parser for one direction.
func New(cfg Config) *Parser {
	if cfg.MaxInflate <= 0 {
		cfg.MaxInflate = 64 << 20
	}
	if cfg.Pool == nil {
		cfg.Pool = NewPool()
	}
	return &Parser{cfg: cfg}
}

// InflateLost reports whether decompression history was lost, so that
// compressed messages are no longer inspected.
func (p *Parser) InflateLost() bool { return p.inflateLost }

// InMessage reports whether a data message has begun and not ended.
func (p *Parser) InMessage() bool { return p.inMessage }

// Feed parses the next chunk of the stream.
func (p *Parser) Feed(b []byte, sink Sink) error {
	off := 0
	for off < len(b) {
		if !p.inFrame {
			n, done := p.hdr.fill(b[off:])
			start := off
			off += n
			if !done {
				continue
			}
			size := p.hdr.n
			p.hdr.n = 0
			if err := p.startFrame(); err != nil {
				return err
			}
			raw, rawOff := p.hdr.b[:size], -1
			if n == size {
				raw, rawOff = b[start:off], start
			}
			if err := sink.Header(p.frame, raw, rawOff); err != nil {
				return err
			}
			if p.remaining == 0 {
				if err := p.endFrame(sink); err != nil {
					return err
				}
			}
			continue
		}
		n := len(b) - off
		if int64(n) > p.remaining {
			n = int(p.remaining)
		}
		chunk := b[off : off+n]
		if p.text && !p.frame.OpCode.IsControl() {
			if err := p.textPayload(chunk, off, int64(n) == p.remaining, sink); err != nil {
				return err
			}
		} else if err := sink.Payload(chunk, off); err != nil {
			return err
		}
		p.keep(chunk)
		off += n
		p.remaining -= int64(n)
		if p.remaining == 0 {
			if err := p.endFrame(sink); err != nil {
				return err
			}
		}
	}
	return nil
}

// headerBuf gathers a frame header that may come across several chunks
// (the parser's reads, the Edge's writes).
type headerBuf struct {
	b [ws.MaxHeaderSize]byte
	n int
}

// fill adds bytes from p to the header. It returns how many it took and
// whether the header is complete.
func (h *headerBuf) fill(p []byte) (int, bool) {
	taken := 0
	for {
		need := headerSize(h.b[:h.n])
		if h.n >= need {
			return taken, true
		}
		if taken == len(p) {
			return taken, false
		}
		n := copy(h.b[h.n:need], p[taken:])
		h.n += n
		taken += n
	}
}

// headerSize is the full size of a header given its first bytes (2 until
// the second byte is known).
func headerSize(b []byte) int {
	if len(b) < 2 {
		return 2
	}
	size := 2
	switch b[1] & 0x7f {
	case 126:
		size += 2
	case 127:
		size += 8
	}
	if b[1]&0x80 != 0 {
		size += 4
	}
	return size
}

// byteReader reads the header array for ws.ReadHeaderBuffer without an
// allocation per frame.
type byteReader struct {
	b []byte
}

func (r *byteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

// startFrame decodes and validates the complete header in p.hdr.
func (p *Parser) startFrame() error {
	raw := p.hdr.b[:headerSize(p.hdr.b[:])]
	p.rd.b = raw
	h, err := ws.ReadHeaderBuffer(&p.rd, p.scratch[:0])
	if err != nil {
		return protocolError("malformed frame header: %v", err)
	}
	// RFC 6455 section 5.2: the minimal number of bytes must encode the
	// length; strict clients reject anything else.
	switch raw[1] & 0x7f {
	case 126:
		if h.Length < 126 {
			return protocolError("payload length %d encoded in 16 bits", h.Length)
		}
	case 127:
		if h.Length <= 0xffff {
			return protocolError("payload length %d encoded in 64 bits", h.Length)
		}
	}
	if err := p.check(h); err != nil {
		return err
	}
	p.frame, p.inFrame, p.remaining, p.maskOff = h, true, h.Length, 0
	wire := int64(len(raw)) + h.Length
	if h.OpCode.IsControl() {
		p.ctrlN, p.ctrlWire = 0, wire
		return nil
	}
	if h.OpCode != ws.OpContinuation {
		p.inMessage, p.msgOp, p.fragments = true, h.OpCode, 0
		p.compressed = h.Rsv1() && p.cfg.Deflate && !p.cfg.UnknownExtensions
		// Compressed text is checked on its inspected plaintext when the
		// message ends; a text message under an unknown extension cannot
		// be read at all.
		p.text = h.OpCode == ws.OpText && !p.compressed && !p.cfg.UnknownExtensions
		p.utf8 = utf8State{}
		p.wireLen, p.payloadLen, p.overflow = 0, 0, false
		p.keepCap = p.cfg.InspectLimit
		if p.compressed {
			// All compressed bytes are needed to decompress even the start
			// when history is kept; cap what is held all the same.
			p.keepCap = max(4*p.cfg.InspectLimit, 1<<20)
		}
	}
	p.wireLen += wire
	p.payloadLen += h.Length
	return nil
}

// check validates a frame header against the direction's state.
func (p *Parser) check(h ws.Header) error {
	op := h.OpCode
	if op.IsReserved() {
		return protocolError("reserved opcode %#x", byte(op))
	}
	if !p.cfg.UnknownExtensions {
		if h.Rsv2() || h.Rsv3() {
			return protocolError("RSV2/RSV3 set with no extension that defines them")
		}
		if h.Rsv1() {
			switch {
			case !p.cfg.Deflate:
				return protocolError("RSV1 set without permessage-deflate")
			case op == ws.OpContinuation:
				return protocolError("RSV1 set on a continuation frame")
			case op.IsControl():
				return protocolError("RSV1 set on a control frame")
			}
		}
	}
	if op.IsControl() {
		if !h.Fin {
			return protocolError("fragmented %s frame", opName(op))
		}
		if h.Length > 125 {
			return protocolError("%s frame with %d bytes of payload (at most 125)", opName(op), h.Length)
		}
	}
	switch {
	case p.cfg.From == Client && !h.Masked:
		return protocolError("unmasked frame from the client")
	case p.cfg.From == Server && h.Masked:
		return protocolError("masked frame from the server")
	}
	switch {
	case op == ws.OpContinuation && !p.inMessage:
		return protocolError("continuation frame with no message in progress")
	case (op == ws.OpText || op == ws.OpBinary) && p.inMessage:
		return protocolError("new %s message before the previous one ended", opName(op))
	}
	if max := p.cfg.MaxMessage; max > 0 && !op.IsControl() {
		size := h.Length
		if op == ws.OpContinuation {
			size += p.payloadLen
		}
		if size > max {
			return &Violation{Code: ws.StatusMessageTooBig, Reason: fmt.Sprintf("message of more than %d bytes (limit %d)", size, max)}
		}
	}
	return nil
}

// keep adds a payload chunk, unmasked, to what is kept for inspection.
func (p *Parser) keep(raw []byte) {
	h := &p.frame
	if h.OpCode.IsControl() {
		n := copy(p.ctrl[p.ctrlN:], raw)
		if h.Masked {
			ws.Cipher(p.ctrl[p.ctrlN:p.ctrlN+n], h.Mask, p.maskOff)
		}
		p.ctrlN += n
		p.maskOff += len(raw)
		return
	}
	room := p.keepCap
	if p.kept != nil {
		room -= len(*p.kept)
	}
	n := min(len(raw), room)
	if n < len(raw) {
		p.overflow = true
	}
	if n > 0 {
		if p.kept == nil {
			p.kept = p.cfg.Pool.getBytes()
		}
		start := len(*p.kept)
		*p.kept = append(*p.kept, raw[:n]...)
		if h.Masked {
			ws.Cipher((*p.kept)[start:], h.Mask, p.maskOff)
		}
	}
	p.maskOff += len(raw)
}

// endFrame finishes the current frame and, at the end of a message or for a
// control frame, reports it to the sink.
func (p *Parser) endFrame(sink Sink) error {
	p.inFrame = false
	h := p.frame
	if h.OpCode.IsControl() {
		m := &p.msg
		*m = Message{Op: h.OpCode, Fragments: 1, WireLen: p.ctrlWire, PayloadLen: int64(p.ctrlN), Len: int64(p.ctrlN), Payload: p.ctrl[:p.ctrlN]}
		if h.OpCode == ws.OpClose {
			if err := parseClose(m); err != nil {
				err.InFrame = true
				return err
			}
		}
		return sink.Message(m)
	}
	p.fragments++
	if !h.Fin {
		return nil
	}
	if p.text {
		p.text = false
		if p.utf8.n > 0 {
			p.inMessage = false
			p.release()
			return &Violation{Code: ws.StatusInvalidFramePayloadData, Reason: "text message ends inside a UTF-8 sequence", InFrame: true}
		}
	}
	m := &p.msg
	*m = Message{Op: p.msgOp, Fragments: p.fragments, Compressed: p.compressed, WireLen: p.wireLen, PayloadLen: p.payloadLen}
	var kept []byte
	if p.kept != nil {
		kept = *p.kept
	}
	switch {
	case p.compressed:
		m.Payload, m.Len = p.inflate(kept, !p.overflow)
	case p.cfg.UnknownExtensions && h.Rsv != 0:
		m.Len = -1 // another extension transformed it: unreadable here
	default:
		m.Payload, m.Len = kept, p.payloadLen
	}
	m.Truncated = m.Len < 0 || int64(len(m.Payload)) < m.Len
	p.inMessage = false
	defer p.release()
	if m.Op == ws.OpText && m.Compressed && m.Len >= 0 && !validUTF8Prefix(m.Payload, m.Truncated) {
		return &Violation{Code: ws.StatusInvalidFramePayloadData, Reason: "text message is not valid UTF-8", InFrame: true}
	}
	return sink.Message(m)
}

func (p *Parser) release() {
	if p.kept != nil {
		p.cfg.Pool.putBytes(p.kept)
		p.kept = nil
	}
	if p.inflated != nil {
		p.cfg.Pool.putBytes(p.inflated)
		p.inflated = nil
	}
}

// parseClose validates a close frame's body (RFC 6455 section 7.4).
func parseClose(m *Message) *Violation {
	switch n := len(m.Payload); {
	case n == 0:
		m.CloseCode = ws.StatusNoStatusRcvd
		return nil
	case n == 1:
		return protocolError("close frame with a 1-byte body")
	}
	code := ws.StatusCode(binary.BigEndian.Uint16(m.Payload))
	if !validCloseCode(code) {
		return protocolError("close code %d may not be sent", code)
	}
	reason := m.Payload[2:]
	if !utf8.Valid(reason) {
		return &Violation{Code: ws.StatusInvalidFramePayloadData, Reason: "close reason is not valid UTF-8"}
	}
	m.CloseCode, m.CloseReason = code, string(reason)
	return nil
}

// validCloseCode follows the IANA registry: 1000-1003 and 1007-1014 are
// defined (1012-1014 came after RFC 6455, and gobwas/ws wrongly rejects
// them), 3000-4999 belong to libraries and applications.
func validCloseCode(c ws.StatusCode) bool {
	switch {
	case c >= 1000 && c <= 1003, c >= 1007 && c <= 1014:
		return true
	case c >= 3000 && c <= 4999:
		return true
	}
	return false
}

// validUTF8Prefix checks b; when b is only the start of a message, a
// character cut at its end is not an error.
func validUTF8Prefix(b []byte, truncated bool) bool {
	if utf8.Valid(b) {
		return true
	}
	if !truncated {
		return false
	}
	for cut := 1; cut <= utf8.UTFMax-1 && cut <= len(b); cut++ {
		if utf8.Valid(b[:len(b)-cut]) {
			return true
		}
	}
	return false
}

func opName(op ws.OpCode) string {
	switch op {
	case ws.OpText:
		return "text"
	case ws.OpBinary:
		return "binary"
	case ws.OpClose:
		return "close"
	case ws.OpPing:
		return "ping"
	case ws.OpPong:
		return "pong"
	case ws.OpContinuation:
		return "continuation"
	}
	return fmt.Sprintf("opcode %#x", byte(op))
}

// OpName names an opcode as events do: text, binary, close, ping, pong.
func OpName(op ws.OpCode) string { return opName(op) }

// textPayload shows the Sink the part of raw (wire bytes of a text frame)
// that is valid UTF-8 so far. The wire bytes of a code point cut at the
// chunk's end are held until the next chunk shows whether it goes on
// validly, unless the frame ends here (then they go with their frame, the
// frame being valid as far as it goes). At the first byte that cannot be
// UTF-8 it stops: nothing from the start of the bad sequence on is shown.
func (p *Parser) textPayload(raw []byte, off int, frameEnds bool, sink Sink) error {
	start := p.utf8.pos
	bad := int64(-1)
	for done := 0; done < len(raw) && bad < 0; {
		piece := raw[done:]
		if p.frame.Masked {
			n := copy(p.plainBuf[:], piece)
			piece = p.plainBuf[:n]
			ws.Cipher(piece, p.frame.Mask, p.maskOff+done)
		}
		bad = p.utf8.feed(piece)
		done += len(piece)
	}
	reason := "text message is not valid UTF-8"
	if bad < 0 && frameEnds && p.frame.Fin && p.utf8.n > 0 {
		bad, reason = p.utf8.partStart, "text message ends inside a UTF-8 sequence"
	}
	deliver := p.heldN + len(raw)
	switch {
	case bad <= start && bad >= 0:
		// The bad sequence began in held bytes or an earlier frame.
		deliver = 0
	case bad > start:
		deliver = p.heldN + int(bad-start)
	case !frameEnds:
		deliver -= min(p.utf8.n, deliver)
	}
	if err := p.showText(raw, off, deliver, sink); err != nil {
		return err
	}
	if bad >= 0 {
		p.heldN = 0
		return &Violation{Code: ws.StatusInvalidFramePayloadData, Reason: reason, InFrame: true}
	}
	return nil
}

// showText shows the Sink the first n bytes of the held bytes followed by
// raw, and keeps the rest held.
func (p *Parser) showText(raw []byte, off, n int, sink Sink) error {
	fromHeld := min(n, p.heldN)
	if fromHeld > 0 {
		if err := sink.Payload(p.held[:fromHeld], -1); err != nil {
			return err
		}
	}
	fromRaw := n - fromHeld
	if fromRaw > 0 {
		if err := sink.Payload(raw[:fromRaw], off); err != nil {
			return err
		}
	}
	var rest [2 * (utf8.UTFMax - 1)]byte
	k := copy(rest[:], p.held[fromHeld:p.heldN])
	k += copy(rest[k:], raw[fromRaw:])
	p.heldN = copy(p.held[:], rest[:k])
	return nil
}

// utf8State validates a text message's plaintext as it streams.
type utf8State struct {
	pos       int64 // plaintext bytes fed so far
	part      [utf8.UTFMax]byte
	n         int   // bytes in part: a code point begun, not yet finished
	partStart int64 // where part began
}

// feed checks the next plaintext bytes. It returns -1 while all is valid
// (a code point cut at the end is kept in part), or the message offset at
// which the first invalid sequence begins.
func (u *utf8State) feed(b []byte) int64 {
	base := u.pos
	u.pos += int64(len(b))
	i := 0
	for u.n > 0 && i < len(b) {
		u.part[u.n] = b[i]
		u.n++
		i++
		if !validPartial(u.part[:u.n]) {
			return u.partStart
		}
		if u.n == seqLen(u.part[0]) {
			u.n = 0
		}
	}
	rest := b[i:]
	if utf8.Valid(rest) {
		return -1
	}
	// Most often rest is invalid only because a code point is cut at its
	// end (the pieces a masked frame is unmasked in end anywhere): that
	// needs no rune-by-rune scan of the whole piece.
	if k := lastSeqStart(rest); k >= 0 && !utf8.FullRune(rest[k:]) && validPartial(rest[k:]) && utf8.Valid(rest[:k]) {
		u.n = copy(u.part[:], rest[k:])
		u.partStart = base + int64(i+k)
		return -1
	}
	for j := 0; j < len(rest); {
		if rest[j] < utf8.RuneSelf {
			j++
			continue
		}
		r, size := utf8.DecodeRune(rest[j:])
		if r == utf8.RuneError && size == 1 {
			if !utf8.FullRune(rest[j:]) && validPartial(rest[j:]) {
				u.n = copy(u.part[:], rest[j:])
				u.partStart = base + int64(i+j)
				return -1
			}
			return base + int64(i+j)
		}
		j += size
	}
	return -1
}

// lastSeqStart is where the last UTF-8 sequence in b begins, looking back
// no further than a cut code point can reach; -1 when it finds no lead.
func lastSeqStart(b []byte) int {
	for j := len(b) - 1; j >= 0 && j >= len(b)-(utf8.UTFMax-1); j-- {
		if b[j]&0xc0 != 0x80 {
			return j
		}
	}
	return -1
}

// seqLen is the length of the UTF-8 sequence lead begins, 0 when lead
// cannot begin one.
func seqLen(lead byte) int {
	switch {
	case lead < utf8.RuneSelf:
		return 1
	case lead >= 0xc2 && lead <= 0xdf:
		return 2
	case lead >= 0xe0 && lead <= 0xef:
		return 3
	case lead >= 0xf0 && lead <= 0xf4:
		return 4
	}
	return 0
}

// validPartial reports whether b is a valid multi-byte sequence or the
// valid start of one: some continuation makes it a code point.
func validPartial(b []byte) bool {
	want := seqLen(b[0])
	if want < 2 || len(b) > want {
		return false
	}
	// The second byte's range depends on the lead (E0, ED, F0, F4 narrow
	// it); one of these three completions fits every valid start.
	var buf [utf8.UTFMax]byte
	for _, second := range [...]byte{0x80, 0x90, 0xa0} {
		n := copy(buf[:], b)
		for k := n; k < want; k++ {
			buf[k] = 0x80
			if k == 1 {
				buf[k] = second
			}
		}
		if utf8.Valid(buf[:want]) {
			return true
		}
	}
	return false
}
