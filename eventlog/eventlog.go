// Package eventlog writes hopscope's structured event log: one JSON line
// (or console line) per exchange, tunnel, denial, fault and WebSocket
// event, as README.md documents. It is an observer of the proxy's flow
// bus (package flow): it sees records, never the proxy, so it formats on
// a goroutine of its own and the relay never waits for the log.
package eventlog

import (
	"encoding/base64"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"

	"github.com/hopscope/hopscope/flow"
)

// Event names, the "event" field of every line. They are a public
// interface: README.md documents their fields.
const (
	EventHTTP      = "http"
	EventTunnel    = "tunnel"
	EventDeny      = "deny"
	EventFault     = "fault"
	EventWSOpen    = "ws_open"
	EventWSMessage = "ws_message"
	EventWSClose   = "ws_close"
	EventWSError   = "ws_error"
	// EventIntercept says what a person did at an HTTP breakpoint.
	EventIntercept = "intercept"
	// EventDropped says how many records the log missed because it could
	// not keep up (its queue was full); traffic never waits for the log.
	EventDropped = "events_dropped"
)

// WebSocket message modes (--ws-log).
const (
	WSLogOff     = "off"     // no ws_message events
	WSLogMeta    = "meta"    // ws_message without payload
	WSLogPreview = "preview" // with the first Preview bytes
	WSLogFull    = "full"    // with the whole inspected payload
)

// Options configure the event log.
type Options struct {
	// WSLog is WSLogOff, WSLogMeta, WSLogPreview (default) or WSLogFull.
	WSLog string
	// Preview is how many payload bytes ws_message shows. Default 256.
	Preview int
	// FullBytes is how many payload bytes ws_message shows with WSLogFull:
	// the relay's inspect limit. Default 1 MiB.
	FullBytes int
	// Batch, when set, brackets each batch of records the log writes, so
	// that a writer may gather a batch's lines into one write. nil: none.
	Batch Batcher
	// Queue is how many records may wait to be written. Default 8192,
	// which the linger (see Subscribe) drains long before a
	// real client fills it.
	Queue int
}

func (o Options) withDefaults() Options {
	if o.WSLog == "" {
		o.WSLog = WSLogPreview
	}
	if o.Preview == 0 {
		o.Preview = 256
	}
	if o.FullBytes == 0 {
		o.FullBytes = 1 << 20
	}
	if o.Queue == 0 {
		o.Queue = 8192
	}
	return o
}

// payloadBytes is how much of each message's payload the log needs.
func (o Options) payloadBytes() int {
	switch o.WSLog {
	case WSLogPreview:
		return o.Preview
	case WSLogFull:
		return o.FullBytes
	}
	return 0
}

// Log is the event log observer.
type Log struct {
	log  zerolog.Logger
	opts Options
	sub  atomic.Pointer[flow.Subscription]
	// dropped is how many missed records the log has already reported.
	dropped uint64
	// scratch holds base64 previews, reused per message.
	scratch []byte
}

// Subscribe starts writing bus's records to log. The log stops, having
// written what was queued, when the bus closes or the subscription is
// cancelled. zerolog returns a nil event for a disabled level, so nothing
// is formatted for levels that are off.
func Subscribe(bus *flow.Bus, log zerolog.Logger, opts Options) *flow.Subscription {
	o := opts.withDefaults()
	l := &Log{log: log, opts: o}
	payload := o.payloadBytes()
	if log.GetLevel() > zerolog.InfoLevel || zerolog.GlobalLevel() > zerolog.InfoLevel {
		// ws_message is an Info event: a log that cannot write it must not
		// make the relay copy every message's payload for it.
		payload = 0
	}
	// Lingering lets the log take records in batches instead of being
	// woken by each one, which would cost the relay more than the old
	// synchronous write did; no one reads a log that closely. 10 ms, not
	// 1: on a lockstep WebSocket (a message, then wait for the echo) the
	// wake-ups of a 1 ms linger cost the proxy 36-39 us of CPU per round
	// trip against 31-33 (hopscope bench ws-*-64B-x1, same runs), and
	// 27 with no event log at all.
	sub := bus.Subscribe(l, flow.Options{Name: "eventlog", Queue: o.Queue, PayloadBytes: payload, Linger: 10 * time.Millisecond})
	l.sub.Store(sub)
	return sub
}

// Batcher is told when the log starts and ends writing a batch.
type Batcher interface {
	Begin()
	End()
}

// Observe implements flow.Observer.
func (l *Log) Observe(batch []flow.Record) {
	if b := l.opts.Batch; b != nil {
		b.Begin()
		defer b.End()
	}
	l.reportDropped()
	for i := range batch {
		r := &batch[i]
		switch r.Kind {
		case flow.KindExchange:
			l.http(r.Exchange)
		case flow.KindTunnel:
			l.tunnel(r.Tunnel)
		case flow.KindDenial:
			l.deny(r.Denial)
		case flow.KindFault:
			l.fault(r.Fault)
		case flow.KindWSOpen:
			l.wsOpen(r.Session)
		case flow.KindWSMessage:
			l.wsMessage(&r.Message)
		case flow.KindWSClose:
			l.wsClose(r.Session)
		case flow.KindWSViolation:
			l.wsError(r.Violation)
		case flow.KindIntercept:
			l.intercept(r.Intercept)
		}
	}
}

func (l *Log) reportDropped() {
	sub := l.sub.Load()
	if sub == nil {
		return
	}
	n := sub.Dropped()
	if n == l.dropped {
		return
	}
	missed := n - l.dropped
	l.dropped = n
	if ev := l.log.Warn(); ev != nil {
		ev.Str("event", EventDropped).Uint64("dropped", missed).Uint64("dropped_total", n).
			Msg("the event log could not keep up; traffic was not slowed, these events are missing")
	}
}

// conn starts an event about a client connection. A flow that rode in a
// tunnel came on the tunnel's client connection, so its "tunnel" (the
// tunnel's conn) is its own conn.
func conn(ev *zerolog.Event, name string, c flow.Client, tunnel flow.ID) *zerolog.Event {
	ev = ev.Str("event", name).Uint64("conn", c.Conn).Str("client", c.Addr)
	if tunnel != 0 {
		ev = ev.Uint64("tunnel", c.Conn)
	}
	return ev
}

// ms renders a duration as fractional milliseconds, precise to a microsecond.
func ms(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000
}

// warnIf is the level of an event that is a warning when warn is set.
func warnIf(warn bool) zerolog.Level {
	if warn {
		return zerolog.WarnLevel
	}
	return zerolog.InfoLevel
}

func (l *Log) http(x *flow.Exchange) {
	ev := l.log.WithLevel(warnIf(x.Status >= 500))
	if ev == nil {
		return
	}
	conn(ev, EventHTTP, x.Client, x.Tunnel).
		Str("method", x.Method).Str("url", x.URL).Str("proto", x.Proto).
		Int("status", x.Status).Int64("req_bytes", x.RequestBody.Len).Int64("resp_bytes", x.ResponseBody.Len).
		Float64("duration_ms", ms(x.Duration))
	if x.Error != "" {
		ev.Str("error", x.Error)
	}
	ev.Send()
}

func (l *Log) tunnel(t *flow.Tunnel) {
	ev := l.log.WithLevel(warnIf(t.Status != 200 || t.Error != ""))
	if ev == nil {
		return
	}
	conn(ev, EventTunnel, t.Client, 0).
		Str("host", t.Host).Uint16("port", t.Port).Str("mode", t.Mode).Int("status", t.Status).
		Int64("bytes_up", t.BytesUp).Int64("bytes_down", t.BytesDown).
		Float64("duration_ms", ms(t.Duration))
	if t.Via != "" {
		ev.Str("via", t.Via)
	}
	if t.Mode == "bump" {
		ev.Str("sni", t.SNI).Str("tls_version", t.TLSVersion).Str("alpn", t.ALPN).Str("leaf", t.Leaf).Str("leaf_names", t.LeafNames)
		if t.LeafNote != "" {
			ev.Str("leaf_note", t.LeafNote)
		}
	}
	if t.Error != "" {
		ev.Str("error", t.Error)
	}
	ev.Send()
}

func (l *Log) deny(d *flow.Denial) {
	ev := l.log.Warn()
	if ev == nil {
		return
	}
	ev = conn(ev, EventDeny, d.Client, 0).
		Str("method", d.Method).Str("target", d.Target).Str("rule", d.Rule).
		Str("reason", d.Reason)
	if d.Hint != "" {
		ev.Str("hint", d.Hint)
	}
	ev.Int("status", d.Status).Send()
}

func (l *Log) fault(f *flow.Fault) {
	ev := l.log.Warn()
	if ev == nil {
		return
	}
	ev = conn(ev, EventFault, f.Client, 0).
		Str("fault", f.Fault).Str("spec", f.Spec).Str("from", f.From).Str("target", f.Target).Str("detail", f.Detail)
	if f.Message > 0 {
		ev = ev.Int("message", f.Message)
	}
	ev.Send()
}

func (l *Log) wsOpen(s *flow.WSSession) {
	ev := l.log.Info()
	if ev == nil {
		return
	}
	ev = conn(ev, EventWSOpen, s.Client, s.Tunnel).Str("url", s.URL).Str("path", s.Path).
		Str("subprotocol", s.Subprotocol).Str("extensions", s.Extensions)
	if s.AcceptMismatch {
		// The client will judge it; hopscope only says so.
		ev = ev.Bool("accept_mismatch", true)
	}
	ev.Send()
}

// intercept reports what happened at an HTTP breakpoint.
func (l *Log) intercept(i *flow.Intercept) {
	if ev := l.log.Info(); ev != nil {
		ev.Str("event", EventIntercept).Uint64("flow", uint64(i.Exchange)).Str("stage", i.Stage).
			Str("breakpoint", i.Breakpoint).Str("actor", i.Actor).Str("action", i.Action).Msg(i.Note)
	}
}

func (l *Log) wsMessage(m *flow.WSMessage) {
	if l.opts.WSLog == WSLogOff {
		return
	}
	ev := l.log.Info()
	if ev == nil {
		return
	}
	ev = conn(ev, EventWSMessage, m.Client, m.Tunnel).Str("from", m.From.String()).Str("type", m.Opcode.String()).
		Int64("len", m.Len).Int64("wire_len", m.WireLen).Int("fragments", m.Fragments).
		Bool("compressed", m.Compressed).Str("action", m.Action)
	if m.Truncated {
		ev = ev.Bool("truncated", true)
	}
	if m.Rule != "" {
		ev = ev.Str("rule", m.Rule)
	}
	if m.Note != "" {
		ev = ev.Str("note", m.Note)
	}
	if m.Actor != "" {
		ev = ev.Str("actor", m.Actor)
	}
	if m.Opcode == flow.OpClose {
		ev = ev.Uint16("code", m.CloseCode).Str("reason", m.CloseReason)
	}
	switch l.opts.WSLog {
	case WSLogPreview:
		ev = l.preview(ev, m, l.opts.Preview)
	case WSLogFull:
		ev = l.preview(ev, m, len(m.Payload))
	}
	ev.Send()
}

// preview adds the first n payload bytes: text as UTF-8-safe text (cut on
// a character boundary, invalid bytes replaced), binary as base64.
// Neither allocates in the common case: zerolog escapes bytes itself, and
// base64 is encoded into a scratch buffer the log keeps.
func (l *Log) preview(ev *zerolog.Event, m *flow.WSMessage, n int) *zerolog.Event {
	p := m.Payload
	if len(p) > n {
		p = p[:n]
	}
	if m.Opcode == flow.OpText || m.Opcode == flow.OpClose {
		// The message goes on after p when its length says so, or when the
		// copy the bus made is longer than the preview.
		more := int64(len(p)) < m.Len || len(m.Payload) > len(p)
		if m.Opcode == flow.OpClose && len(p) >= 2 {
			p = p[2:] // the reason; the code has a field of its own
		}
		for cut := 0; cut < utf8.UTFMax && len(p) > 0 && !utf8.Valid(p) && more; cut++ {
			p = p[:len(p)-1] // a character cut by the preview length
		}
		if utf8.Valid(p) {
			return ev.Bytes("preview", p)
		}
		return ev.Str("preview", strings.ToValidUTF8(string(p), "\uFFFD"))
	}
	size := base64.StdEncoding.EncodedLen(len(p))
	if cap(l.scratch) < size {
		l.scratch = make([]byte, size)
	}
	out := l.scratch[:size]
	base64.StdEncoding.Encode(out, p)
	return ev.Bytes("preview", out)
}

func (l *Log) wsClose(s *flow.WSSession) {
	ev := l.log.WithLevel(warnIf(!s.CloseHandshake))
	if ev == nil {
		return
	}
	ev = conn(ev, EventWSClose, s.Client, s.Tunnel).Str("url", s.URL).
		Uint16("code", s.Code).Str("reason", s.Reason).Str("from", s.ClosedBy)
	if s.Error != "" {
		ev = ev.Str("error", s.Error)
	}
	ev.Float64("duration_ms", ms(s.Duration)).
		Int64("client_messages", s.ClientMessages).Int64("client_bytes", s.ClientBytes).
		Int64("server_messages", s.ServerMessages).Int64("server_bytes", s.ServerBytes).Send()
}

func (l *Log) wsError(v *flow.WSViolation) {
	ev := l.log.Warn()
	if ev == nil {
		return
	}
	conn(ev, EventWSError, v.Client, v.Tunnel).Str("url", v.URL).Str("side", v.Side.String()).
		Str("violation", v.Violation).Uint16("code", v.Code).Int64("bytes_passed", v.BytesPassed).Send()
}
