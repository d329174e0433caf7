// Package har writes the flow store as HAR 1.2 (HTTP Archive) and reads HAR
// files back into a store.
//
// WebSocket sessions are written the way Chrome DevTools writes them, so
// tools that read Chrome's HAR files read hopscope's: the upgrade request is
// an entry with "_resourceType": "websocket" and a "_webSocketMessages"
// array of {"type": "send"|"receive", "time": <epoch seconds>, "opcode": N,
// "data": "..."}, text as is and every other opcode base64. hopscope's own
// facts are under "_hopscope" keys, which HAR allows for custom fields: on
// an entry (flow type, rule actions, faults, denial, the tunnel it rode in
// and its TLS facts, what was truncated or evicted), on a message (seq,
// sizes, compression, action, rule, close code), and on the log (tunnels,
// refusals and faults that were not HTTP exchanges, and the store's
// figures).
//
// Bodies and payloads are what the store kept: at most its item size. A
// cut one says so ("_hopscope": {"truncated": true}, with the full length
// and SHA-256).
package har

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// HAR is a whole file.
type HAR struct {
	Log Log `json:"log"`
}

// Log is HAR's log object.
type Log struct {
	Version string    `json:"version"`
	Creator Creator   `json:"creator"`
	Pages   []Page    `json:"pages"`
	Entries []Entry   `json:"entries"`
	Comment string    `json:"comment,omitempty"`
	X       *LogExtra `json:"_hopscope,omitempty"`
}

// Creator names the program that wrote the file.
type Creator struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Page is a HAR page; hopscope writes none but reads them.
type Page struct {
	StartedDateTime string          `json:"startedDateTime"`
	ID              string          `json:"id"`
	Title           string          `json:"title"`
	PageTimings     json.RawMessage `json:"pageTimings"`
}

// Entry is one HTTP exchange.
type Entry struct {
	Pageref         string   `json:"pageref,omitempty"`
	StartedDateTime string   `json:"startedDateTime"`
	Time            float64  `json:"time"`
	Request         Request  `json:"request"`
	Response        Response `json:"response"`
	Cache           struct{} `json:"cache"`
	Timings         Timings  `json:"timings"`
	ServerIPAddress string   `json:"serverIPAddress,omitempty"`
	Connection      string   `json:"connection,omitempty"`
	Comment         string   `json:"comment,omitempty"`
	ResourceType    string   `json:"_resourceType,omitempty"`
	// WebSocket is set for WebSocket entries, even when empty (Chrome
	// writes [] then).
	WebSocket *[]Message `json:"_webSocketMessages,omitempty"`
	X         *Extra     `json:"_hopscope,omitempty"`
}

// NameValue is a header, cookie or query parameter.
type NameValue struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Request is an entry's request.
type Request struct {
	Method      string      `json:"method"`
	URL         string      `json:"url"`
	HTTPVersion string      `json:"httpVersion"`
	Cookies     []NameValue `json:"cookies"`
	Headers     []NameValue `json:"headers"`
	QueryString []NameValue `json:"queryString"`
	PostData    *PostData   `json:"postData,omitempty"`
	HeadersSize int64       `json:"headersSize"`
	BodySize    int64       `json:"bodySize"`
}

// PostData is a request body. HAR 1.2 has no encoding for it; a body that
// is not UTF-8 is written base64 with "_encoding": "base64", as some tools
// do.
type PostData struct {
	MimeType string `json:"mimeType"`
	Text     string `json:"text"`
	Encoding string `json:"_encoding,omitempty"`
}

// Response is an entry's response.
type Response struct {
	Status      int         `json:"status"`
	StatusText  string      `json:"statusText"`
	HTTPVersion string      `json:"httpVersion"`
	Cookies     []NameValue `json:"cookies"`
	Headers     []NameValue `json:"headers"`
	Content     Content     `json:"content"`
	RedirectURL string      `json:"redirectURL"`
	HeadersSize int64       `json:"headersSize"`
	BodySize    int64       `json:"bodySize"`
	Error       string      `json:"_error,omitempty"`
}

// Content is a response body, decoded from its content-encoding when
// hopscope could (gzip, deflate, br, zstd, and the whole body was kept);
// otherwise Text is the bytes on the wire, base64, and Extra says which
// encoding is still applied.
type Content struct {
	Size        int64  `json:"size"`
	Compression int64  `json:"compression,omitempty"`
	MimeType    string `json:"mimeType"`
	Text        string `json:"text,omitempty"`
	Encoding    string `json:"encoding,omitempty"`
}

// Timings are an entry's phases in milliseconds; -1 means not known.
type Timings struct {
	Blocked float64 `json:"blocked"`
	DNS     float64 `json:"dns"`
	Connect float64 `json:"connect"`
	SSL     float64 `json:"ssl"`
	Send    float64 `json:"send"`
	Wait    float64 `json:"wait"`
	Receive float64 `json:"receive"`
}

// Message is one WebSocket message as Chrome DevTools writes it, with
// hopscope's facts beside.
type Message struct {
	// Type is "send" (client to server) or "receive".
	Type string `json:"type"`
	// Time is when the message passed, in seconds since the Unix epoch.
	Time EpochSeconds `json:"time"`
	// Opcode is the WebSocket opcode: 1 text, 2 binary, 8 close, 9 ping,
	// 10 pong.
	Opcode int `json:"opcode"`
	// Data is the payload (after inflation): text as is, anything else
	// base64.
	Data string        `json:"data"`
	X    *MessageExtra `json:"_hopscope,omitempty"`
}

// EpochSeconds is a time as seconds since the Unix epoch with a fraction,
// as Chrome writes WebSocket message times. Reading also accepts an RFC
// 3339 string, as some tools write.
type EpochSeconds float64

// UnmarshalJSON reads a number or an RFC 3339 string.
func (e *EpochSeconds) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return fmt.Errorf("message time %q: %w", s, err)
		}
		*e = EpochSeconds(float64(t.UnixNano()) / 1e9)
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("message time %s: want seconds since the epoch", b)
	}
	*e = EpochSeconds(f)
	return nil
}

// Time converts to a time.Time, to the microsecond (what a float64 of
// epoch seconds holds).
func (e EpochSeconds) Time() time.Time {
	us := int64(float64(e)*1e6 + 0.5)
	return time.UnixMicro(us).UTC()
}

func epoch(t time.Time) EpochSeconds {
	return EpochSeconds(float64(t.UnixMicro()) / 1e6)
}

// Extra is hopscope's part of an entry.
type Extra struct {
	// ID is the flow's ID in the store that wrote the file.
	ID uint64 `json:"id"`
	// Type is the store's flow type: http, websocket, denied.
	Type string `json:"type"`
	// Client is the client's address.
	Client string `json:"client,omitempty"`
	// AnsweredBy is "destination" or "proxy".
	AnsweredBy string `json:"answered_by,omitempty"`
	Error      string `json:"error,omitempty"`
	Bumped     bool   `json:"bumped,omitempty"`
	// Tunnel is the CONNECT tunnel the exchange rode in.
	Tunnel *TunnelInfo `json:"tunnel,omitempty"`
	// RequestBody and ResponseBody describe bodies kept in part.
	RequestBody  *BodyInfo `json:"request_body,omitempty"`
	ResponseBody *BodyInfo `json:"response_body,omitempty"`
	// ContentEncoding is set when response.content.text still has this
	// encoding applied (hopscope could not or did not decode it).
	ContentEncoding string `json:"content_encoding,omitempty"`
	// FirstByteMS is when the answer's head was ready, from the start.
	FirstByteMS float64         `json:"first_byte_ms,omitempty"`
	Denial      *DenialInfo     `json:"denial,omitempty"`
	Faults      []FaultInfo     `json:"faults,omitempty"`
	Intercepts  []InterceptInfo `json:"intercepts,omitempty"`
	FaultCount  int             `json:"fault_count,omitempty"`
	Session     *SessionInfo    `json:"session,omitempty"`
	Violations  []Violation     `json:"violations,omitempty"`
	Messages    *MessageStats   `json:"messages,omitempty"`
}

// BodyInfo describes a body the store kept only in part.
type BodyInfo struct {
	Truncated bool   `json:"truncated"`
	Len       int64  `json:"len"`
	Kept      int    `json:"kept"`
	SHA256    string `json:"sha256,omitempty"`
}

// TunnelInfo is a CONNECT tunnel.
type TunnelInfo struct {
	ID     uint64 `json:"id"`
	Client string `json:"client,omitempty"`
	Host   string `json:"host"`
	Port   uint16 `json:"port"`
	// Mode is splice, bump or http.
	Mode       string  `json:"mode"`
	Status     int     `json:"status,omitempty"`
	BytesUp    int64   `json:"bytes_up"`
	BytesDown  int64   `json:"bytes_down"`
	Start      string  `json:"start"`
	DurationMS float64 `json:"duration_ms"`
	Open       bool    `json:"open,omitempty"`
	Error      string  `json:"error,omitempty"`
	SNI        string  `json:"sni,omitempty"`
	TLSVersion string  `json:"tls_version,omitempty"`
	ALPN       string  `json:"alpn,omitempty"`
	Leaf       string  `json:"leaf,omitempty"`
	// Denial and Faults are what refused or acted on the tunnel.
	Denial *DenialInfo `json:"denial,omitempty"`
	Faults []FaultInfo `json:"faults,omitempty"`
}

// DenialInfo is a policy refusal.
type DenialInfo struct {
	Method string `json:"method"`
	Target string `json:"target"`
	Rule   string `json:"rule"`
	Reason string `json:"reason"`
	// Hint says how to allow it, as the refusal's answer said.
	Hint   string `json:"hint,omitempty"`
	Status int    `json:"status"`
	Time   string `json:"time,omitempty"`
}

// InterceptInfo is what happened at an HTTP breakpoint.
type InterceptInfo struct {
	Stage      string `json:"stage"`
	Breakpoint string `json:"breakpoint,omitempty"`
	Actor      string `json:"actor,omitempty"`
	Action     string `json:"action"`
	Note       string `json:"note,omitempty"`
	Time       string `json:"time,omitempty"`
	// Before and After are the head and body start as they were and as
	// they went on, for edit and respond.
	Before *InterceptMessage `json:"before,omitempty"`
	After  *InterceptMessage `json:"after,omitempty"`
}

// InterceptMessage is a request's or answer's head and body start.
type InterceptMessage struct {
	Status   int         `json:"status,omitempty"`
	Headers  []NameValue `json:"headers"`
	Text     string      `json:"text,omitempty"`
	Encoding string      `json:"encoding,omitempty"`
}

// FaultInfo is a fault that acted.
type FaultInfo struct {
	Fault   string `json:"fault"`
	Spec    string `json:"spec,omitempty"`
	From    string `json:"from,omitempty"`
	Target  string `json:"target,omitempty"`
	Detail  string `json:"detail,omitempty"`
	Message int    `json:"message,omitempty"`
	Time    string `json:"time,omitempty"`
}

// SessionInfo is a WebSocket session beyond its handshake.
type SessionInfo struct {
	ID uint64 `json:"id"`
	// Path is forward, tunnel or bump.
	Path           string `json:"path,omitempty"`
	Subprotocol    string `json:"subprotocol,omitempty"`
	Extensions     string `json:"extensions,omitempty"`
	AcceptMismatch bool   `json:"accept_mismatch,omitempty"`
	Start          string `json:"start"`
	Open           bool   `json:"open,omitempty"`
	// CloseHandshake is set when a close frame was seen; without one
	// the TCP connection just ended (code 1006).
	CloseHandshake bool    `json:"close_handshake,omitempty"`
	Code           uint16  `json:"code,omitempty"`
	Reason         string  `json:"reason,omitempty"`
	ClosedBy       string  `json:"closed_by,omitempty"`
	DurationMS     float64 `json:"duration_ms,omitempty"`
	Error          string  `json:"error,omitempty"`
	ClientMessages int64   `json:"client_messages"`
	ClientBytes    int64   `json:"client_bytes"`
	ServerMessages int64   `json:"server_messages"`
	ServerBytes    int64   `json:"server_bytes"`
}

// Violation is a WebSocket protocol violation.
type Violation struct {
	Side        string `json:"side"`
	Violation   string `json:"violation"`
	Code        uint16 `json:"code"`
	BytesPassed int64  `json:"bytes_passed,omitempty"`
	Time        string `json:"time,omitempty"`
}

// MessageStats counts a session's messages, kept or not.
type MessageStats struct {
	Seen      int64 `json:"seen"`
	Kept      int   `json:"kept"`
	Evicted   int64 `json:"evicted,omitempty"`
	Dropped   int64 `json:"dropped,omitempty"`
	Rewritten int64 `json:"rewritten,omitempty"`
	Closed    int64 `json:"closed,omitempty"`
}

// MessageExtra is hopscope's part of a WebSocket message.
type MessageExtra struct {
	Seq        uint64 `json:"seq"`
	Len        int64  `json:"len"`
	WireLen    int64  `json:"wire_len,omitempty"`
	PayloadLen int64  `json:"payload_len,omitempty"`
	Fragments  int    `json:"fragments,omitempty"`
	Compressed bool   `json:"compressed,omitempty"`
	// Truncated: the proxy inspected only part (--ws-inspect-limit);
	// PayloadCut: data holds only the start; SHA256 is the whole's.
	Truncated  bool   `json:"truncated,omitempty"`
	PayloadCut bool   `json:"payload_cut,omitempty"`
	SHA256     string `json:"sha256,omitempty"`
	Action     string `json:"action,omitempty"`
	Rule       string `json:"rule,omitempty"`
	Note       string `json:"note,omitempty"`
	// Actor says who decided the action: rule, fault, person, timeout.
	Actor       string `json:"actor,omitempty"`
	CloseCode   uint16 `json:"close_code,omitempty"`
	CloseReason string `json:"close_reason,omitempty"`
	// Replacement is what was sent instead, for a rewrite, encoded like
	// data.
	Replacement string `json:"replacement,omitempty"`
}

// LogExtra is hopscope's part of the log: flows that are not HTTP
// exchanges, and the store's figures.
type LogExtra struct {
	Tunnels []TunnelInfo `json:"tunnels,omitempty"`
	// Denials and Faults that belong to no exchange (a refused CONNECT,
	// a fault on a spliced tunnel).
	Denials []DenialInfo `json:"denials,omitempty"`
	Faults  []FaultInfo  `json:"faults,omitempty"`
	Store   *StoreInfo   `json:"store,omitempty"`
}

// StoreInfo says what the store had let go before the export.
type StoreInfo struct {
	Flows           int    `json:"flows"`
	Messages        int    `json:"messages"`
	ItemBytes       int    `json:"item_bytes"`
	EvictedFlows    uint64 `json:"evicted_flows"`
	EvictedMessages uint64 `json:"evicted_messages"`
}
