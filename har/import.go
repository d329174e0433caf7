package har

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hopscope/hopscope/flow"
	"github.com/hopscope/hopscope/store"
)

// Read parses a HAR file. It is lenient where HAR writers differ (unknown
// fields, message times as strings) and strict where a file is not HAR.
func Read(r io.Reader) (*HAR, error) {
	var h HAR
	dec := json.NewDecoder(r)
	if err := dec.Decode(&h); err != nil {
		return nil, fmt.Errorf("reading HAR: %w", err)
	}
	if h.Log.Version == "" && h.Log.Entries == nil {
		return nil, fmt.Errorf("reading HAR: no log.version and no log.entries: not a HAR file")
	}
	return &h, nil
}

// ImportStats says what an import added.
type ImportStats struct {
	Entries    int `json:"entries"`
	WebSockets int `json:"websockets"`
	Messages   int `json:"messages"`
	Tunnels    int `json:"tunnels"`
	// Skipped counts WebSocket messages that are not messages (Chrome's
	// "error" frames) or whose data would not decode.
	Skipped int `json:"skipped"`
}

// Import adds h's entries, WebSocket messages included, to st as flows
// with fresh IDs. Store bounds apply as for live traffic.
func Import(st *store.Store, h *HAR) ImportStats {
	im := importer{st: st, tunnels: map[uint64]flow.ID{}}
	if x := h.Log.X; x != nil {
		for i := range x.Tunnels {
			im.tunnel(&x.Tunnels[i])
		}
		for _, d := range x.Denials {
			im.add(flow.Record{Kind: flow.KindDenial, Denial: denial(d, 0)})
		}
		for _, f := range x.Faults {
			im.add(flow.Record{Kind: flow.KindFault, Fault: fault(f, 0)})
		}
	}
	for i := range h.Log.Entries {
		im.entry(&h.Log.Entries[i])
	}
	im.flush()
	return im.stats
}

type importer struct {
	st      *store.Store
	tunnels map[uint64]flow.ID // file's tunnel IDs to the store's
	batch   []flow.Record
	stats   ImportStats
}

func (im *importer) add(r flow.Record) {
	im.batch = append(im.batch, r)
	if len(im.batch) >= 256 {
		im.flush()
	}
}

func (im *importer) flush() {
	if len(im.batch) > 0 {
		im.st.Observe(im.batch)
		im.batch = im.batch[:0]
	}
}

func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t
}

func durationMS(v float64) time.Duration {
	if v <= 0 {
		return 0
	}
	return time.Duration(v * float64(time.Millisecond))
}

func (im *importer) tunnel(t *TunnelInfo) flow.ID {
	if id, ok := im.tunnels[t.ID]; ok {
		return id
	}
	id := im.st.NewID()
	im.tunnels[t.ID] = id
	im.stats.Tunnels++
	rec := &flow.Tunnel{
		ID: id, Client: flow.Client{Addr: t.Client}, Host: t.Host, Port: t.Port, Mode: t.Mode, Status: t.Status,
		BytesUp: t.BytesUp, BytesDown: t.BytesDown, Start: parseTime(t.Start), Duration: durationMS(t.DurationMS),
		Error: t.Error, SNI: t.SNI, TLSVersion: t.TLSVersion, ALPN: t.ALPN, Leaf: t.Leaf,
	}
	im.add(flow.Record{Kind: flow.KindTunnel, Tunnel: rec})
	if t.Denial != nil {
		im.add(flow.Record{Kind: flow.KindDenial, Denial: denial(*t.Denial, id)})
	}
	for _, f := range t.Faults {
		im.add(flow.Record{Kind: flow.KindFault, Fault: fault(f, id)})
	}
	return id
}

func denial(d DenialInfo, id flow.ID) *flow.Denial {
	return &flow.Denial{Flow: id, Method: d.Method, Target: d.Target, Rule: d.Rule, Reason: d.Reason, Hint: d.Hint, Status: d.Status, Time: parseTime(d.Time)}
}

func fault(f FaultInfo, id flow.ID) *flow.Fault {
	return &flow.Fault{Flow: id, Fault: f.Fault, Spec: f.Spec, From: f.From, Target: f.Target, Detail: f.Detail, Message: f.Message, Time: parseTime(f.Time)}
}

func header(nv []NameValue) http.Header {
	h := http.Header{}
	for _, kv := range nv {
		h[http.CanonicalHeaderKey(kv.Name)] = append(h[http.CanonicalHeaderKey(kv.Name)], kv.Value)
	}
	return h
}

func (im *importer) entry(e *Entry) {
	im.stats.Entries++
	x := e.X
	if x == nil {
		x = &Extra{}
	}
	ex := &flow.Exchange{
		ID: im.st.NewID(), Client: flow.Client{Addr: x.Client}, Bumped: x.Bumped,
		Method: e.Request.Method, URL: e.Request.URL, Proto: e.Request.HTTPVersion,
		RequestHeader: header(e.Request.Headers), RequestBody: requestBody(&e.Request, x.RequestBody),
		Status: e.Response.Status, ResponseHeader: header(e.Response.Headers),
		Start: parseTime(e.StartedDateTime), FirstByte: durationMS(x.FirstByteMS), Duration: durationMS(e.Time),
		AnsweredBy: x.AnsweredBy, Error: x.Error,
	}
	if ex.Error == "" {
		ex.Error = e.Response.Error
	}
	if ex.FirstByte == 0 {
		ex.FirstByte = durationMS(e.Timings.Wait)
	}
	if conn, err := strconv.ParseUint(e.Connection, 10, 64); err == nil {
		ex.Client.Conn = conn
	}
	ex.ResponseBody = responseBody(&e.Response, x)
	if x.ContentEncoding == "" && e.Response.Content.Text != "" {
		// content.text is decoded (HAR's rule, and Chrome's), so the
		// body held is no longer what Content-Encoding says.
		ex.ResponseHeader.Del("Content-Encoding")
	}
	if x.Tunnel != nil {
		ex.Tunnel = im.tunnel(x.Tunnel)
	}
	isWS := e.ResourceType == "websocket" || e.WebSocket != nil
	var ss *flow.WSSession
	if isWS {
		im.stats.WebSockets++
		ss = &flow.WSSession{ID: im.st.NewID(), Client: ex.Client, Exchange: ex.ID, Tunnel: ex.Tunnel, URL: e.Request.URL, Start: ex.Start}
		if si := x.Session; si != nil {
			ss.Path, ss.Subprotocol, ss.Extensions, ss.AcceptMismatch = si.Path, si.Subprotocol, si.Extensions, si.AcceptMismatch
			if t := parseTime(si.Start); !t.IsZero() {
				ss.Start = t
			}
		}
		ex.WebSocket = ss.ID
	}
	im.add(flow.Record{Kind: flow.KindExchange, Exchange: ex})
	if x.Denial != nil {
		im.add(flow.Record{Kind: flow.KindDenial, Denial: denial(*x.Denial, ex.ID)})
	}
	for _, f := range x.Faults {
		im.add(flow.Record{Kind: flow.KindFault, Fault: fault(f, ex.ID)})
	}
	if ss == nil {
		return
	}
	im.add(flow.Record{Kind: flow.KindWSOpen, Session: ss})
	closed := *ss
	var end time.Time
	if e.WebSocket != nil {
		for i, m := range *e.WebSocket {
			rec, ok := wsMessage(ss.ID, uint64(i+1), &m)
			if !ok {
				im.stats.Skipped++
				continue
			}
			im.stats.Messages++
			if rec.From == flow.FromClient {
				closed.ClientMessages++
				closed.ClientBytes += rec.Len
			} else {
				closed.ServerMessages++
				closed.ServerBytes += rec.Len
			}
			end = rec.Time
			im.add(flow.Record{Kind: flow.KindWSMessage, Message: rec})
		}
	}
	for _, v := range x.Violations {
		side := flow.FromClient
		if v.Side == "server" {
			side = flow.FromServer
		}
		im.add(flow.Record{Kind: flow.KindWSViolation, Violation: &flow.WSViolation{
			Session: ss.ID, Client: ss.Client, URL: ss.URL, Side: side, Violation: v.Violation, Code: v.Code,
			BytesPassed: v.BytesPassed, Time: parseTime(v.Time),
		}})
	}
	// An imported session is not live: it ends where the file ends.
	if si := x.Session; si != nil {
		closed.Code, closed.Reason, closed.ClosedBy, closed.Error = si.Code, si.Reason, si.ClosedBy, si.Error
		closed.CloseHandshake = si.CloseHandshake
		closed.Duration = durationMS(si.DurationMS)
		if !si.Open {
			closed.ClientMessages, closed.ClientBytes = si.ClientMessages, si.ClientBytes
			closed.ServerMessages, closed.ServerBytes = si.ServerMessages, si.ServerBytes
		}
	}
	if closed.Duration == 0 && !end.IsZero() && end.After(ss.Start) {
		closed.Duration = end.Sub(ss.Start)
	}
	im.add(flow.Record{Kind: flow.KindWSClose, Session: &closed})
}

func wsMessage(session flow.ID, seq uint64, m *Message) (flow.WSMessage, bool) {
	var from flow.Side
	switch m.Type {
	case "send":
		from = flow.FromClient
	case "receive":
		from = flow.FromServer
	default:
		return flow.WSMessage{}, false // Chrome's "error" frames are not messages
	}
	payload, ok := decodeData(m.Opcode, m.Data)
	if !ok {
		return flow.WSMessage{}, false
	}
	rec := flow.WSMessage{
		Session: session, Seq: seq, Time: m.Time.Time(), From: from, Opcode: flow.Opcode(m.Opcode),
		Len: int64(len(payload)), PayloadLen: int64(len(payload)), Fragments: 1, Action: "pass", Payload: payload,
	}
	if x := m.X; x != nil {
		if x.Seq != 0 {
			rec.Seq = x.Seq
		}
		rec.Len, rec.WireLen, rec.PayloadLen, rec.Fragments = x.Len, x.WireLen, x.PayloadLen, max(x.Fragments, 1)
		rec.Compressed, rec.Truncated = x.Compressed, x.Truncated || x.PayloadCut
		rec.Rule, rec.Note, rec.Actor, rec.CloseCode, rec.CloseReason = x.Rule, x.Note, x.Actor, x.CloseCode, x.CloseReason
		if x.Action != "" {
			rec.Action = x.Action
		}
		if x.Replacement != "" {
			rec.Replacement, _ = decodeData(m.Opcode, x.Replacement)
		}
	}
	return rec, true
}

// decodeData reads a message's data: text as is, other opcodes base64 (as
// Chrome writes them); data that is not base64 is taken as it is.
func decodeData(opcode int, data string) ([]byte, bool) {
	if opcode == int(flow.OpText) {
		return []byte(data), true
	}
	if b, err := base64.StdEncoding.DecodeString(data); err == nil {
		return b, true
	}
	if opcode < 0 || opcode > 0xf {
		return nil, false
	}
	return []byte(data), true
}

func requestBody(r *Request, info *BodyInfo) flow.Body {
	b := flow.Body{Len: r.BodySize}
	if r.PostData != nil && r.PostData.Text != "" {
		if strings.EqualFold(r.PostData.Encoding, "base64") {
			b.Data, _ = base64.StdEncoding.DecodeString(r.PostData.Text)
		} else {
			b.Data = []byte(r.PostData.Text)
		}
	}
	return withInfo(b, info)
}

func responseBody(r *Response, x *Extra) flow.Body {
	b := flow.Body{Len: r.BodySize}
	c := r.Content
	if c.Text != "" {
		if strings.EqualFold(c.Encoding, "base64") {
			b.Data, _ = base64.StdEncoding.DecodeString(c.Text)
		} else {
			b.Data = []byte(c.Text)
		}
		if x.ContentEncoding == "" {
			// decoded: its length is the content's, not the wire's
			b.Len = int64(len(b.Data))
		}
	}
	return withInfo(b, x.ResponseBody)
}

func withInfo(b flow.Body, info *BodyInfo) flow.Body {
	if b.Len < 0 {
		b.Len = int64(len(b.Data))
	}
	if info != nil && info.Truncated {
		b.Truncated, b.Len, b.SHA256 = true, info.Len, info.SHA256
	}
	return b
}
