// Package flow holds the typed records hopscope publishes about the traffic
// it carries, and the bus that fans them out to observers. The proxy is the
// only publisher; the event log, the flow store, the web UI, metrics, HAR
// export and test harnesses are observers. Observers see records, never the
// relay's own state, so nothing outside the relay reads relay internals.
//
// A record is immutable once published: observers may keep it, share it
// between goroutines and read it at any time, but must not change it.
// Payload and body slices in particular are shared by every observer.
//
// Links between records go by ID: a WebSocket message names its session,
// a session the exchange that upgraded it, an exchange the tunnel it rode
// in. IDs are unique per proxy (per Bus) and never reused.
package flow

import (
	"net/http"
	"time"
)

// ID identifies one flow (an exchange, a tunnel or a WebSocket session)
// for the life of a proxy. 0 means "none".
type ID uint64

// Kind says what a Record reports.
type Kind uint8

// The kinds of record, in the order they happen to a flow.
const (
	// KindExchangeStart: a request's head has arrived (Record.Exchange has
	// the request side only). Every exchange that starts also ends.
	KindExchangeStart Kind = iota + 1
	// KindExchange: an exchange is complete, answered by the destination
	// or by hopscope (refusals included).
	KindExchange
	// KindTunnelOpen: a CONNECT tunnel is up (Record.Tunnel, without
	// byte counts).
	KindTunnelOpen
	// KindTunnel: a tunnel has ended, or could not be opened.
	KindTunnel
	// KindDenial: the policy refused a request or a tunnel.
	KindDenial
	// KindFault: a --fault (or a profile's failure) acted.
	KindFault
	// KindWSOpen: a WebSocket handshake succeeded (Record.Session).
	KindWSOpen
	// KindWSMessage: a message or control frame passed, or did not
	// (Record.Message).
	KindWSMessage
	// KindWSClose: a WebSocket ended (Record.Session, with its close).
	KindWSClose
	// KindWSViolation: a side broke the WebSocket protocol.
	KindWSViolation
	// KindIntercept: an HTTP exchange was paused at a breakpoint and
	// went on, changed, or was answered by hopscope (Record.Intercept).
	// WebSocket messages say the same in their own records.
	KindIntercept
)

var kindNames = [...]string{
	KindExchangeStart: "exchange_start",
	KindExchange:      "exchange",
	KindTunnelOpen:    "tunnel_open",
	KindTunnel:        "tunnel",
	KindDenial:        "denial",
	KindFault:         "fault",
	KindWSOpen:        "ws_open",
	KindWSMessage:     "ws_message",
	KindWSClose:       "ws_close",
	KindWSViolation:   "ws_violation",
	KindIntercept:     "intercept",
}

// String names the kind for logs and failure messages
// ("ws_message"), "unknown" for a value no constant has.
func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "unknown"
}

// Record is one report. Kind says which field is set: Exchange for the
// exchange kinds, Tunnel for the tunnel kinds, Denial, Fault, Session for
// KindWSOpen and KindWSClose, Message for KindWSMessage (by value, so that
// publishing a message allocates nothing), Violation, Intercept.
type Record struct {
	Kind      Kind
	Exchange  *Exchange
	Tunnel    *Tunnel
	Denial    *Denial
	Fault     *Fault
	Session   *WSSession
	Message   WSMessage
	Violation *WSViolation
	Intercept *Intercept
}

// Client identifies the client connection a flow arrived on.
type Client struct {
	// Conn numbers client connections; every flow on one connection has
	// the same Conn.
	Conn uint64
	// Addr is the client's address, host:port.
	Addr string
}

// Body is what an observer may see of a request or response body: its
// first bytes, up to the bus's body cap, and facts about the whole.
type Body struct {
	// Data holds the first bytes as they crossed the wire (still
	// content-encoded). nil when no observer asked for bodies.
	Data []byte
	// Len counts the body bytes that crossed the wire: the whole body,
	// unless Exchange.Error says the exchange was cut short.
	Len int64
	// Truncated is set when Data holds less than the bytes that crossed.
	Truncated bool
	// SHA256 is the hex digest of the whole body, "" when bodies were not
	// captured or the body did not end.
	SHA256 string
}

// Exchange is one HTTP request and its answer.
type Exchange struct {
	ID     ID
	Client Client
	// Tunnel is the tunnel an inner request came through (bumped or
	// plaintext), 0 for requests made to the proxy directly.
	Tunnel ID
	// Bumped is set for requests read inside a bumped TLS tunnel.
	Bumped bool
	Method string
	// URL is the full URL, https:// for requests inside a bumped tunnel.
	URL   string
	Proto string
	// RequestHeader is the request's header as the client sent it,
	// hop-by-hop fields included (see HopByHop).
	RequestHeader http.Header
	RequestBody   Body
	// Status is the answer's status code; 0 while the exchange is open.
	Status int
	// ResponseHeader is the answer's header as it reached the client.
	ResponseHeader http.Header
	ResponseBody   Body
	// Start is when the request head had been read; FirstByte how long
	// after Start the answer's head was ready; Duration how long the whole
	// exchange took.
	Start     time.Time
	FirstByte time.Duration
	Duration  time.Duration
	// AnsweredBy is "destination" or "proxy" (a refusal, an error page,
	// the CA or info page).
	AnsweredBy string
	// Error says what went wrong, when hopscope answered for the
	// destination or the answer was cut short.
	Error string
	// WebSocket is the session this exchange upgraded to, if any.
	WebSocket ID
}

// Tunnel is one CONNECT tunnel.
type Tunnel struct {
	ID     ID
	Client Client
	Host   string
	Port   uint16
	// Mode is "splice" (bytes copied blind), "bump" (TLS opened with the
	// local CA) or "http" (plaintext HTTP served inside).
	Mode   string
	Status int
	// BytesUp counts client-to-destination bytes, BytesDown the others.
	BytesUp, BytesDown int64
	Start              time.Time
	Duration           time.Duration
	// Dial is how long reaching the destination took (connect, or the
	// parent proxy's CONNECT), failed attempts included.
	Dial  time.Duration
	Error string
	// Via is how the client asked for the tunnel: "" for an HTTP
	// CONNECT, "socks5" for a SOCKS5 CONNECT.
	Via string
	// ErrorType is the RFC 9209 Proxy-Status error type of a tunnel that
	// could not be opened ("connection_refused", "dns_error", ...).
	ErrorType string
	// Set for bumped tunnels.
	SNI, TLSVersion, ALPN, Leaf string
	// LeafNames is "upstream" when the leaf carries the names of the
	// destination's certificate, "requested" when it was minted from the
	// requested name alone; LeafNote then says why.
	LeafNames, LeafNote string
}

// Denial is a policy refusal.
type Denial struct {
	Client Client
	// Flow is the exchange or tunnel that was refused. A refused CONNECT
	// has no other record: its ID is the denial's own.
	Flow   ID
	Method string
	Target string
	Rule   string
	Reason string
	// Hint says how to allow what was refused, as the refusal's answer
	// says it ("To allow it, start hopscope with --connect-ports
	// 443,8443."); empty when no flag or rule would.
	Hint   string
	Status int
	Time   time.Time
}

// Fault is a --fault (or a profile's failure) that acted.
type Fault struct {
	Client Client
	// Flow is the tunnel or WebSocket session it acted on, when known.
	Flow   ID
	Fault  string
	Spec   string
	From   string
	Target string
	Detail string
	// Message is the message number, for message faults; 0 otherwise.
	Message int
	Time    time.Time
}

// WSSession is one relayed WebSocket. KindWSOpen carries it as it opened;
// KindWSClose carries a new value with the close fields and counts set.
type WSSession struct {
	ID     ID
	Client Client
	// Exchange is the handshake exchange that upgraded to this session.
	Exchange ID
	// Tunnel is the tunnel the session rode in, 0 for ws:// in absolute
	// form.
	Tunnel ID
	URL    string
	// Path is "forward", "tunnel" or "bump".
	Path        string
	Subprotocol string
	Extensions  string
	// AcceptMismatch is set when the server's Sec-WebSocket-Accept was
	// wrong (the client decides what to do with that).
	AcceptMismatch bool
	Start          time.Time

	// Set on close. CloseHandshake is set when a close frame was seen;
	// without one the TCP connection just ended and Code is 1006.
	CloseHandshake bool
	Code           uint16
	Reason         string
	ClosedBy       string // "client", "server", "proxy"; for 1006, the side whose TCP connection ended first
	Duration       time.Duration
	Error          string
	// Counts per direction.
	ClientMessages, ClientBytes int64
	ServerMessages, ServerBytes int64
}

// Side names the sender of a WebSocket message.
type Side uint8

// The two sides of a WebSocket.
const (
	FromClient Side = iota
	FromServer
)

// String is "client" or "server", as events name a side.
func (s Side) String() string {
	if s == FromClient {
		return "client"
	}
	return "server"
}

// Opcode is a WebSocket frame opcode (RFC 6455 §5.2).
type Opcode uint8

// The opcodes a message can have.
const (
	OpText   Opcode = 0x1
	OpBinary Opcode = 0x2
	OpClose  Opcode = 0x8
	OpPing   Opcode = 0x9
	OpPong   Opcode = 0xa
)

// String names the opcode as events do ("text", "ping"), "unknown"
// for a reserved one.
func (o Opcode) String() string {
	switch o {
	case OpText:
		return "text"
	case OpBinary:
		return "binary"
	case OpClose:
		return "close"
	case OpPing:
		return "ping"
	case OpPong:
		return "pong"
	}
	return "unknown"
}

// Control reports whether o is a control frame (close, ping, pong).
func (o Opcode) Control() bool { return o >= 0x8 }

// WSMessage is one WebSocket data message (all its fragments) or control
// frame, and what hopscope did with it.
type WSMessage struct {
	Session ID
	// Client and Tunnel repeat the session's, so that an observer that
	// missed the session's opening still knows where a message belongs.
	Client Client
	Tunnel ID
	// Seq numbers the session's messages from 1, both directions
	// together, in the order hopscope saw them complete.
	Seq uint64
	// Time is when the read that completed the message returned.
	Time   time.Time
	From   Side
	Opcode Opcode
	// Len is the payload length after permessage-deflate inflation, -1
	// when it could not be inflated.
	Len int64
	// WireLen counts the message's bytes on the wire, frame headers
	// included; PayloadLen its payload bytes on the wire (compressed).
	WireLen, PayloadLen int64
	Fragments           int
	Compressed          bool
	// Truncated is set when hopscope could inspect only part of the
	// message (--ws-inspect-limit).
	Truncated bool
	// Action is "pass", "drop", "close" or "rewrite".
	Action string
	// Rule is the name of the rule that decided, Note why a rule could
	// not act or which fault acted.
	Rule, Note string
	// Actor says who decided the action: "rule", "fault", "person" (an
	// interceptor's user), "timeout" (a paused message forwarded when
	// nobody acted); "" when nothing acted.
	Actor string
	// CloseCode and CloseReason are set for close frames.
	CloseCode   uint16
	CloseReason string
	// Payload is the start of the inflated payload, at most the bus's
	// payload cap, nil when no observer asked for payloads. Shared by all
	// observers: read only.
	Payload []byte
	// Replacement is what was sent instead, for a rewrite.
	Replacement []byte
}

// WSViolation is a breach of RFC 6455 or RFC 7692 by one side.
type WSViolation struct {
	Session ID
	Client  Client
	// Tunnel is the session's tunnel, 0 for ws:// in absolute form.
	Tunnel ID
	URL    string
	// Side broke the protocol; Code is what it was sent.
	Side      Side
	Violation string
	Code      uint16
	// BytesPassed counts the bytes of the offending message that had been
	// passed on before the violation was found.
	BytesPassed int64
	Time        time.Time
}

// Intercept is what happened to an HTTP exchange paused at a breakpoint.
type Intercept struct {
	// Exchange is the exchange that was paused.
	Exchange ID
	// Stage is "request" (before it went upstream) or "response" (before
	// it went to the client).
	Stage string
	// Breakpoint is the name of the breakpoint that paused it.
	Breakpoint string
	// Actor is "person" or "timeout".
	Actor string
	// Action is "forward" (unchanged), "edit" or "respond" (hopscope
	// answered instead of the destination, or replaced its answer).
	Action string
	// Note says what changed.
	Note string
	// Before and After are the head and the start of the body as they were
	// and as they went on, for edit and respond.
	Before, After *HTTPMessage
	Time          time.Time
}

// HTTPMessage is a request's or a response's head and body, as an
// Intercept shows it.
type HTTPMessage struct {
	Status int // 0 for a request
	Header http.Header
	Body   []byte
}
