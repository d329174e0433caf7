package store

import (
	"net"
	"strconv"
	"time"

	"github.com/hopscope/hopscope/flow"
)

// Type is what kind of flow a summary describes.
type Type string

// The flow types.
const (
	// TypeHTTP is a request and its answer (forwarded, or read inside a
	// tunnel; Summary.Bumped says when inside a bumped one).
	TypeHTTP Type = "http"
	// TypeTunnel is a CONNECT tunnel spliced blind or serving plaintext
	// HTTP.
	TypeTunnel Type = "tunnel"
	// TypeBumped is a CONNECT tunnel whose TLS hopscope opened.
	TypeBumped Type = "bumped"
	// TypeWebSocket is an exchange that upgraded, with its session.
	TypeWebSocket Type = "websocket"
	// TypeDenied is a request or tunnel the policy refused.
	TypeDenied Type = "denied"
	// TypeFault is a fault that acted on a flow the store does not know.
	TypeFault Type = "fault"
)

// Types lists every Type, for help texts and validation.
func Types() []Type {
	return []Type{TypeHTTP, TypeTunnel, TypeBumped, TypeWebSocket, TypeDenied, TypeFault}
}

// Summary is one line of the flow list.
type Summary struct {
	// ID is the flow's ID: the exchange's for HTTP and WebSocket flows
	// (Get also accepts the session's), the tunnel's for tunnels.
	ID flow.ID `json:"id"`
	// Seq numbers flows in the order the store first heard of them; List
	// pages by it.
	Seq uint64 `json:"seq"`
	// Rev grows with every change to the flow.
	Rev  uint64 `json:"rev"`
	Type Type   `json:"type"`
	// Open is set while the flow is in progress.
	Open   bool   `json:"open"`
	Client string `json:"client,omitempty"`
	Method string `json:"method,omitempty"`
	// URL is the full URL (ws:// or wss:// for WebSockets); host:port
	// for tunnels, the target for denials.
	URL  string `json:"url,omitempty"`
	Host string `json:"host,omitempty"`
	Path string `json:"path,omitempty"`
	// Status is the answer's status (the tunnel's, the denial's); 0 while
	// open.
	Status int `json:"status,omitempty"`
	// Size is the response body's length on the wire for HTTP, bytes both
	// ways for tunnels, payload bytes both ways for WebSockets; -1 when
	// unknown.
	Size     int64         `json:"size"`
	Start    time.Time     `json:"start"`
	Duration time.Duration `json:"duration_ns"`
	Error    string        `json:"error,omitempty"`
	// Tunnel is the tunnel an exchange rode in; Session the WebSocket it
	// upgraded to.
	Tunnel  flow.ID `json:"tunnel,omitempty"`
	Session flow.ID `json:"session,omitempty"`
	Bumped  bool    `json:"bumped,omitempty"`
	// Rule and Reason say why a denied flow was refused.
	Rule   string `json:"rule,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Faults counts the faults that acted on the flow.
	Faults int `json:"faults,omitempty"`
	// Violation is the first protocol violation of a session.
	Violation string `json:"violation,omitempty"`
	// Message counts, as seen (kept or not).
	Messages       int64 `json:"messages,omitempty"`
	ClientMessages int64 `json:"client_messages,omitempty"`
	ServerMessages int64 `json:"server_messages,omitempty"`
	Dropped        int64 `json:"dropped,omitempty"`
	Rewritten      int64 `json:"rewritten,omitempty"`
	Closed         int64 `json:"closed,omitempty"`
	// MessagesKept counts the messages still held; EvictedMessages and
	// EvictedBytes what the byte bound pushed out (oldest first).
	MessagesKept    int   `json:"messages_kept,omitempty"`
	EvictedMessages int64 `json:"evicted_messages,omitempty"`
	EvictedBytes    int64 `json:"evicted_bytes,omitempty"`
	// Truncated is set when a body or message payload is kept only in
	// part.
	Truncated bool `json:"truncated,omitempty"`
}

// Flow is one flow in full, as Get returns it. The records are shared
// with the store: read only.
type Flow struct {
	Summary
	// Exchange has bodies cut to the store's ItemBytes (Body.Truncated,
	// Body.Len and Body.SHA256 describe the whole).
	Exchange *flow.Exchange `json:"exchange,omitempty"`
	// TunnelRecord and SessionRecord are named apart from
	// Summary.Tunnel and Summary.Session, which are IDs.
	TunnelRecord  *flow.Tunnel    `json:"tunnel_record,omitempty"`
	Denial        *flow.Denial    `json:"denial,omitempty"`
	SessionRecord *flow.WSSession `json:"session_record,omitempty"`
	// FaultRecords holds the first faults that acted (at most 64);
	// Summary.Faults counts them all.
	FaultRecords []flow.Fault       `json:"fault_records,omitempty"`
	Violations   []flow.WSViolation `json:"violations,omitempty"`
	// Intercepts are what a person did at HTTP breakpoints (at most 64).
	Intercepts []flow.Intercept `json:"intercepts,omitempty"`
}

// Message is one kept WebSocket message or control frame.
type Message struct {
	// Flow is the flow (exchange) ID, Session the session's.
	Flow    flow.ID   `json:"flow"`
	Session flow.ID   `json:"session"`
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	// From is "client" or "server".
	From string `json:"from"`
	// Type is the opcode's name: text, binary, close, ping, pong.
	Type   string `json:"type"`
	Opcode int    `json:"opcode"`
	// Len is the payload's length after inflation (-1 unknown), WireLen
	// the bytes on the wire with frame headers, PayloadLen the payload on
	// the wire (compressed).
	Len        int64 `json:"len"`
	WireLen    int64 `json:"wire_len"`
	PayloadLen int64 `json:"payload_len"`
	Fragments  int   `json:"fragments"`
	Compressed bool  `json:"compressed,omitempty"`
	// Truncated: hopscope inspected only part of the message
	// (--ws-inspect-limit).
	Truncated bool `json:"truncated,omitempty"`
	// Action is pass, drop, close or rewrite; Rule decided; Note says why
	// a rule could not act or which fault acted.
	Action string `json:"action,omitempty"`
	Rule   string `json:"rule,omitempty"`
	Note   string `json:"note,omitempty"`
	// Actor says who decided: rule, fault, person (interception), timeout
	// (a paused message nobody acted on); "" when nothing acted.
	Actor       string `json:"actor,omitempty"`
	CloseCode   uint16 `json:"close_code,omitempty"`
	CloseReason string `json:"close_reason,omitempty"`
	// Payload is the start of the inflated payload, at most ItemBytes;
	// PayloadCut is set when it is not the whole; SHA256 is the whole
	// payload's digest when the store saw it whole but kept only part.
	Payload    []byte `json:"payload,omitempty"`
	PayloadCut bool   `json:"payload_cut,omitempty"`
	SHA256     string `json:"sha256,omitempty"`
	// Replacement is what was sent instead, for a rewrite.
	Replacement []byte `json:"replacement,omitempty"`

	stamp uint64
	cost  int64
}

func (m *Message) computeCost() int64 {
	return messageOverhead + int64(cap(m.Payload)+cap(m.Replacement)+len(m.Note)+len(m.Rule)+len(m.CloseReason)+len(m.SHA256))
}

// typeOf says what an entry is.
func (e *entry) typeOf() Type {
	switch {
	case e.den != nil:
		return TypeDenied
	case e.sess != nil || (e.ex != nil && e.ex.WebSocket != 0):
		return TypeWebSocket
	case e.ex != nil:
		return TypeHTTP
	case e.tun != nil && e.tun.Mode == "bump":
		return TypeBumped
	case e.tun != nil:
		return TypeTunnel
	}
	return TypeFault
}

// summary builds the entry's list line.
func (e *entry) summary() Summary {
	sm := Summary{
		ID: e.id, Seq: e.seq, Rev: e.rev, Type: e.typeOf(), Open: e.open,
		Start: e.start, Size: -1, Faults: e.faultCount,
		Messages: e.msgStats.total, ClientMessages: e.msgStats.client, ServerMessages: e.msgStats.server,
		Dropped: e.msgStats.dropped, Rewritten: e.msgStats.rewritten, Closed: e.msgStats.closed,
		MessagesKept: e.msgs.len(), EvictedMessages: e.evictedMsgs, EvictedBytes: e.evictedMsgBytes,
		Truncated: e.msgStats.truncated > 0,
	}
	if t := e.tun; t != nil {
		sm.Client = t.Client.Addr
		sm.Method = "CONNECT"
		sm.Host = t.Host
		sm.URL = net.JoinHostPort(t.Host, strconv.Itoa(int(t.Port)))
		sm.Status = t.Status
		sm.Duration = t.Duration
		sm.Error = t.Error
		sm.Bumped = t.Mode == "bump"
		if e.tunDone {
			sm.Size = t.BytesUp + t.BytesDown
		}
	}
	if ex := e.ex; ex != nil {
		sm.Client = ex.Client.Addr
		sm.Method = ex.Method
		sm.URL = ex.URL
		sm.Host, sm.Path = hostPath(ex.URL)
		sm.Status = ex.Status
		sm.Duration = ex.Duration
		sm.Error = ex.Error
		sm.Tunnel = ex.Tunnel
		sm.Session = ex.WebSocket
		sm.Bumped = ex.Bumped
		if e.exDone {
			sm.Size = ex.ResponseBody.Len
		}
		sm.Truncated = sm.Truncated || ex.RequestBody.Truncated || ex.ResponseBody.Truncated
	}
	if ss := e.sess; ss != nil {
		sm.Session = ss.ID
		if ss.URL != "" { // ws:// or wss://, as the page that opened it said
			sm.URL = ss.URL
			sm.Host, sm.Path = hostPath(ss.URL)
		}
		if sm.Method == "" {
			sm.Client = ss.Client.Addr
			sm.Method = "GET"
		}
		if sm.Tunnel == 0 {
			sm.Tunnel = ss.Tunnel
		}
		sm.Size = e.msgStats.bytes
		if e.sessDone {
			sm.Size = ss.ClientBytes + ss.ServerBytes
			if end := ss.Start.Add(ss.Duration); end.After(e.start) {
				sm.Duration = end.Sub(e.start)
			}
			if sm.Error == "" {
				sm.Error = ss.Error
			}
		}
	}
	if d := e.den; d != nil {
		sm.Rule, sm.Reason = d.Rule, d.Reason
		if sm.Method == "" {
			sm.Method = d.Method
		}
		if sm.URL == "" {
			sm.URL = d.Target
			sm.Host, sm.Path = hostPath(d.Target)
			if h, _, err := net.SplitHostPort(d.Target); err == nil {
				sm.Host, sm.Path = h, ""
			}
		}
		if sm.Status == 0 {
			sm.Status = d.Status
		}
		if sm.Client == "" {
			sm.Client = d.Client.Addr
		}
	}
	if len(e.violations) > 0 {
		sm.Violation = e.violations[0].Violation
	}
	if e.typeOf() == TypeFault && len(e.faults) > 0 {
		f := e.faults[0]
		sm.URL = f.Target
		sm.Host = f.Target
		if h, _, err := net.SplitHostPort(f.Target); err == nil {
			sm.Host = h
		}
		sm.Client = f.Client.Addr
		sm.Error = f.Fault + ": " + f.Detail
	}
	return sm
}

// detail builds the entry's full view.
func (e *entry) detail() Flow {
	return Flow{
		Summary:       e.summary(),
		Exchange:      e.ex,
		TunnelRecord:  e.tun,
		Denial:        e.den,
		SessionRecord: e.sess,
		FaultRecords:  append([]flow.Fault(nil), e.faults...),
		Violations:    append([]flow.WSViolation(nil), e.violations...),
		Intercepts:    append([]flow.Intercept(nil), e.intercepts...),
	}
}
