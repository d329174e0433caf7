package wsframe

import (
	"bytes"
	"compress/flate"
	"errors"
	"strings"
	"testing"

	"github.com/gobwas/ws"
)

// recorder is a Sink that keeps everything, and checks that the raw bytes
// it is shown are exactly the input.
type recorder struct {
	raw      bytes.Buffer
	messages []Message
	payloads []string
}

func (r *recorder) Header(h ws.Header, raw []byte, off int) error {
	r.raw.Write(raw)
	return nil
}

func (r *recorder) Payload(raw []byte, off int) error {
	r.raw.Write(raw)
	return nil
}

func (r *recorder) Message(m *Message) error {
	r.messages = append(r.messages, *m)
	r.payloads = append(r.payloads, string(m.Payload))
	return nil
}

// frame builds one frame's wire bytes; masked frames get a fixed mask so
// the tables read the same every run.
func frame(op ws.OpCode, fin bool, rsv byte, masked bool, payload []byte) []byte {
	h := ws.Header{Fin: fin, Rsv: rsv, OpCode: op, Length: int64(len(payload))}
	p := append([]byte(nil), payload...)
	if masked {
		h.Masked, h.Mask = true, [4]byte{0x11, 0x22, 0x33, 0x44}
		ws.Cipher(p, h.Mask, 0)
	}
	var b bytes.Buffer
	_ = ws.WriteHeader(&b, h)
	b.Write(p)
	return b.Bytes()
}

func concat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// feedIn feeds input in pieces of the given size (0: all at once).
func feedIn(p *Parser, input []byte, piece int, sink Sink) error {
	if piece <= 0 {
		return p.Feed(input, sink)
	}
	for len(input) > 0 {
		n := min(piece, len(input))
		if err := p.Feed(input[:n], sink); err != nil {
			return err
		}
		input = input[n:]
	}
	return nil
}

type wantMsg struct {
	op        ws.OpCode
	payload   string
	fragments int
}

var validStreams = []struct {
	name string
	from Side
	wire []byte
	want []wantMsg
}{
	{"empty text", Client, frame(ws.OpText, true, 0, true, nil), []wantMsg{{ws.OpText, "", 1}}},
	{"text 125", Client, frame(ws.OpText, true, 0, true, bytes.Repeat([]byte("a"), 125)), []wantMsg{{ws.OpText, strings.Repeat("a", 125), 1}}},
	{"binary 126 (16-bit length)", Server, frame(ws.OpBinary, true, 0, false, bytes.Repeat([]byte{7}, 126)), []wantMsg{{ws.OpBinary, string(bytes.Repeat([]byte{7}, 126)), 1}}},
	{"binary 65535", Server, frame(ws.OpBinary, true, 0, false, bytes.Repeat([]byte{1}, 65535)), []wantMsg{{ws.OpBinary, string(bytes.Repeat([]byte{1}, 65535)), 1}}},
	{"binary 65536 (64-bit length)", Client, frame(ws.OpBinary, true, 0, true, bytes.Repeat([]byte{2}, 65536)), []wantMsg{{ws.OpBinary, string(bytes.Repeat([]byte{2}, 65536)), 1}}},
	{"fragmented with a ping between", Client, concat(
		frame(ws.OpText, false, 0, true, []byte("hel")),
		frame(ws.OpPing, true, 0, true, []byte("p")),
		frame(ws.OpContinuation, false, 0, true, []byte("lo ")),
		frame(ws.OpContinuation, true, 0, true, []byte("world")),
	), []wantMsg{{ws.OpPing, "p", 1}, {ws.OpText, "hello world", 3}}},
	{"UTF-8 rune split across fragments", Server, concat(
		frame(ws.OpText, false, 0, false, []byte("h\xc3")),
		frame(ws.OpContinuation, true, 0, false, []byte("\xa9llo")),
	), []wantMsg{{ws.OpText, "h\u00e9llo", 2}}},
	{"close with 1012 (not rejected)", Server, frame(ws.OpClose, true, 0, false, ws.NewCloseFrameBody(1012, "restart")), []wantMsg{{ws.OpClose, "\x03\xf4restart", 1}}},
	{"close without body", Client, frame(ws.OpClose, true, 0, true, nil), []wantMsg{{ws.OpClose, "", 1}}},
	{"pong", Server, frame(ws.OpPong, true, 0, false, []byte("x")), []wantMsg{{ws.OpPong, "x", 1}}},
}

func TestValidStreamsPassByteForByte(t *testing.T) {
	for _, tc := range validStreams {
		for _, piece := range []int{0, 1, 2, 3, 7, 1000} {
			rec := &recorder{}
			p := New(Config{From: tc.from, InspectLimit: 1 << 20})
			if err := feedIn(p, tc.wire, piece, rec); err != nil {
				t.Fatalf("%s (pieces of %d): %v", tc.name, piece, err)
			}
			if !bytes.Equal(rec.raw.Bytes(), tc.wire) {
				t.Fatalf("%s (pieces of %d): the sink saw different bytes than came in", tc.name, piece)
			}
			if len(rec.messages) != len(tc.want) {
				t.Fatalf("%s: %d messages, want %d", tc.name, len(rec.messages), len(tc.want))
			}
			for i, w := range tc.want {
				m := rec.messages[i]
				if m.Op != w.op || rec.payloads[i] != w.payload || m.Fragments != w.fragments || m.Truncated {
					t.Errorf("%s message %d: op %v fragments %d truncated %v payload %q; want %v %d %q",
						tc.name, i, m.Op, m.Fragments, m.Truncated, rec.payloads[i], w.op, w.fragments, w.payload)
				}
			}
		}
	}
}

func TestMessageAccounting(t *testing.T) {
	wire := concat(frame(ws.OpBinary, false, 0, true, make([]byte, 200)), frame(ws.OpContinuation, true, 0, true, make([]byte, 10)))
	rec := &recorder{}
	if err := New(Config{From: Client, InspectLimit: 64}).Feed(wire, rec); err != nil {
		t.Fatal(err)
	}
	m := rec.messages[0]
	if m.WireLen != int64(len(wire)) || m.PayloadLen != 210 || m.Len != 210 || len(m.Payload) != 64 || !m.Truncated {
		t.Errorf("wire %d payload %d len %d kept %d truncated %v", m.WireLen, m.PayloadLen, m.Len, len(m.Payload), m.Truncated)
	}
	close := frame(ws.OpClose, true, 0, false, ws.NewCloseFrameBody(ws.StatusGoingAway, "bye"))
	rec = &recorder{}
	if err := New(Config{From: Server}).Feed(close, rec); err != nil {
		t.Fatal(err)
	}
	if m := rec.messages[0]; m.CloseCode != ws.StatusGoingAway || m.CloseReason != "bye" {
		t.Errorf("close %d %q", m.CloseCode, m.CloseReason)
	}
}

func TestViolations(t *testing.T) {
	longLen16 := []byte{0x82, 126, 0x00, 0x05, 1, 2, 3, 4, 5}    // 5 bytes in a 16-bit length
	longLen64 := []byte{0x82, 127, 0, 0, 0, 0, 0, 0, 0x01, 0x00} // 256 in a 64-bit length
	msbLen := []byte{0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0x01}    // most significant bit set
	cases := []struct {
		name string
		cfg  Config
		wire []byte
		code ws.StatusCode
		says string
	}{
		{"reserved opcode", Config{From: Server}, frame(0x3, true, 0, false, nil), 1002, "reserved opcode"},
		{"reserved control opcode", Config{From: Server}, frame(0xB, true, 0, false, nil), 1002, "reserved opcode"},
		{"RSV1 without deflate", Config{From: Server}, frame(ws.OpText, true, 4, false, []byte("x")), 1002, "RSV1"},
		{"RSV2", Config{From: Server, Deflate: true}, frame(ws.OpText, true, 2, false, []byte("x")), 1002, "RSV2"},
		{"RSV1 on continuation", Config{From: Server, Deflate: true}, concat(frame(ws.OpText, false, 4, false, []byte{0}), frame(ws.OpContinuation, true, 4, false, []byte{0})), 1002, "continuation"},
		{"RSV1 on control", Config{From: Server, Deflate: true}, frame(ws.OpPing, true, 4, false, nil), 1002, "control"},
		{"fragmented ping", Config{From: Server}, frame(ws.OpPing, false, 0, false, nil), 1002, "fragmented ping"},
		{"control over 125", Config{From: Server}, frame(ws.OpPing, true, 0, false, make([]byte, 126)), 1002, "at most 125"},
		{"unmasked from client", Config{From: Client}, frame(ws.OpText, true, 0, false, []byte("x")), 1002, "unmasked"},
		{"masked from server", Config{From: Server}, frame(ws.OpText, true, 0, true, []byte("x")), 1002, "masked frame from the server"},
		{"continuation first", Config{From: Server}, frame(ws.OpContinuation, true, 0, false, []byte("x")), 1002, "no message in progress"},
		{"new message mid-message", Config{From: Server}, concat(frame(ws.OpText, false, 0, false, []byte("a")), frame(ws.OpBinary, true, 0, false, []byte("b"))), 1002, "before the previous one ended"},
		{"close with 1-byte body", Config{From: Server}, frame(ws.OpClose, true, 0, false, []byte{3}), 1002, "1-byte"},
		{"close code 1005 on the wire", Config{From: Server}, frame(ws.OpClose, true, 0, false, ws.NewCloseFrameBody(1005, "")), 1002, "1005"},
		{"close code 999", Config{From: Server}, frame(ws.OpClose, true, 0, false, ws.NewCloseFrameBody(999, "")), 1002, "999"},
		{"close code 1004", Config{From: Server}, frame(ws.OpClose, true, 0, false, ws.NewCloseFrameBody(1004, "")), 1002, "1004"},
		{"close code 1006", Config{From: Server}, frame(ws.OpClose, true, 0, false, ws.NewCloseFrameBody(1006, "")), 1002, "1006"},
		{"close code 1015", Config{From: Server}, frame(ws.OpClose, true, 0, false, ws.NewCloseFrameBody(1015, "")), 1002, "1015"},
		{"close code 5000", Config{From: Server}, frame(ws.OpClose, true, 0, false, ws.NewCloseFrameBody(5000, "")), 1002, "5000"},
		{"close reason not UTF-8", Config{From: Server}, frame(ws.OpClose, true, 0, false, append(ws.NewCloseFrameBody(1000, ""), 0xff)), 1007, "UTF-8"},
		{"text not UTF-8", Config{From: Server, InspectLimit: 100}, frame(ws.OpText, true, 0, false, []byte{'a', 0xc3, 'b'}), 1007, "UTF-8"},
		{"non-minimal 16-bit length", Config{From: Server}, longLen16, 1002, "16 bits"},
		{"non-minimal 64-bit length", Config{From: Server}, append(longLen64, make([]byte, 256)...), 1002, "64 bits"},
		{"length with MSB set", Config{From: Server}, msbLen, 1002, "malformed frame header"},
		{"message too big", Config{From: Server, MaxMessage: 10}, frame(ws.OpBinary, true, 0, false, make([]byte, 11)), 1009, "limit 10"},
		{"fragments too big together", Config{From: Server, MaxMessage: 10}, concat(frame(ws.OpBinary, false, 0, false, make([]byte, 6)), frame(ws.OpContinuation, true, 0, false, make([]byte, 6))), 1009, "limit 10"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := New(tc.cfg).Feed(tc.wire, &recorder{})
			var v *Violation
			if !errors.As(err, &v) {
				t.Fatalf("err = %v, want a violation", err)
			}
			if v.Code != tc.code || !strings.Contains(v.Reason, tc.says) {
				t.Errorf("violation %d %q, want %d mentioning %q", v.Code, v.Reason, tc.code, tc.says)
			}
		})
	}
}

// An unknown extension may use RSV bits; they are then not checked.
func TestUnknownExtensionAllowsRSV(t *testing.T) {
	rec := &recorder{}
	err := New(Config{From: Server, UnknownExtensions: true}).Feed(frame(ws.OpBinary, true, 2, false, []byte("x")), rec)
	if err != nil || len(rec.messages) != 1 || rec.messages[0].Len != -1 {
		t.Fatalf("err %v messages %v", err, rec.messages)
	}
}

// compressor is a permessage-deflate sender: one flate stream per
// direction, flushed and stripped of its tail per message.
type compressor struct {
	buf      bytes.Buffer
	w        *flate.Writer
	takeover bool
}

func newCompressor(takeover bool) *compressor {
	c := &compressor{takeover: takeover}
	c.w, _ = flate.NewWriter(&c.buf, flate.BestCompression)
	return c
}

func (c *compressor) compress(msg []byte) []byte {
	c.buf.Reset()
	if !c.takeover {
		c.w.Reset(&c.buf)
	}
	_, _ = c.w.Write(msg)
	_ = c.w.Flush()
	return bytes.TrimSuffix(append([]byte(nil), c.buf.Bytes()...), deflateTail)
}

func TestDeflate(t *testing.T) {
	messages := []string{
		strings.Repeat("the quick brown fox ", 50),
		strings.Repeat("the quick brown fox ", 60) + "jumps", // refers back into message 1 with takeover
		"short",
		strings.Repeat("z", 100000), // longer than the window
		strings.Repeat("the quick brown fox ", 10),
	}
	for _, takeover := range []bool{true, false} {
		c := newCompressor(takeover)
		var wire []byte
		for i, m := range messages {
			z := c.compress([]byte(m))
			if i == 1 && takeover && len(z) > 40 {
				t.Fatalf("second message compressed to %d bytes: the test needs it to refer back", len(z))
			}
			if i == 2 {
				// fragmented compressed message: RSV1 on the first frame only
				wire = append(wire, frame(ws.OpText, false, 4, true, z[:2])...)
				wire = append(wire, frame(ws.OpContinuation, true, 0, true, z[2:])...)
				continue
			}
			wire = append(wire, frame(ws.OpText, true, 4, true, z)...)
		}
		for _, piece := range []int{0, 5} {
			rec := &recorder{}
			p := New(Config{From: Client, Deflate: true, NoContextTakeover: !takeover, InspectLimit: 1 << 20})
			if err := feedIn(p, wire, piece, rec); err != nil {
				t.Fatalf("takeover %v: %v", takeover, err)
			}
			for i, m := range messages {
				got := rec.messages[i]
				if !got.Compressed || got.Len != int64(len(m)) || rec.payloads[i] != m {
					t.Errorf("takeover %v message %d: compressed %v len %d, payload equal %v", takeover, i, got.Compressed, got.Len, rec.payloads[i] == m)
				}
			}
		}
	}
}

// A compression bomb stops at MaxInflate and is reported as unknown length;
// with context takeover the history is then lost for good.
func TestInflateCap(t *testing.T) {
	c := newCompressor(true)
	z := c.compress(bytes.Repeat([]byte{0}, 1<<20))
	next := c.compress([]byte("after"))
	wire := concat(frame(ws.OpBinary, true, 4, false, z), frame(ws.OpBinary, true, 4, false, next))
	rec := &recorder{}
	p := New(Config{From: Server, Deflate: true, InspectLimit: 100, MaxInflate: 64 << 10})
	if err := p.Feed(wire, rec); err != nil {
		t.Fatal(err)
	}
	if rec.messages[0].Len != -1 || !rec.messages[0].Truncated || !p.InflateLost() || rec.messages[1].Len != -1 {
		t.Errorf("bomb: %+v then %+v, lost %v", rec.messages[0].Len, rec.messages[1].Len, p.InflateLost())
	}
}

// Corrupt compressed data is not a protocol violation for the proxy (the
// receiver will judge it), but it cannot be inspected.
func TestCorruptDeflate(t *testing.T) {
	rec := &recorder{}
	err := New(Config{From: Server, Deflate: true, InspectLimit: 100}).Feed(frame(ws.OpBinary, true, 4, false, []byte{0xff, 0xff, 0xff}), rec)
	if err != nil || rec.messages[0].Len != -1 {
		t.Fatalf("err %v len %d", err, rec.messages[0].Len)
	}
}

// FuzzParser: arbitrary bytes never panic, and whatever the parser accepts
// it reports byte for byte as it came.
func FuzzParser(f *testing.F) {
	for _, s := range validStreams {
		f.Add(s.wire, uint8(s.from), uint8(3))
	}
	f.Add([]byte{0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 1}, uint8(0), uint8(1))
	f.Fuzz(func(t *testing.T, wire []byte, from, piece uint8) {
		cfg := Config{From: Side(from % 2), Deflate: from&2 != 0, InspectLimit: 64, MaxMessage: 1 << 16}
		rec := &recorder{}
		err := feedIn(New(cfg), wire, int(piece%16), rec)
		// Only the start of a header still waiting for its end may be
		// held back; everything else is reported as it came.
		if err == nil && (!bytes.HasPrefix(wire, rec.raw.Bytes()) || len(wire)-rec.raw.Len() >= ws.MaxHeaderSize) {
			t.Fatalf("accepted input was not reported byte for byte: %d of %d bytes", rec.raw.Len(), len(wire))
		}
		var v *Violation
		if err != nil && !errors.As(err, &v) {
			t.Fatalf("non-violation error %v", err)
		}
	})
}

// BenchmarkParse64 is the per-frame cost of a 64-byte masked message.
func BenchmarkParse64(b *testing.B) {
	wire := frame(ws.OpBinary, true, 0, true, make([]byte, 64))
	p := New(Config{From: Client, InspectLimit: 1 << 20})
	sink := nopSink{}
	b.SetBytes(int64(len(wire)))
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Feed(wire, sink); err != nil {
			b.Fatal(err)
		}
	}
}

type nopSink struct{}

func (nopSink) Header(ws.Header, []byte, int) error { return nil }
func (nopSink) Payload([]byte, int) error           { return nil }
func (nopSink) Message(*Message) error              { return nil }

// Invalid UTF-8 is found as it streams, whatever the read boundaries: the
// Sink is shown the frame up to the first byte of the bad sequence and
// nothing after, so the relay can cut there. A code point cut at the end of
// a fragment goes out with that fragment, which is valid on its own.
func TestTextValidatedAsItStreams(t *testing.T) {
	for _, masked := range []bool{false, true} {
		from, hdr := Server, 2
		if masked {
			from, hdr = Client, 6
		}
		whole := func(payload string) []byte { return frame(ws.OpText, true, 0, masked, []byte(payload)) }
		first := frame(ws.OpText, false, 0, masked, []byte("ok\xe2"))
		cases := []struct {
			name   string
			wire   []byte
			shown  int // wire bytes the sink may see
			reason string
		}{
			{"bad byte", whole("ok\xffmore"), hdr + 2, "not valid UTF-8"},
			{"bad continuation", whole("ok\xe2\x82Amore"), hdr + 2, "not valid UTF-8"},
			{"overlong", whole("ok\xc0\xafmore"), hdr + 2, "not valid UTF-8"},
			{"surrogate", whole("ok\xed\xa0\x80"), hdr + 2, "not valid UTF-8"},
			{"beyond U+10FFFF", whole("ok\xf4\x90\x80\x80"), hdr + 2, "not valid UTF-8"},
			{"ends inside a code point", whole("ok\xe2\x82"), hdr + 2, "ends inside"},
			{"bad after 600 good bytes", whole(strings.Repeat("é", 300) + "\xff"), hdr + 2 + 600, "not valid UTF-8"},
			{"split across fragments", concat(first, frame(ws.OpContinuation, true, 0, masked, []byte("\x82A"))), len(first) + hdr, "not valid UTF-8"},
		}
		for _, tc := range cases {
			for _, piece := range []int{0, 1, 2, 3, 5, 1000} {
				rec := &recorder{}
				err := feedIn(New(Config{From: from}), tc.wire, piece, rec)
				var v *Violation
				if !errors.As(err, &v) || v.Code != ws.StatusInvalidFramePayloadData || !v.InFrame || !strings.Contains(v.Reason, tc.reason) {
					t.Fatalf("%s (masked %v, pieces of %d): err %v, want a 1007 violation in the frame saying %q", tc.name, masked, piece, err, tc.reason)
				}
				if got := rec.raw.Bytes(); !bytes.Equal(got, tc.wire[:tc.shown]) {
					t.Errorf("%s (masked %v, pieces of %d): sink saw %d bytes, want the first %d", tc.name, masked, piece, len(got), tc.shown)
				}
			}
		}
	}
}

// Valid text cut anywhere, even inside a code point, reaches the sink whole.
func TestTextSplitInsideCodePoints(t *testing.T) {
	text := "a€b𝄞c" + strings.Repeat("ü", 400)
	wire := concat(frame(ws.OpText, false, 0, true, []byte(text[:2])), frame(ws.OpContinuation, true, 0, true, []byte(text[2:])))
	for _, piece := range []int{1, 2, 3, 4, 7, 513} {
		rec := &recorder{}
		if err := feedIn(New(Config{From: Client, InspectLimit: 4096}), wire, piece, rec); err != nil {
			t.Fatalf("pieces of %d: %v", piece, err)
		}
		if !bytes.Equal(rec.raw.Bytes(), wire) || rec.payloads[0] != text {
			t.Fatalf("pieces of %d: the sink did not see the stream whole", piece)
		}
	}
}

// Edge knows whether a stream cut anywhere ends between frames.
func TestEdge(t *testing.T) {
	frames := [][]byte{
		frame(ws.OpText, true, 0, true, []byte("masked")),
		frame(ws.OpBinary, true, 0, false, make([]byte, 300)),
		frame(ws.OpBinary, true, 0, false, make([]byte, 70000)),
		frame(ws.OpPing, true, 0, false, nil),
	}
	wire := concat(frames...)
	ends := map[int]bool{0: true}
	at := 0
	for _, f := range frames {
		at += len(f)
		ends[at] = true
	}
	for _, piece := range []int{1, 3, 100, 1 << 20} {
		var e Edge
		for off := 0; off < len(wire); {
			n := min(piece, len(wire)-off)
			e.Wrote(wire[off : off+n])
			off += n
			if e.Between() != ends[off] {
				t.Fatalf("pieces of %d: at %d Between() = %v, want %v", piece, off, e.Between(), ends[off])
			}
		}
	}
}

// Edge knows whether a stream ends between messages (a ping between the
// fragments of a message is not such a place) and whether a close went out.
func TestEdgeMessages(t *testing.T) {
	for _, tc := range []struct {
		name            string
		frames          [][]byte
		between, closed bool
	}{
		{"whole message", [][]byte{frame(ws.OpText, true, 0, true, []byte("hi"))}, true, false},
		{"first fragment", [][]byte{frame(ws.OpText, false, 0, true, []byte("h"))}, false, false},
		{"ping between fragments", [][]byte{frame(ws.OpText, false, 0, true, []byte("h")), frame(ws.OpPing, true, 0, true, nil)}, false, false},
		{"last fragment", [][]byte{frame(ws.OpText, false, 0, true, []byte("h")), frame(ws.OpContinuation, true, 0, true, []byte("i"))}, true, false},
		{"close", [][]byte{frame(ws.OpClose, true, 0, false, []byte{3, 232})}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e Edge
			e.Wrote(concat(tc.frames...))
			if e.BetweenMessages() != tc.between || e.Closed() != tc.closed {
				t.Fatalf("BetweenMessages() = %v, Closed() = %v; want %v, %v", e.BetweenMessages(), e.Closed(), tc.between, tc.closed)
			}
		})
	}
}

// BenchmarkParseTextUTF8 is the cost of a masked 16 KiB text message of
// three-byte characters: it is unmasked in pieces for the UTF-8 check, and
// most pieces end inside a character.
func BenchmarkParseTextUTF8(b *testing.B) {
	wire := frame(ws.OpText, true, 0, true, []byte(strings.Repeat("€", 16<<10/3)))
	p := New(Config{From: Client, InspectLimit: 1 << 10})
	sink := nopSink{}
	b.SetBytes(int64(len(wire)))
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Feed(wire, sink); err != nil {
			b.Fatal(err)
		}
	}
}

// The streaming UTF-8 check finds the first bad sequence whatever the
// pieces, also when a piece also ends inside a valid code point.
func TestUTF8StateFindsTheFirstBadSequence(t *testing.T) {
	for _, tc := range []struct {
		name   string
		pieces []string
		bad    int64 // -1: valid so far
	}{
		{"valid, cut in a code point", []string{"a\xe2\x82", "\xacb"}, -1},
		{"bad before a cut code point", []string{"a\xffb\xe2", "\x82\xac"}, 1},
		{"bad lead at the very end", []string{"ab\xff"}, 2},
		{"cut, then a bad continuation", []string{"a\xe2", "\x82A"}, 1},
		{"bad after a completed cut", []string{"a\xe2\x82", "\xac\xff"}, 4},
		{"surrogate cut after its lead", []string{"a\xed", "\xa0\x80"}, 1},
		{"cut four-byte code point", []string{"\xf0\x9f", "\x98", "\x80z"}, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var u utf8State
			bad := int64(-1)
			for _, p := range tc.pieces {
				if bad = u.feed([]byte(p)); bad >= 0 {
					break
				}
			}
			if bad != tc.bad {
				t.Fatalf("first bad sequence at %d, want %d", bad, tc.bad)
			}
		})
	}
}
