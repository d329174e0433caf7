package ui

import (
	"io"
	"time"

	"github.com/hopscope/hopscope/flow"
)

// Source is what the UI reads: the flow store. The UI never sees the
// proxy; everything it shows comes through here.
type Source interface {
	// Flows returns the flows a query matches (the store's filter
	// language; "" matches all), oldest first, at most limit of the
	// newest. A query that does not parse is an error saying why.
	Flows(query string, limit int) ([]Flow, error)
	// Flow returns one flow by any of its IDs.
	Flow(id flow.ID) (Flow, bool)
	// Messages returns a WebSocket flow's kept messages with Seq > after,
	// oldest first, at most limit.
	Messages(id flow.ID, after uint64, limit int) ([]Message, bool)
	// Subscribe calls fn for every change until cancel is called. fn must
	// not block: it runs while the store holds its lock.
	Subscribe(fn func(Update)) (cancel func())
	// Clear forgets every flow.
	Clear()
	// Stats is shown in the status bar, as JSON.
	Stats() any
}

// HAR exports and imports HAR 1.2 files (package har over the store).
type HAR interface {
	// Export writes the flows a query matches as one HAR document.
	Export(w io.Writer, query string) error
	// Import reads a HAR document into the store and says how many
	// entries it added.
	Import(r io.Reader) (int, error)
}

// Flow is one stored flow: the records the proxy published about one
// exchange, tunnel, WebSocket session or refusal, merged. Records are
// shared with the store and read only.
type Flow struct {
	ID flow.ID
	// Seq numbers flows in the order they arrived.
	Seq uint64
	// Open is set while the flow is still going on.
	Open       bool
	Exchange   *flow.Exchange
	Tunnel     *flow.Tunnel
	Denial     *flow.Denial
	Session    *flow.WSSession
	Faults     []flow.Fault
	Violations []flow.WSViolation
	// MessageCounts summarise a session's messages, kept or evicted.
	Messages MessageCounts
	// MessageBytes counts a session's payload bytes so far, both ways
	// (its records carry totals only once it has closed).
	MessageBytes int64
}

// MessageCounts summarise a WebSocket session's messages as the store saw
// them, including those evicted since.
type MessageCounts struct {
	Total, Client, Server int64
	Kept                  int
	Dropped, Rewritten    int64
	Closed, Truncated     int64
	Evicted               int64
}

// Message is one kept WebSocket message or control frame.
type Message struct {
	Seq    uint64
	Time   time.Time
	From   string // "client" or "server"
	Opcode int
	Type   string // text, binary, close, ping, pong
	// Len is the inflated length, WireLen the bytes on the wire with frame
	// headers, PayloadLen the payload on the wire (compressed).
	Len, WireLen, PayloadLen int64
	Fragments                int
	Compressed, Truncated    bool
	Action, Rule, Note       string
	CloseCode                uint16
	CloseReason              string
	// Payload is the kept start of the inflated payload; PayloadCut says
	// the whole was longer, SHA256 is its digest when known.
	Payload     []byte
	PayloadCut  bool
	SHA256      string
	Replacement []byte
}

// UpdateKind says what changed in the store.
type UpdateKind uint8

// The changes a Source reports.
const (
	// UpdateFlow: a flow arrived or changed (ID).
	UpdateFlow UpdateKind = iota + 1
	// UpdateMessage: a message was added to a flow (ID, Message).
	UpdateMessage
	// UpdateEvict: a flow was pushed out by the store's bounds (ID).
	UpdateEvict
	// UpdateClear: every flow was forgotten.
	UpdateClear
	// UpdateMissed: the source dropped changes for this reader, which
	// must reload what it shows.
	UpdateMissed
)

// Update is one change in the store.
type Update struct {
	Kind    UpdateKind
	ID      flow.ID
	Message *Message
}
