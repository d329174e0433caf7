package har

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hopscope/hopscope/contentcoding"
	"github.com/hopscope/hopscope/flow"
	"github.com/hopscope/hopscope/store"
)

// Options shape an export.
type Options struct {
	// Creator is the version written as log.creator.version; default
	// "dev".
	Version string
}

// maxDecoded bounds how far a content-encoded body is expanded for
// content.text: a kept body is at most the store's item size, but a bomb
// could still expand it a thousandfold.
const maxDecoded = 64 << 20

// Write writes everything st holds to w as HAR 1.2. Entries are written one
// at a time, so memory stays near one entry beyond the store itself.
func Write(w io.Writer, st *store.Store, opts Options) error {
	return WriteExports(w, st.Export(), st.Stats(), opts)
}

// WriteExports writes flows (as store.Export returns them) as HAR 1.2.
func WriteExports(w io.Writer, flows []store.Export, stats store.Stats, opts Options) error {
	if opts.Version == "" {
		opts.Version = "dev"
	}
	bw := bufio.NewWriter(w)
	b := newBuilder(flows)
	extra := b.logExtra(stats)
	creator, err := marshal(Creator{Name: "hopscope", Version: opts.Version})
	if err != nil {
		return err
	}
	bw.WriteString(`{"log":{"version":"1.2","creator":`)
	bw.Write(creator)
	bw.WriteString(`,"pages":[],"entries":[`)
	n := 0
	for i := range b.entries {
		e, err := marshal(b.entry(&b.entries[i]))
		if err != nil {
			return fmt.Errorf("writing HAR entry for flow %d: %w", b.entries[i].Flow.ID, err)
		}
		if n > 0 {
			bw.WriteByte(',')
		}
		n++
		bw.WriteByte('\n')
		bw.Write(e)
	}
	x, err := marshal(extra)
	if err != nil {
		return err
	}
	bw.WriteString("\n],\"_hopscope\":")
	bw.Write(x)
	bw.WriteString("}}\n")
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing HAR: %w", err)
	}
	return nil
}

// Build returns the HAR for flows as a value (for tests and small
// exports; Write streams).
func Build(flows []store.Export, stats store.Stats, opts Options) *HAR {
	var buf bytes.Buffer
	if err := WriteExports(&buf, flows, stats, opts); err != nil {
		panic(err) // writing to a bytes.Buffer fails only on a bug
	}
	var h HAR
	if err := json.Unmarshal(buf.Bytes(), &h); err != nil {
		panic(err)
	}
	return &h
}

func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// builder sorts flows into entries and the log's extra part.
type builder struct {
	entries []store.Export // flows with an exchange, by start
	tunnels map[flow.ID]*store.Flow
	others  []store.Flow // tunnels, standalone denials and faults
}

func newBuilder(flows []store.Export) *builder {
	b := &builder{tunnels: map[flow.ID]*store.Flow{}}
	for i := range flows {
		f := &flows[i].Flow
		switch {
		case f.Exchange != nil:
			b.entries = append(b.entries, flows[i])
		default:
			if f.TunnelRecord != nil {
				b.tunnels[f.TunnelRecord.ID] = f
			}
			b.others = append(b.others, *f)
		}
	}
	// HAR readers expect entries by start time; the store keeps them by
	// arrival, which is nearly the same.
	sort.SliceStable(b.entries, func(i, j int) bool {
		return b.entries[i].Flow.Exchange.Start.Before(b.entries[j].Flow.Exchange.Start)
	})
	return b
}

func (b *builder) logExtra(stats store.Stats) *LogExtra {
	x := &LogExtra{Store: &StoreInfo{
		Flows: stats.Flows, Messages: stats.Messages, ItemBytes: stats.ItemBytes,
		EvictedFlows: stats.EvictedFlows, EvictedMessages: stats.EvictedMessages,
	}}
	for i := range b.others {
		f := &b.others[i]
		switch {
		case f.TunnelRecord != nil:
			x.Tunnels = append(x.Tunnels, tunnelInfo(f))
		case f.Denial != nil:
			x.Denials = append(x.Denials, denialInfo(f.Denial))
		default:
			x.Faults = append(x.Faults, faultInfos(f.FaultRecords)...)
		}
	}
	return x
}

func tunnelInfo(f *store.Flow) TunnelInfo {
	t := f.TunnelRecord
	ti := TunnelInfo{
		ID: uint64(t.ID), Client: t.Client.Addr, Host: t.Host, Port: t.Port, Mode: t.Mode, Status: t.Status,
		BytesUp: t.BytesUp, BytesDown: t.BytesDown, Start: isoTime(t.Start), DurationMS: ms(t.Duration),
		Open: f.Open, Error: t.Error, SNI: t.SNI, TLSVersion: t.TLSVersion, ALPN: t.ALPN, Leaf: t.Leaf,
		Faults: faultInfos(f.FaultRecords),
	}
	if f.Denial != nil {
		d := denialInfo(f.Denial)
		ti.Denial = &d
	}
	return ti
}

func denialInfo(d *flow.Denial) DenialInfo {
	return DenialInfo{Method: d.Method, Target: d.Target, Rule: d.Rule, Reason: d.Reason, Hint: d.Hint, Status: d.Status, Time: isoTime(d.Time)}
}

func faultInfos(fs []flow.Fault) []FaultInfo {
	var out []FaultInfo
	for _, f := range fs {
		out = append(out, FaultInfo{Fault: f.Fault, Spec: f.Spec, From: f.From, Target: f.Target, Detail: f.Detail, Message: f.Message, Time: isoTime(f.Time)})
	}
	return out
}

// isoTime writes a time as Chrome does (Date.toJSON): UTC, milliseconds.
func isoTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (b *builder) entry(x *store.Export) Entry {
	f := &x.Flow
	ex := f.Exchange
	start := ex.Start
	if start.IsZero() { // an imported entry without one: when the store got it
		start = f.Start
	}
	e := Entry{
		StartedDateTime: isoTime(start),
		Time:            ms(ex.Duration),
		Request:         request(ex),
		Response:        response(ex),
		Timings:         timings(ex),
		X: &Extra{
			ID: uint64(f.ID), Type: string(f.Type), Client: ex.Client.Addr, AnsweredBy: ex.AnsweredBy,
			Error: ex.Error, Bumped: ex.Bumped, FirstByteMS: ms(ex.FirstByte),
			RequestBody: bodyInfo(ex.RequestBody), ResponseBody: bodyInfo(ex.ResponseBody),
			Faults: faultInfos(f.FaultRecords), FaultCount: f.Faults, Intercepts: interceptInfos(f.Intercepts),
		},
	}
	if ex.Client.Conn != 0 {
		e.Connection = fmt.Sprint(ex.Client.Conn)
	}
	e.Response.Content, e.X.ContentEncoding = content(ex)
	if f.Denial != nil {
		d := denialInfo(f.Denial)
		e.X.Denial = &d
	}
	if t := b.tunnels[ex.Tunnel]; t != nil {
		ti := tunnelInfo(t)
		e.X.Tunnel = &ti
	}
	if f.Type == store.TypeWebSocket {
		b.websocket(&e, x)
	}
	return e
}

func (b *builder) websocket(e *Entry, x *store.Export) {
	f := &x.Flow
	e.ResourceType = "websocket"
	msgs := make([]Message, 0, len(x.Messages))
	for _, m := range x.Messages {
		msgs = append(msgs, message(m))
	}
	e.WebSocket = &msgs
	if ss := f.SessionRecord; ss != nil {
		e.Request.URL = wsURL(ss.URL)
		si := &SessionInfo{
			ID: uint64(ss.ID), Path: ss.Path, Subprotocol: ss.Subprotocol, Extensions: ss.Extensions,
			AcceptMismatch: ss.AcceptMismatch, Start: isoTime(ss.Start), Open: f.Open, CloseHandshake: ss.CloseHandshake,
			Code: ss.Code, Reason: ss.Reason, ClosedBy: ss.ClosedBy, DurationMS: ms(ss.Duration), Error: ss.Error,
			ClientMessages: ss.ClientMessages, ClientBytes: ss.ClientBytes, ServerMessages: ss.ServerMessages, ServerBytes: ss.ServerBytes,
		}
		if f.Open { // counts arrive with the close; until then, what the store saw
			si.ClientMessages, si.ServerMessages = f.ClientMessages, f.ServerMessages
		}
		e.X.Session = si
	} else {
		e.Request.URL = wsURL(e.Request.URL)
	}
	for _, v := range f.Violations {
		e.X.Violations = append(e.X.Violations, Violation{Side: v.Side.String(), Violation: v.Violation, Code: v.Code, BytesPassed: v.BytesPassed, Time: isoTime(v.Time)})
	}
	e.X.Messages = &MessageStats{
		Seen: f.Messages, Kept: f.MessagesKept, Evicted: f.EvictedMessages,
		Dropped: f.Dropped, Rewritten: f.Rewritten, Closed: f.Closed,
	}
}

// wsURL gives a handshake URL the ws:// or wss:// scheme Chrome writes.
func wsURL(raw string) string {
	switch {
	case strings.HasPrefix(raw, "http://"):
		return "ws://" + raw[len("http://"):]
	case strings.HasPrefix(raw, "https://"):
		return "wss://" + raw[len("https://"):]
	}
	return raw
}

// message writes m as Chrome does: send or receive, epoch seconds, the
// opcode, text as is and everything else base64.
func message(m *store.Message) Message {
	out := Message{Type: "receive", Time: epoch(m.Time), Opcode: m.Opcode, Data: payloadData(m.Opcode, m.Payload)}
	if m.From == "client" {
		out.Type = "send"
	}
	out.X = &MessageExtra{
		Seq: m.Seq, Len: m.Len, WireLen: m.WireLen, PayloadLen: m.PayloadLen, Fragments: m.Fragments,
		Compressed: m.Compressed, Truncated: m.Truncated, PayloadCut: m.PayloadCut, SHA256: m.SHA256,
		Action: m.Action, Rule: m.Rule, Note: m.Note, Actor: m.Actor, CloseCode: m.CloseCode, CloseReason: m.CloseReason,
	}
	if m.Replacement != nil {
		out.X.Replacement = payloadData(m.Opcode, m.Replacement)
	}
	return out
}

func payloadData(opcode int, p []byte) string {
	if opcode == int(flow.OpText) {
		return string(trimPartialRune(p))
	}
	return base64.StdEncoding.EncodeToString(p)
}

// trimPartialRune drops a UTF-8 sequence cut off at the end of a kept
// payload, so a cut text message is still valid text.
func trimPartialRune(p []byte) []byte {
	for i := 1; i <= utf8.UTFMax && i <= len(p); i++ {
		if r, size := utf8.DecodeLastRune(p[:len(p)-i+1]); r != utf8.RuneError || size > 1 {
			return p[:len(p)-i+1]
		}
		if utf8.RuneStart(p[len(p)-i]) {
			return p[:len(p)-i]
		}
	}
	return p
}

func bodyInfo(b flow.Body) *BodyInfo {
	if !b.Truncated {
		return nil
	}
	return &BodyInfo{Truncated: true, Len: b.Len, Kept: len(b.Data), SHA256: b.SHA256}
}

func headers(h http.Header) []NameValue {
	out := []NameValue{}
	for _, k := range slices.Sorted(maps.Keys(h)) {
		for _, v := range h[k] {
			out = append(out, NameValue{Name: k, Value: v})
		}
	}
	return out
}

func request(ex *flow.Exchange) Request {
	r := Request{
		Method: ex.Method, URL: ex.URL, HTTPVersion: ex.Proto,
		Cookies: []NameValue{}, Headers: headers(ex.RequestHeader), QueryString: []NameValue{},
		HeadersSize: -1, BodySize: ex.RequestBody.Len,
	}
	for _, c := range (&http.Request{Header: ex.RequestHeader}).Cookies() {
		r.Cookies = append(r.Cookies, NameValue{Name: c.Name, Value: c.Value})
	}
	if u, err := url.Parse(ex.URL); err == nil {
		q := u.Query()
		for _, k := range slices.Sorted(maps.Keys(q)) {
			for _, v := range q[k] {
				r.QueryString = append(r.QueryString, NameValue{Name: k, Value: v})
			}
		}
		u.Fragment, u.RawFragment = "", ""
		r.URL = u.String()
	}
	if len(ex.RequestBody.Data) > 0 {
		pd := &PostData{MimeType: ex.RequestHeader.Get("Content-Type")}
		if utf8.Valid(ex.RequestBody.Data) {
			pd.Text = string(ex.RequestBody.Data)
		} else {
			pd.Text, pd.Encoding = base64.StdEncoding.EncodeToString(ex.RequestBody.Data), "base64"
		}
		r.PostData = pd
	}
	return r
}

func response(ex *flow.Exchange) Response {
	r := Response{
		Status: ex.Status, StatusText: http.StatusText(ex.Status), HTTPVersion: ex.Proto,
		Cookies: []NameValue{}, Headers: headers(ex.ResponseHeader),
		RedirectURL: ex.ResponseHeader.Get("Location"), HeadersSize: -1, BodySize: ex.ResponseBody.Len,
		Error: ex.Error,
	}
	if ex.Status == 0 {
		r.HTTPVersion, r.BodySize = "", -1
	}
	for _, c := range (&http.Response{Header: ex.ResponseHeader}).Cookies() {
		r.Cookies = append(r.Cookies, NameValue{Name: c.Name, Value: c.Value})
	}
	return r
}

// content gives the response body as HAR wants it: decoded text when
// hopscope can decode it (the whole body, in gzip, deflate, br or zstd),
// else the bytes on the wire in base64 and the coding still applied.
func content(ex *flow.Exchange) (c Content, stillEncoded string) {
	b := ex.ResponseBody
	c = Content{Size: max(b.Len, int64(len(b.Data))), MimeType: ex.ResponseHeader.Get("Content-Type")}
	if c.MimeType == "" {
		c.MimeType = "x-unknown" // as Chrome writes it
	}
	if len(b.Data) == 0 {
		c.Size = max(c.Size, 0)
		return c, ""
	}
	data := b.Data
	if enc := strings.Join(ex.ResponseHeader.Values("Content-Encoding"), ", "); !contentcoding.Identity(enc) {
		decoded, complete, err := contentcoding.Decode(b.Data, enc, maxDecoded)
		if b.Truncated || err != nil || !complete {
			c.Text, c.Encoding = base64.StdEncoding.EncodeToString(b.Data), "base64"
			return c, strings.ToLower(enc)
		}
		data = decoded
		c.Size = int64(len(decoded))
		c.Compression = c.Size - int64(len(b.Data))
	}
	if utf8.Valid(data) {
		c.Text = string(data)
	} else {
		c.Text, c.Encoding = base64.StdEncoding.EncodeToString(data), "base64"
	}
	return c, ""
}

func timings(ex *flow.Exchange) Timings {
	t := Timings{Blocked: -1, DNS: -1, Connect: -1, SSL: -1}
	wait := ex.FirstByte
	if wait <= 0 || wait > ex.Duration {
		wait = ex.Duration
	}
	t.Wait = ms(wait)
	t.Receive = ms(ex.Duration - wait)
	return t
}

func interceptInfos(is []flow.Intercept) []InterceptInfo {
	var out []InterceptInfo
	for _, i := range is {
		out = append(out, InterceptInfo{Stage: i.Stage, Breakpoint: i.Breakpoint, Actor: i.Actor, Action: i.Action,
			Note: i.Note, Time: isoTime(i.Time), Before: interceptMessage(i.Before), After: interceptMessage(i.After)})
	}
	return out
}

func interceptMessage(m *flow.HTTPMessage) *InterceptMessage {
	if m == nil {
		return nil
	}
	out := &InterceptMessage{Status: m.Status, Headers: headers(m.Header)}
	if utf8.Valid(m.Body) {
		out.Text = string(m.Body)
	} else {
		out.Text, out.Encoding = base64.StdEncoding.EncodeToString(m.Body), "base64"
	}
	return out
}
