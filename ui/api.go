package ui

import (
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hopscope/hopscope/contentcoding"
	"github.com/hopscope/hopscope/flow"
)

// maxImport bounds a HAR upload.
const maxImport = 256 << 20

// maxDecoded bounds what one body expands to for viewing: a kept body is
// at most the store's item cap, but a bomb expands that a thousandfold.
const maxDecoded = 32 << 20

func (s *Server) routes() {
	s.mux.HandleFunc("GET /api/flows", s.listFlows)
	s.mux.HandleFunc("GET /api/flows/{id}", s.getFlow)
	s.mux.HandleFunc("GET /api/flows/{id}/messages", s.getMessages)
	s.mux.HandleFunc("GET /api/flows/{id}/messages/{seq}/payload", s.getPayload)
	s.mux.HandleFunc("GET /api/flows/{id}/body/{side}", s.getBody)
	s.mux.HandleFunc("GET /api/events", s.events)
	s.mux.HandleFunc("POST /api/clear", s.clear)
	s.mux.HandleFunc("GET /api/har", s.exportHAR)
	s.mux.HandleFunc("POST /api/har", s.importHAR)
	s.mux.HandleFunc("GET /api/stats", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, s.opts.Source.Stats())
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

func apiError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// Summary is a row of the flow list.
type Summary struct {
	// ID is a string in JSON: imported flows have IDs beyond 2^53, which
	// JavaScript numbers cannot hold.
	ID   uint64 `json:"id,string"`
	Seq  uint64 `json:"seq"`
	Type string `json:"type"` // http, bumped, tunnel, websocket, denied, fault
	// Scheme is http, https, ws or wss; "" for tunnels and denials.
	Scheme      string  `json:"scheme,omitempty"`
	Method      string  `json:"method"`
	Host        string  `json:"host"`
	Path        string  `json:"path"`
	Status      int     `json:"status"`
	Size        int64   `json:"size"`
	Start       float64 `json:"start"` // ms since the epoch
	Duration    float64 `json:"duration"`
	ContentType string  `json:"content_type,omitempty"`
	Open        bool    `json:"open,omitempty"`
	// Note is the policy decision, tunnel mode or error in a few words.
	Note     string `json:"note,omitempty"`
	Error    string `json:"error,omitempty"`
	Faults   int    `json:"faults,omitempty"`
	Messages int64  `json:"messages,omitempty"`
	Client   string `json:"client,omitempty"`
	// Tunnel is the tunnel an exchange or session rode in.
	Tunnel uint64 `json:"tunnel,omitempty,string"`
}

func ms(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixMicro()) / 1000
}

func durMS(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// summarize works out a flow's row.
func summarize(f *Flow) Summary {
	sum := Summary{ID: uint64(f.ID), Seq: f.Seq, Open: f.Open, Faults: len(f.Faults)}
	switch {
	case f.Exchange != nil:
		ex := f.Exchange
		sum.Type = "http"
		if ex.Bumped {
			sum.Type = "bumped"
		}
		sum.Method, sum.Status = ex.Method, ex.Status
		sum.Start, sum.Duration = ms(ex.Start), durMS(ex.Duration)
		sum.Client = ex.Client.Addr
		sum.Size = ex.ResponseBody.Len
		if u, err := url.Parse(ex.URL); err == nil {
			sum.Scheme, sum.Host, sum.Path = u.Scheme, u.Host, u.RequestURI()
		} else {
			sum.Path = ex.URL
		}
		if ct := ex.ResponseHeader.Get("Content-Type"); ct != "" {
			if mt, _, err := mime.ParseMediaType(ct); err == nil {
				ct = mt
			}
			sum.ContentType = ct
		}
		sum.Error = ex.Error
		sum.Tunnel = uint64(ex.Tunnel)
		if ex.AnsweredBy == "proxy" && ex.Error == "" && f.Denial == nil {
			sum.Note = "answered by hopscope"
		}
		if ex.Tunnel != 0 && !ex.Bumped {
			sum.Note = "inside a plaintext tunnel"
		}
	case f.Tunnel != nil:
		t := f.Tunnel
		sum.Type = "tunnel"
		sum.Method, sum.Status = "CONNECT", t.Status
		sum.Host = fmt.Sprintf("%s:%d", t.Host, t.Port)
		sum.Start, sum.Duration = ms(t.Start), durMS(t.Duration)
		sum.Size = t.BytesUp + t.BytesDown
		sum.Client = t.Client.Addr
		sum.Error = t.Error
		switch {
		case t.Status != 0 && t.Status != http.StatusOK:
			// Refused by the destination or unreachable: nothing was
			// spliced or bumped, whatever mode it was meant for.
			sum.Note = "not opened"
		case t.Mode == "bump":
			sum.Note = "bumped (TLS opened with the local CA)"
			if t.SNI != "" {
				sum.Note += ", SNI " + t.SNI
			}
		case t.Mode == "splice":
			sum.Note = "spliced byte for byte"
		case t.Mode == "http":
			sum.Note = "plaintext HTTP inside"
		}
	case f.Denial != nil:
		d := f.Denial
		sum.Method, sum.Host, sum.Status = d.Method, d.Target, d.Status
		sum.Start = ms(d.Time)
		sum.Client = d.Client.Addr
	case len(f.Faults) > 0:
		ft := f.Faults[0]
		sum.Type, sum.Host, sum.Start = "fault", ft.Target, ms(ft.Time)
		sum.Note = ft.Fault + " " + ft.Detail
		sum.Client = ft.Client.Addr
	}
	if ss := f.Session; ss != nil {
		sum.Type = "websocket"
		switch {
		case strings.HasPrefix(ss.URL, "https"):
			sum.Scheme = "wss"
		default:
			sum.Scheme = "ws"
		}
		if sum.Host == "" {
			if u, err := url.Parse(ss.URL); err == nil {
				sum.Host, sum.Path = u.Host, u.RequestURI()
			}
		}
		if sum.Method == "" {
			sum.Method = "GET"
		}
		if sum.Status == 0 {
			sum.Status = http.StatusSwitchingProtocols
		}
		if sum.Start == 0 {
			sum.Start = ms(ss.Start)
		}
		if sum.Tunnel == 0 {
			sum.Tunnel = uint64(ss.Tunnel)
		}
		sum.Size = ss.ClientBytes + ss.ServerBytes
		if sum.Size == 0 {
			sum.Size = f.MessageBytes
		}
		sum.Duration = durMS(ss.Duration)
		sum.Messages = f.Messages.Total
		if sum.Messages == 0 {
			sum.Messages = ss.ClientMessages + ss.ServerMessages
		}
		sum.Note = ss.Path + " path"
		if !f.Open && ss.Code != 0 {
			sum.Note += fmt.Sprintf(", closed %d by %s", ss.Code, ss.ClosedBy)
		}
		// A rule, a fault or a person may have acted: say what, not who
		// (the timeline says who).
		for _, a := range []struct {
			n    int64
			what string
		}{{f.Messages.Dropped, "dropped"}, {f.Messages.Rewritten, "rewritten"}, {f.Messages.Closed, "closed on"}} {
			if a.n > 0 {
				sum.Note += fmt.Sprintf(", %d %s", a.n, a.what)
			}
		}
		if len(f.Violations) > 0 {
			sum.Error = f.Violations[0].Side.String() + " broke the protocol: " + f.Violations[0].Violation
		}
	}
	if d := f.Denial; d != nil {
		sum.Type = "denied"
		sum.Note = "denied by rule " + d.Rule
		if d.Reason != "" {
			sum.Note += ": " + d.Reason
		}
	}
	if sum.Type == "" {
		sum.Type = "http"
	}
	return sum
}

func (s *Server) listFlows(w http.ResponseWriter, r *http.Request) {
	limit := 5000
	if n, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil && n > 0 {
		limit = n
	}
	flows, err := s.opts.Source.Flows(r.URL.Query().Get("q"), limit)
	if err != nil {
		apiError(w, http.StatusBadRequest, err.Error())
		return
	}
	out := make([]Summary, len(flows))
	for i := range flows {
		out[i] = summarize(&flows[i])
	}
	writeJSON(w, map[string]any{"flows": out, "stats": s.opts.Source.Stats()})
}

func (s *Server) flowParam(w http.ResponseWriter, r *http.Request) (Flow, bool) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		apiError(w, http.StatusBadRequest, "flow id: "+err.Error())
		return Flow{}, false
	}
	f, ok := s.opts.Source.Flow(flow.ID(id))
	if !ok {
		apiError(w, http.StatusNotFound, fmt.Sprintf("no flow %d (evicted, or cleared)", id))
		return Flow{}, false
	}
	return f, true
}

// Header is one header field, with whether it is hop-by-hop (meant for
// the next hop only; a proxy must not forward it, RFC 9110 §7.6.1).
type Header struct {
	Name     string `json:"name"`
	Value    string `json:"value"`
	HopByHop bool   `json:"hop,omitempty"`
}

// hopByHop are the fields that are always hop-by-hop.
var hopByHop = map[string]bool{
	"Connection": true, "Proxy-Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
}

// headerList orders a header by name and marks hop-by-hop fields, also
// those the Connection field names.
func headerList(h http.Header) []Header {
	named := map[string]bool{}
	for _, v := range h.Values("Connection") {
		for _, n := range strings.Split(v, ",") {
			if n = strings.TrimSpace(n); n != "" {
				named[http.CanonicalHeaderKey(n)] = true
			}
		}
	}
	names := make([]string, 0, len(h))
	for k := range h {
		names = append(names, k)
	}
	slices.Sort(names)
	out := []Header{}
	for _, k := range names {
		ck := http.CanonicalHeaderKey(k)
		for _, v := range h[k] {
			out = append(out, Header{Name: k, Value: v, HopByHop: hopByHop[ck] || named[ck]})
		}
	}
	return out
}

// BodyInfo describes a body the UI fetches with /body/{side}.
type BodyInfo struct {
	Len       int64  `json:"len"`
	Kept      int    `json:"kept"`
	Truncated bool   `json:"truncated,omitempty"`
	SHA256    string `json:"sha256,omitempty"`
	Encoding  string `json:"encoding,omitempty"`
	Type      string `json:"type,omitempty"`
}

func bodyInfo(b flow.Body, h http.Header) BodyInfo {
	return BodyInfo{Len: b.Len, Kept: len(b.Data), Truncated: b.Truncated, SHA256: b.SHA256,
		Encoding: h.Get("Content-Encoding"), Type: h.Get("Content-Type")}
}

// Detail is everything about one flow but bodies and message payloads,
// which are fetched on demand.
type Detail struct {
	Summary Summary `json:"summary"`
	// Exchange fields.
	URL             string    `json:"url,omitempty"`
	Proto           string    `json:"proto,omitempty"`
	RequestHeaders  []Header  `json:"request_headers,omitempty"`
	ResponseHeaders []Header  `json:"response_headers,omitempty"`
	RequestBody     *BodyInfo `json:"request_body,omitempty"`
	ResponseBody    *BodyInfo `json:"response_body,omitempty"`
	AnsweredBy      string    `json:"answered_by,omitempty"`
	FirstByte       float64   `json:"first_byte,omitempty"`
	TunnelID        uint64    `json:"tunnel_id,omitempty,string"`
	Records         any       `json:"records"`
	Messages        any       `json:"message_counts,omitempty"`
}

func (s *Server) getFlow(w http.ResponseWriter, r *http.Request) {
	f, ok := s.flowParam(w, r)
	if !ok {
		return
	}
	d := Detail{Summary: summarize(&f)}
	if ex := f.Exchange; ex != nil {
		d.URL, d.Proto, d.AnsweredBy = ex.URL, ex.Proto, ex.AnsweredBy
		d.RequestHeaders = headerList(ex.RequestHeader)
		d.ResponseHeaders = headerList(ex.ResponseHeader)
		rb, sb := bodyInfo(ex.RequestBody, ex.RequestHeader), bodyInfo(ex.ResponseBody, ex.ResponseHeader)
		d.RequestBody, d.ResponseBody = &rb, &sb
		d.FirstByte = durMS(ex.FirstByte)
		d.TunnelID = uint64(ex.Tunnel)
	}
	if f.Session != nil {
		d.Messages = f.Messages
		if d.URL == "" {
			d.URL = f.Session.URL
		}
		if d.TunnelID == 0 {
			d.TunnelID = uint64(f.Session.Tunnel)
		}
	}
	// The raw records, less bodies and headers already shown, for the
	// "record" tab and for tools.
	type records struct {
		Tunnel     *flow.Tunnel       `json:"tunnel,omitempty"`
		Denial     *flow.Denial       `json:"denial,omitempty"`
		Session    *flow.WSSession    `json:"session,omitempty"`
		Faults     []flow.Fault       `json:"faults,omitempty"`
		Violations []flow.WSViolation `json:"violations,omitempty"`
	}
	d.Records = records{f.Tunnel, f.Denial, f.Session, f.Faults, f.Violations}
	writeJSON(w, d)
}

// MessageJSON is a message as the UI lists it: everything but the
// payload, of which it has a short preview.
type MessageJSON struct {
	Seq         uint64  `json:"seq"`
	Time        float64 `json:"time"`
	From        string  `json:"from"`
	Opcode      int     `json:"opcode"`
	Type        string  `json:"type"`
	Len         int64   `json:"len"`
	WireLen     int64   `json:"wire_len"`
	PayloadLen  int64   `json:"payload_len"`
	Fragments   int     `json:"fragments"`
	Compressed  bool    `json:"compressed,omitempty"`
	Truncated   bool    `json:"truncated,omitempty"`
	Action      string  `json:"action"`
	Rule        string  `json:"rule,omitempty"`
	Note        string  `json:"note,omitempty"`
	CloseCode   uint16  `json:"close_code,omitempty"`
	CloseReason string  `json:"close_reason,omitempty"`
	Kept        int     `json:"kept"`
	PayloadCut  bool    `json:"payload_cut,omitempty"`
	SHA256      string  `json:"sha256,omitempty"`
	// Text is set when the kept payload is valid UTF-8; Preview is its
	// start as text, or as hex for binary payloads.
	Text        bool   `json:"text"`
	Preview     string `json:"preview"`
	Replacement string `json:"replacement,omitempty"`
}

const previewChars = 200

func messageJSON(m *Message) MessageJSON {
	out := MessageJSON{
		Seq: m.Seq, Time: ms(m.Time), From: m.From, Opcode: m.Opcode, Type: m.Type, Len: m.Len,
		WireLen: m.WireLen, PayloadLen: m.PayloadLen, Fragments: m.Fragments, Compressed: m.Compressed,
		Truncated: m.Truncated, Action: m.Action, Rule: m.Rule, Note: m.Note, CloseCode: m.CloseCode,
		CloseReason: m.CloseReason, Kept: len(m.Payload), PayloadCut: m.PayloadCut, SHA256: m.SHA256,
	}
	out.Text, out.Preview = preview(m.Payload, m.Type == "binary")
	if m.Replacement != nil {
		_, out.Replacement = preview(m.Replacement, false)
	}
	return out
}

// preview returns the start of p as text when it is UTF-8 (and not
// declared binary), else as hex.
func preview(p []byte, binary bool) (text bool, s string) {
	cut := p
	if len(cut) > previewChars*4 {
		cut = cut[:previewChars*4]
		// Don't call a text payload binary because the cut split a rune.
		for i := 0; i < 3 && len(cut) > 0 && !utf8.Valid(cut); i++ {
			cut = cut[:len(cut)-1]
		}
	}
	if !binary && utf8.Valid(cut) {
		r := []rune(string(cut))
		if len(r) > previewChars {
			r = r[:previewChars]
		}
		return true, string(r)
	}
	if len(cut) > previewChars/2 {
		cut = cut[:previewChars/2]
	}
	var b strings.Builder
	for i, c := range cut {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%02x", c)
	}
	return false, b.String()
}

func (s *Server) getMessages(w http.ResponseWriter, r *http.Request) {
	f, ok := s.flowParam(w, r)
	if !ok {
		return
	}
	after, _ := strconv.ParseUint(r.URL.Query().Get("after"), 10, 64)
	limit := 100000
	if n, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil && n > 0 {
		limit = n
	}
	// tail=N: the newest N, so a session of a million messages opens at
	// once; the page asks for the earlier ones when wanted.
	if n, err := strconv.ParseInt(r.URL.Query().Get("tail"), 10, 64); err == nil && n > 0 && f.Messages.Total > n {
		after = max(after, uint64(f.Messages.Total-n))
	}
	msgs, _ := s.opts.Source.Messages(f.ID, after, limit)
	out := make([]MessageJSON, len(msgs))
	for i := range msgs {
		out[i] = messageJSON(&msgs[i])
	}
	writeJSON(w, map[string]any{"messages": out, "counts": f.Messages})
}

func (s *Server) getPayload(w http.ResponseWriter, r *http.Request) {
	f, ok := s.flowParam(w, r)
	if !ok {
		return
	}
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil || seq == 0 {
		apiError(w, http.StatusBadRequest, "message seq: a positive number")
		return
	}
	msgs, _ := s.opts.Source.Messages(f.ID, seq-1, 1)
	if len(msgs) == 0 || msgs[0].Seq != seq {
		apiError(w, http.StatusNotFound, fmt.Sprintf("flow %d has no kept message %d (evicted?)", f.ID, seq))
		return
	}
	m := msgs[0]
	p := m.Payload
	if r.URL.Query().Get("replacement") == "1" {
		p = m.Replacement
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("X-Hopscope-Length", strconv.FormatInt(m.Len, 10))
	if m.PayloadCut || m.Truncated {
		w.Header().Set("X-Hopscope-Truncated", "1")
	}
	if r.URL.Query().Get("download") == "1" {
		ext := ".bin"
		if m.Type == "text" {
			ext = ".txt"
		}
		w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="flow%d-message%d%s"`, f.ID, seq, ext))
	}
	_, _ = w.Write(p)
}

func (s *Server) getBody(w http.ResponseWriter, r *http.Request) {
	f, ok := s.flowParam(w, r)
	if !ok {
		return
	}
	if f.Exchange == nil {
		apiError(w, http.StatusNotFound, fmt.Sprintf("flow %d is not an HTTP exchange", f.ID))
		return
	}
	var b flow.Body
	var h http.Header
	switch r.PathValue("side") {
	case "request":
		b, h = f.Exchange.RequestBody, f.Exchange.RequestHeader
	case "response":
		b, h = f.Exchange.ResponseBody, f.Exchange.ResponseHeader
	default:
		apiError(w, http.StatusBadRequest, "body side: request or response")
		return
	}
	data := b.Data
	wh := w.Header()
	wh.Set("Content-Type", "application/octet-stream")
	if b.Truncated {
		wh.Set("X-Hopscope-Truncated", "1")
	}
	if enc := strings.Join(h.Values("Content-Encoding"), ", "); !contentcoding.Identity(enc) && r.URL.Query().Get("decode") != "0" {
		decoded, complete, err := contentcoding.Decode(data, enc, maxDecoded)
		switch {
		case err != nil:
			wh.Set("X-Hopscope-Decode-Error", err.Error())
		default:
			data = decoded
			wh.Set("X-Hopscope-Decoded", enc)
			if !complete {
				wh.Set("X-Hopscope-Truncated", "1")
			}
		}
	}
	if r.URL.Query().Get("download") == "1" {
		wh.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="flow%d-%s%s"`, f.ID, r.PathValue("side"), extensionFor(h.Get("Content-Type"))))
	}
	_, _ = w.Write(data)
}

func extensionFor(ct string) string {
	mt, _, _ := mime.ParseMediaType(ct)
	switch {
	case strings.HasSuffix(mt, "json"):
		return ".json"
	case mt == "text/html":
		return ".html"
	case strings.HasPrefix(mt, "text/"):
		return ".txt"
	}
	if exts, _ := mime.ExtensionsByType(mt); len(exts) > 0 {
		return exts[0]
	}
	return ".bin"
}

func (s *Server) clear(w http.ResponseWriter, _ *http.Request) {
	s.opts.Source.Clear()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) exportHAR(w http.ResponseWriter, r *http.Request) {
	if s.opts.HAR == nil {
		apiError(w, http.StatusNotImplemented, "HAR export is not available in this build")
		return
	}
	q := r.URL.Query().Get("q")
	if _, err := s.opts.Source.Flows(q, 1); err != nil {
		apiError(w, http.StatusBadRequest, err.Error()) // before the download starts
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", `attachment; filename="hopscope-`+time.Now().Format("20060102-150405")+`.har"`)
	if err := s.opts.HAR.Export(w, q); err != nil {
		s.opts.Log.Warn().Err(err).Str("event", "ui_har_export").Msg("HAR export failed")
	}
}

func (s *Server) importHAR(w http.ResponseWriter, r *http.Request) {
	if s.opts.HAR == nil {
		apiError(w, http.StatusNotImplemented, "HAR import is not available in this build")
		return
	}
	n, err := s.opts.HAR.Import(http.MaxBytesReader(w, r.Body, maxImport))
	if err != nil {
		apiError(w, http.StatusBadRequest, "importing HAR: "+err.Error())
		return
	}
	writeJSON(w, map[string]int{"imported": n})
}
