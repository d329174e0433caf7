package proxy

import (
	"context"
	"encoding/base64"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"github.com/rs/zerolog"

	"github.com/hopscope/hopscope/policy"
	"github.com/hopscope/hopscope/proxy/wsframe"
)

// Event names, the "event" field of every log line. They are a public
// interface: README.md documents their fields.
const (
	EventListen = "listen"
	EventHTTP   = "http"
	EventTunnel = "tunnel"
	EventDeny   = "deny"
)

// connInfo identifies the client connection an exchange arrived on.
type connInfo struct {
	id     uint64
	client string
	// tunnel is the conn of the CONNECT tunnel an inner request came
	// through (bumped or plaintext), 0 for requests made to the proxy.
	tunnel uint64
}

type connInfoKey struct{}

func connInfoFrom(ctx context.Context) connInfo {
	info, _ := ctx.Value(connInfoKey{}).(connInfo)
	return info
}

// events writes the structured event log. zerolog returns a nil event for a
// disabled level, so nothing is formatted when the level is off.
type events struct {
	log zerolog.Logger
}

func (e events) listen(addr string, summary map[string]string, insecureUpstream bool, parent, caFingerprint string) {
	ev := e.log.Info()
	if ev == nil {
		return
	}
	dict := zerolog.Dict()
	for k, v := range summary {
		dict.Str(k, v)
	}
	ev.Str("event", EventListen).Str("addr", addr).Dict("policy", dict).
		Bool("insecure_upstream", insecureUpstream)
	if parent != "" {
		ev.Str("upstream_proxy", parent)
	}
	if caFingerprint != "" {
		ev.Str("ca_fingerprint", caFingerprint)
	}
	ev.Msg("proxy listening")
}

type httpRecord struct {
	conn      connInfo
	method    string
	url       string
	proto     string
	status    int
	reqBytes  int64
	respBytes int64
	duration  time.Duration
	err       error
}

func (e events) http(r httpRecord) {
	ev := e.log.Info()
	if r.status >= 500 {
		ev = e.log.Warn()
	}
	if ev == nil {
		return
	}
	ev.Str("event", EventHTTP).Uint64("conn", r.conn.id).Str("client", r.conn.client).
		Str("method", r.method).Str("url", r.url).Str("proto", r.proto).
		Int("status", r.status).Int64("req_bytes", r.reqBytes).Int64("resp_bytes", r.respBytes).
		Float64("duration_ms", ms(r.duration))
	if r.conn.tunnel != 0 {
		ev.Uint64("tunnel", r.conn.tunnel)
	}
	if r.err != nil {
		ev.AnErr("error", r.err)
	}
	ev.Send()
}

type tunnelRecord struct {
	conn      connInfo
	host      string
	port      uint16
	mode      string
	status    int
	bytesUp   int64
	bytesDown int64
	duration  time.Duration
	err       error
	// Set for bumped tunnels.
	sni, tlsVersion, alpn, leaf string
}

func (e events) tunnel(r tunnelRecord) {
	ev := e.log.Info()
	if r.status != http.StatusOK || r.err != nil {
		ev = e.log.Warn()
	}
	if ev == nil {
		return
	}
	ev.Str("event", EventTunnel).Uint64("conn", r.conn.id).Str("client", r.conn.client).
		Str("host", r.host).Uint16("port", r.port).Str("mode", r.mode).Int("status", r.status).
		Int64("bytes_up", r.bytesUp).Int64("bytes_down", r.bytesDown).
		Float64("duration_ms", ms(r.duration))
	if r.mode == modeBump {
		ev.Str("sni", r.sni).Str("tls_version", r.tlsVersion).Str("alpn", r.alpn).Str("leaf", r.leaf)
	}
	if r.err != nil {
		ev.AnErr("error", r.err)
	}
	ev.Send()
}

func (e events) deny(info connInfo, method, target string, pe *proxyError) {
	ev := e.log.Warn()
	if ev == nil {
		return
	}
	reason := pe.Reason
	if reason == "" {
		reason = pe.Message
	}
	ev.Str("event", EventDeny).Uint64("conn", info.id).Str("client", info.client).
		Str("method", method).Str("target", target).Str("rule", pe.Rule).
		Str("reason", reason).Int("status", pe.Status).Send()
}

// ms renders a duration as fractional milliseconds, precise to a microsecond.
func ms(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000
}

// WebSocket event names.
const (
	EventWSOpen    = "ws_open"
	EventWSMessage = "ws_message"
	EventWSClose   = "ws_close"
	EventWSError   = "ws_error"
)

// wsEvent starts an event about a WebSocket session.
func (e events) wsEvent(ev *zerolog.Event, name string, sess *wsSession) *zerolog.Event {
	ev = ev.Str("event", name).Uint64("conn", sess.info.id).Str("client", sess.info.client)
	if sess.info.tunnel != 0 {
		ev = ev.Uint64("tunnel", sess.info.tunnel)
	}
	return ev
}

func (e events) wsOpen(sess *wsSession, subprotocol, extensions string, acceptOK bool) {
	ev := e.log.Info()
	if ev == nil {
		return
	}
	ev = e.wsEvent(ev, EventWSOpen, sess).Str("url", sess.url).Str("path", sess.path).
		Str("subprotocol", subprotocol).Str("extensions", extensions)
	if !acceptOK {
		// The client will judge it; hopscope only says so.
		ev = ev.Bool("accept_mismatch", true)
	}
	ev.Send()
}

func (e events) wsMessage(sess *wsSession, from string, m *wsframe.Message, action, rule, note string, scratch *[]byte) {
	mode := sess.srv.opts.WebSocket.Log
	if mode == WSLogOff {
		return
	}
	ev := e.log.Info()
	if ev == nil {
		return
	}
	ev = e.wsEvent(ev, EventWSMessage, sess).Str("from", from).Str("type", wsframe.OpName(m.Op)).
		Int64("len", m.Len).Int64("wire_len", m.WireLen).Int("fragments", m.Fragments).
		Bool("compressed", m.Compressed).Str("action", action)
	if m.Truncated {
		ev = ev.Bool("truncated", true)
	}
	if rule != "" {
		ev = ev.Str("rule", rule)
	}
	if note != "" {
		ev = ev.Str("note", note)
	}
	if m.Op == ws.OpClose {
		ev = ev.Uint16("code", uint16(m.CloseCode)).Str("reason", m.CloseReason)
	}
	switch mode {
	case WSLogPreview:
		ev = previewField(ev, m, sess.srv.opts.WebSocket.Preview, scratch)
	case WSLogFull:
		ev = previewField(ev, m, len(m.Payload), scratch)
	}
	ev.Send()
}

// previewField adds the first n payload bytes: text as UTF-8-safe text
// (cut on a character boundary, invalid bytes replaced), binary as base64.
// Neither allocates in the common case: zerolog escapes bytes itself, and
// base64 is encoded into scratch, which the caller keeps.
func previewField(ev *zerolog.Event, m *wsframe.Message, n int, scratch *[]byte) *zerolog.Event {
	p := m.Payload
	if len(p) > n {
		p = p[:n]
	}
	if m.Op == ws.OpText || m.Op == ws.OpClose {
		if m.Op == ws.OpClose && len(p) >= 2 {
			p = p[2:] // the reason; the code has a field of its own
		}
		for cut := 0; cut < utf8.UTFMax && len(p) > 0 && !utf8.Valid(p) && len(m.Payload) > len(p); cut++ {
			p = p[:len(p)-1] // a character cut by the preview length
		}
		if utf8.Valid(p) {
			return ev.Bytes("preview", p)
		}
		return ev.Str("preview", strings.ToValidUTF8(string(p), "\uFFFD"))
	}
	size := base64.StdEncoding.EncodedLen(len(p))
	if cap(*scratch) < size {
		*scratch = make([]byte, size)
	}
	out := (*scratch)[:size]
	base64.StdEncoding.Encode(out, p)
	return ev.Bytes("preview", out)
}

func (e events) wsClose(sess *wsSession, fromClient, fromServer *wsDirection) {
	ev := e.log.Info()
	sess.mu.Lock()
	c := sess.close
	sess.mu.Unlock()
	if !c.seen {
		ev = e.log.Warn()
	}
	if ev == nil {
		return
	}
	ev = e.wsEvent(ev, EventWSClose, sess).Str("url", sess.url)
	if c.seen {
		ev = ev.Uint16("code", uint16(c.code)).Str("reason", c.reason).Str("from", c.from)
	} else {
		// No close handshake: the TCP connection just ended (1006).
		ev = ev.Uint16("code", uint16(ws.StatusAbnormalClosure)).Str("reason", "").Str("from", c.endedBy)
		if c.endErr != nil {
			ev = ev.AnErr("error", c.endErr)
		}
	}
	ev.Float64("duration_ms", ms(time.Since(sess.start))).
		Int64("client_messages", fromClient.messages).Int64("client_bytes", fromClient.wireBytes).
		Int64("server_messages", fromServer.messages).Int64("server_bytes", fromServer.wireBytes).Send()
}

// passed counts the wire bytes of the offending message that had gone to
// the other side before the violation was found.
func (e events) wsError(sess *wsSession, side string, v *wsframe.Violation, passed int64) {
	ev := e.log.Warn()
	if ev == nil {
		return
	}
	e.wsEvent(ev, EventWSError, sess).Str("url", sess.url).Str("side", side).
		Str("violation", v.Reason).Uint16("code", uint16(v.Code)).Int64("bytes_passed", passed).Send()
}

// EventFault is written whenever a --fault (or a profile's failure, such as
// idle-timeout) acts on a connection.
const EventFault = "fault"

func (e events) fault(info connInfo, f policy.Fault, from, target, detail string, message int) {
	ev := e.log.Warn()
	if ev == nil {
		return
	}
	ev = ev.Str("event", EventFault).Uint64("conn", info.id).Str("client", info.client).
		Str("fault", f.Kind).Str("spec", f.Spec).Str("from", from).Str("target", target).Str("detail", detail)
	if message > 0 {
		ev = ev.Int("message", message)
	}
	ev.Send()
}

// profileFault reports a failure a profile causes (idle-timeout, web-filter).
func (e events) profileFault(info connInfo, kind, target, detail string) {
	e.fault(info, policy.Fault{Kind: kind, Spec: kind}, "", target, detail, 0)
}
