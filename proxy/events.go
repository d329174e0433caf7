package proxy

import (
	"context"
	"net/http"
	"time"

	"github.com/rs/zerolog"
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
	if r.status != http.StatusOK {
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
