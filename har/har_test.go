package har

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/andybalholm/brotli"

	"github.com/hopscope/hopscope/flow"
	"github.com/hopscope/hopscope/store"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var t0 = time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)

func gzipped(t *testing.T, s string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write([]byte(s))
	zw.Close()
	return buf.Bytes()
}

// sample fills a store with one flow of each sort, at fixed times, so its
// HAR is the same on every run.
func sample(t *testing.T) *store.Store {
	t.Helper()
	bus := flow.NewBus()
	st := store.New(store.Options{Now: func() time.Time { return t0 }})
	client := flow.Client{Conn: 7, Addr: "127.0.0.1:50122"}
	var recs []flow.Record

	body := gzipped(t, `{"users":["ada","grace"]}`)
	get := &flow.Exchange{
		ID: bus.NextID(), Client: client, Method: "GET", URL: "http://api.example/users?page=2&sort=name#top", Proto: "HTTP/1.1",
		RequestHeader: http.Header{"Accept-Encoding": {"gzip"}, "Cookie": {"session=abc; theme=dark"}, "Connection": {"keep-alive"}},
		RequestBody:   flow.Body{Len: 0},
		Status:        200, ResponseHeader: http.Header{"Content-Type": {"application/json"}, "Content-Encoding": {"gzip"}, "Set-Cookie": {"seen=1; Path=/"}},
		ResponseBody: flow.Body{Data: body, Len: int64(len(body)), SHA256: "deadbeef"},
		Start:        t0, FirstByte: 4 * time.Millisecond, Duration: 6 * time.Millisecond, AnsweredBy: "destination",
	}
	recs = append(recs, flow.Record{Kind: flow.KindExchange, Exchange: get})

	tun := &flow.Tunnel{ID: bus.NextID(), Client: client, Host: "secure.example", Port: 443, Mode: "bump", Status: 200,
		BytesUp: 900, BytesDown: 5000, Start: t0.Add(10 * time.Millisecond), Duration: 2 * time.Second,
		SNI: "secure.example", TLSVersion: "TLS 1.3", ALPN: "http/1.1", Leaf: "minted"}
	recs = append(recs, flow.Record{Kind: flow.KindTunnel, Tunnel: tun})
	post := &flow.Exchange{
		ID: bus.NextID(), Client: client, Tunnel: tun.ID, Bumped: true, Method: "POST", URL: "https://secure.example/upload", Proto: "HTTP/1.1",
		RequestHeader: http.Header{"Content-Type": {"application/octet-stream"}},
		RequestBody:   flow.Body{Data: []byte{0xff, 0x00, 0x10}, Len: 3},
		Status:        413, ResponseHeader: http.Header{"Content-Type": {"text/plain"}},
		ResponseBody: flow.Body{Data: []byte("too big"), Len: 4 << 20, Truncated: true, SHA256: "cafe"},
		Start:        t0.Add(20 * time.Millisecond), FirstByte: time.Millisecond, Duration: 3 * time.Millisecond, AnsweredBy: "destination",
	}
	recs = append(recs, flow.Record{Kind: flow.KindExchange, Exchange: post})

	hs := &flow.Exchange{
		ID: bus.NextID(), Client: client, Method: "GET", URL: "http://chat.example/socket", Proto: "HTTP/1.1",
		RequestHeader:  http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}, "Sec-Websocket-Version": {"13"}},
		Status:         101,
		ResponseHeader: http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}},
		Start:          t0.Add(30 * time.Millisecond), FirstByte: 2 * time.Millisecond, Duration: 2 * time.Millisecond, AnsweredBy: "destination",
	}
	ss := &flow.WSSession{ID: bus.NextID(), Client: client, Exchange: hs.ID, URL: "ws://chat.example/socket", Path: "forward",
		Extensions: "permessage-deflate", Start: hs.Start.Add(2 * time.Millisecond)}
	hs.WebSocket = ss.ID
	recs = append(recs, flow.Record{Kind: flow.KindExchange, Exchange: hs}, flow.Record{Kind: flow.KindWSOpen, Session: ss})
	msg := func(seq uint64, from flow.Side, op flow.Opcode, payload string, at time.Duration) flow.WSMessage {
		return flow.WSMessage{Session: ss.ID, Seq: seq, Time: ss.Start.Add(at), From: from, Opcode: op,
			Len: int64(len(payload)), WireLen: int64(len(payload)) + 6, PayloadLen: int64(len(payload)), Fragments: 1,
			Action: "pass", Payload: []byte(payload)}
	}
	m1 := msg(1, flow.FromClient, flow.OpText, "Hello, WebSockets!", 100*time.Millisecond)
	m2 := msg(2, flow.FromServer, flow.OpBinary, "\x00\x01\x02\xaa", 250*time.Millisecond)
	m2.Compressed, m2.PayloadLen, m2.WireLen = true, 3, 5
	m3 := msg(3, flow.FromClient, flow.OpText, "my password is hunter2", 300*time.Millisecond)
	m3.Action, m3.Rule = "drop", "no-secrets"
	m4 := msg(4, flow.FromServer, flow.OpText, "cats rule", 400*time.Millisecond)
	m4.Action, m4.Rule, m4.Replacement = "rewrite", "rules[1]", []byte("dogs rule")
	m5 := msg(5, flow.FromClient, flow.OpPing, "hb", 500*time.Millisecond)
	m6 := msg(6, flow.FromClient, flow.OpClose, "\x03\xe8bye", 600*time.Millisecond)
	m6.CloseCode, m6.CloseReason = 1000, "bye"
	for _, m := range []flow.WSMessage{m1, m2, m3, m4, m5, m6} {
		recs = append(recs, flow.Record{Kind: flow.KindWSMessage, Message: m})
	}
	recs = append(recs, flow.Record{Kind: flow.KindFault, Fault: &flow.Fault{Client: client, Flow: ss.ID, Fault: "ws-delay", Spec: "ws-delay=50ms", From: "client", Detail: "held 50ms", Message: 1, Time: m1.Time}})
	closed := *ss
	closed.Code, closed.Reason, closed.ClosedBy, closed.Duration, closed.CloseHandshake = 1000, "bye", "client", 700*time.Millisecond, true
	closed.ClientMessages, closed.ClientBytes, closed.ServerMessages, closed.ServerBytes = 4, 47, 2, 13
	recs = append(recs, flow.Record{Kind: flow.KindWSClose, Session: &closed})

	recs = append(recs, flow.Record{Kind: flow.KindDenial, Denial: &flow.Denial{Client: client, Flow: bus.NextID(), Method: "CONNECT",
		Target: "evil.example:8443", Rule: "connect-ports=443", Reason: "port 8443 is not in the CONNECT port list 443",
		Hint: "To allow it, start hopscope with --connect-ports 443,8443.", Status: 403, Time: t0.Add(time.Second)}})
	st.Observe(recs)
	return st
}

func export(t *testing.T, st *store.Store) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, st, Options{Version: "test"}); err != nil {
		t.Fatalf("Write: %v", err)
	}
	return buf.Bytes()
}

// TestExportIsHAR12 checks every object of the export against the HAR 1.2
// structure: required fields present with their JSON types.
func TestExportIsHAR12(t *testing.T) {
	raw := export(t, sample(t))
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("export is not JSON: %v\n%s", err, raw)
	}
	for _, problem := range Validate(raw) {
		t.Error(problem)
	}
	entries := doc["log"].(map[string]any)["entries"].([]any)
	if len(entries) != 3 {
		t.Fatalf("%d entries, want 3 (GET, bumped POST, WebSocket)", len(entries))
	}
}

func TestValidatorCatchesBrokenHAR(t *testing.T) {
	var doc map[string]any
	json.Unmarshal(export(t, sample(t)), &doc)
	entry := doc["log"].(map[string]any)["entries"].([]any)[0].(map[string]any)
	delete(entry["request"].(map[string]any), "httpVersion")
	entry["time"] = "6"
	problems := strings.Join(validateDoc(doc), "\n")
	for _, want := range []string{"entries[0].request: httpVersion missing", "entries[0].time: want number"} {
		if !strings.Contains(problems, want) {
			t.Errorf("validator missed %q; said:\n%s", want, problems)
		}
	}
}

func TestExportContent(t *testing.T) {
	h, err := Read(bytes.NewReader(export(t, sample(t))))
	if err != nil {
		t.Fatal(err)
	}
	get, post, ws := h.Log.Entries[0], h.Log.Entries[1], h.Log.Entries[2]

	// The GET: fragment dropped from the URL, query and cookies split out,
	// the gzip body decoded.
	if get.Request.URL != "http://api.example/users?page=2&sort=name" {
		t.Errorf("url %q", get.Request.URL)
	}
	if !reflect.DeepEqual(get.Request.QueryString, []NameValue{{"page", "2"}, {"sort", "name"}}) {
		t.Errorf("queryString %v", get.Request.QueryString)
	}
	if !reflect.DeepEqual(get.Request.Cookies, []NameValue{{"session", "abc"}, {"theme", "dark"}}) || !reflect.DeepEqual(get.Response.Cookies, []NameValue{{"seen", "1"}}) {
		t.Errorf("cookies %v / %v", get.Request.Cookies, get.Response.Cookies)
	}
	c := get.Response.Content
	if c.Text != `{"users":["ada","grace"]}` || c.Encoding != "" || c.Size != 25 || c.Compression != 25-get.Response.BodySize || c.MimeType != "application/json" {
		t.Errorf("content %+v (bodySize %d)", c, get.Response.BodySize)
	}
	if get.Timings.Wait != 4 || get.Timings.Receive != 2 || get.Time != 6 {
		t.Errorf("timings %+v time %v", get.Timings, get.Time)
	}

	// The bumped POST: binary post data in base64, the cut response said
	// so, the tunnel's TLS facts beside it.
	if pd := post.Request.PostData; pd == nil || pd.Text != "/wAQ" || pd.Encoding != "base64" {
		t.Errorf("postData %+v", pd)
	}
	if b := post.X.ResponseBody; b == nil || !b.Truncated || b.Len != 4<<20 || b.Kept != 7 || b.SHA256 != "cafe" {
		t.Errorf("response body info %+v", b)
	}
	if tun := post.X.Tunnel; tun == nil || tun.Mode != "bump" || tun.SNI != "secure.example" || tun.TLSVersion != "TLS 1.3" || !post.X.Bumped {
		t.Errorf("tunnel info %+v", tun)
	}

	// The WebSocket: Chrome's shape, hopscope's facts beside.
	if ws.ResourceType != "websocket" || ws.Request.URL != "ws://chat.example/socket" || ws.Response.Status != 101 {
		t.Errorf("websocket entry %q %q %d", ws.ResourceType, ws.Request.URL, ws.Response.Status)
	}
	msgs := *ws.WebSocket
	type m struct {
		Type   string
		Opcode int
		Data   string
	}
	var got []m
	for _, x := range msgs {
		got = append(got, m{x.Type, x.Opcode, x.Data})
	}
	want := []m{
		{"send", 1, "Hello, WebSockets!"},
		{"receive", 2, "AAECqg=="},
		{"send", 1, "my password is hunter2"},
		{"receive", 1, "cats rule"},
		{"send", 9, "aGI="},
		{"send", 8, "A+hieWU="},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("messages\n got %v\nwant %v", got, want)
	}
	if msgs[0].Time != EpochSeconds(float64(t0.Add(132*time.Millisecond).UnixMicro())/1e6) {
		t.Errorf("first message time %v", msgs[0].Time)
	}
	if x := msgs[2].X; x.Action != "drop" || x.Rule != "no-secrets" || x.Seq != 3 {
		t.Errorf("dropped message facts %+v", x)
	}
	if x := msgs[3].X; x.Action != "rewrite" || x.Replacement != "dogs rule" {
		t.Errorf("rewritten message facts %+v", x)
	}
	if x := msgs[1].X; !x.Compressed || x.PayloadLen != 3 || x.Len != 4 {
		t.Errorf("compressed message facts %+v", x)
	}
	if x := msgs[5].X; x.CloseCode != 1000 || x.CloseReason != "bye" {
		t.Errorf("close facts %+v", x)
	}
	if s := ws.X.Session; s == nil || s.Code != 1000 || s.ClosedBy != "client" || s.ClientMessages != 4 || s.Extensions != "permessage-deflate" {
		t.Errorf("session facts %+v", s)
	}
	if len(ws.X.Faults) != 1 || ws.X.Faults[0].Fault != "ws-delay" || ws.X.Messages.Dropped != 1 || ws.X.Messages.Rewritten != 1 {
		t.Errorf("faults %+v, message stats %+v", ws.X.Faults, ws.X.Messages)
	}

	// Flows that are not exchanges are on the log.
	x := h.Log.X
	if len(x.Tunnels) != 1 || x.Tunnels[0].Host != "secure.example" || len(x.Denials) != 1 || x.Denials[0].Rule != "connect-ports=443" ||
		x.Denials[0].Hint != "To allow it, start hopscope with --connect-ports 443,8443." {
		t.Errorf("log extras %+v", x)
	}
	if x.Store == nil || x.Store.Flows != 5 {
		t.Errorf("store info %+v", x.Store)
	}
}

// chromeKeysNotWritten are the fields of Chrome's entries that hopscope
// does not write: they describe the browser (its initiator, priority,
// cache, connection pool), not the wire a proxy sees. Optional in HAR.
var chromeKeysNotWritten = map[string][]string{
	"entry":    {"_connectionId", "_initiator", "_priority", "serverIPAddress"},
	"response": {"_transferSize", "_error"},
	"timings":  {"_blocked_queueing"},
}

// TestWebSocketEntryMatchesChrome compares hopscope's WebSocket entry with
// Chrome's (testdata/chrome-websocket.har) field by field: every field
// Chrome writes is there with the same JSON type, but for the listed
// browser-only ones; messages have exactly Chrome's four fields, plus
// "_hopscope".
func TestWebSocketEntryMatchesChrome(t *testing.T) {
	chromeRaw, err := os.ReadFile(filepath.Join("testdata", "chrome-websocket.har"))
	if err != nil {
		t.Fatal(err)
	}
	var chrome, ours map[string]any
	if err := json.Unmarshal(chromeRaw, &chrome); err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(export(t, sample(t)), &ours)
	chromeEntry := chrome["log"].(map[string]any)["entries"].([]any)[0].(map[string]any)
	oursEntry := ours["log"].(map[string]any)["entries"].([]any)[2].(map[string]any)

	compare := func(where string, c, o map[string]any, skip []string) {
		for k, cv := range c {
			if slices.Contains(skip, k) {
				if _, ok := o[k]; ok {
					t.Errorf("%s.%s: listed as not written, but written", where, k)
				}
				continue
			}
			ov, ok := o[k]
			if !ok {
				t.Errorf("%s.%s: Chrome writes it, hopscope does not", where, k)
				continue
			}
			if jsonType(cv) != jsonType(ov) {
				t.Errorf("%s.%s: Chrome writes a %s, hopscope a %s", where, k, jsonType(cv), jsonType(ov))
			}
		}
	}
	compare("entry", chromeEntry, oursEntry, chromeKeysNotWritten["entry"])
	for _, part := range []string{"request", "response", "timings", "cache"} {
		compare(part, chromeEntry[part].(map[string]any), oursEntry[part].(map[string]any), chromeKeysNotWritten[part])
	}
	compare("response.content", chromeEntry["response"].(map[string]any)["content"].(map[string]any),
		oursEntry["response"].(map[string]any)["content"].(map[string]any), nil)
	if oursEntry["_resourceType"] != "websocket" {
		t.Errorf("_resourceType %v", oursEntry["_resourceType"])
	}
	chromeMsg := chromeEntry["_webSocketMessages"].([]any)[0].(map[string]any)
	for i, m := range oursEntry["_webSocketMessages"].([]any) {
		om := m.(map[string]any)
		var keys []string
		for k := range om {
			if k != "_hopscope" {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		if !reflect.DeepEqual(keys, []string{"data", "opcode", "time", "type"}) {
			t.Errorf("message %d has fields %v, Chrome's are data, opcode, time, type", i, keys)
		}
		compare("message", chromeMsg, om, nil)
	}
}

// TestChromeHARRoundTrips imports Chrome's file and exports it again: the
// messages come back exactly as Chrome wrote them (mitmproxy drops them on
// import).
func TestChromeHARRoundTrips(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "chrome-websocket.har"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, err := Read(f)
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(store.Options{})
	stats := Import(st, h)
	if stats.Entries != 1 || stats.WebSockets != 1 || stats.Messages != 4 || stats.Skipped != 0 {
		t.Fatalf("import stats %+v", stats)
	}
	p, _ := st.List(store.Query{Filter: "msg:hello type:websocket"})
	if len(p.Flows) != 1 || p.Flows[0].Host != "echo.example" || p.Flows[0].Messages != 4 || p.Flows[0].Open {
		t.Fatalf("imported flow: %+v", p.Flows)
	}
	again := Build(st.Export(), st.Stats(), Options{})
	got := *again.Log.Entries[0].WebSocket
	for i := range got {
		got[i].X = nil
	}
	want := *h.Log.Entries[0].WebSocket
	if !reflect.DeepEqual(got, want) {
		t.Errorf("messages after import and export:\n got %+v\nwant %+v", got, want)
	}
	if u := again.Log.Entries[0].Request.URL; u != "wss://echo.example/socket?room=7" {
		t.Errorf("url %q", u)
	}
}

// TestRoundTripKeepsHopscopeFacts exports, imports into a fresh store and
// compares what the UI would show.
func TestRoundTripKeepsHopscopeFacts(t *testing.T) {
	orig := sample(t)
	h, err := Read(bytes.NewReader(export(t, orig)))
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(store.Options{})
	stats := Import(st, h)
	if stats.Entries != 3 || stats.Messages != 6 || stats.Tunnels != 1 {
		t.Errorf("import stats %+v", stats)
	}
	type row struct {
		Type                                 store.Type
		Method, Host, Path                   string
		Status                               int
		Messages, Dropped, Rewritten, Faults int64
		Bumped, Truncated                    bool
		Rule                                 string
	}
	rows := func(s *store.Store) []row {
		p, _ := s.List(store.Query{})
		var out []row
		for _, f := range p.Flows {
			out = append(out, row{f.Type, f.Method, f.Host, f.Path, f.Status, f.Messages, f.Dropped, f.Rewritten, int64(f.Faults), f.Bumped, f.Truncated, f.Rule})
		}
		slices.SortFunc(out, func(a, b row) int { return strings.Compare(a.Host+a.Path+string(a.Type), b.Host+b.Path+string(b.Type)) })
		return out
	}
	if got, want := rows(st), rows(orig); !reflect.DeepEqual(got, want) {
		t.Errorf("after a round trip:\n got %+v\nwant %+v", got, want)
	}
	// The denial still says how to allow it.
	dp, _ := st.List(store.Query{Filter: "type:denied"})
	if len(dp.Flows) != 1 {
		t.Fatalf("denied flows %+v", dp.Flows)
	}
	if df, _ := st.Get(dp.Flows[0].ID); df.Denial == nil || df.Denial.Hint != "To allow it, start hopscope with --connect-ports 443,8443." {
		t.Errorf("imported denial %+v", df.Denial)
	}
	// The exchange inside the tunnel still points at it.
	p, _ := st.List(store.Query{Filter: "method:POST"})
	if len(p.Flows) != 1 || p.Flows[0].Tunnel == 0 {
		t.Fatalf("POST %+v", p.Flows)
	}
	if tf, ok := st.Get(p.Flows[0].Tunnel); !ok || tf.Type != store.TypeBumped {
		t.Errorf("the POST's tunnel %v is not the bumped tunnel: %+v", ok, tf.Summary)
	}
	// Messages keep their payloads, replacements and close codes.
	ws, _ := st.List(store.Query{Filter: "type:websocket"})
	page, _, _ := st.Messages(ws.Flows[0].ID, store.MessageQuery{})
	if m := page.Messages[1]; string(m.Payload) != "\x00\x01\x02\xaa" || !m.Compressed || m.Type != "binary" {
		t.Errorf("binary message %+v", m)
	}
	if m := page.Messages[3]; string(m.Replacement) != "dogs rule" || m.Action != "rewrite" {
		t.Errorf("rewritten message %+v", m)
	}
	if m := page.Messages[5]; m.CloseCode != 1000 || m.From != "client" {
		t.Errorf("close %+v", m)
	}
	// The decoded gzip body is held without its Content-Encoding.
	g, _ := st.List(store.Query{Filter: "host:api.example"})
	f, _ := st.Get(g.Flows[0].ID)
	if string(f.Exchange.ResponseBody.Data) != `{"users":["ada","grace"]}` || f.Exchange.ResponseHeader.Get("Content-Encoding") != "" {
		t.Errorf("imported body %q, encoding %q", f.Exchange.ResponseBody.Data, f.Exchange.ResponseHeader.Get("Content-Encoding"))
	}
}

func TestGolden(t *testing.T) {
	raw := export(t, sample(t))
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, raw, "", "  "); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "websocket.golden.har")
	if *update {
		if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(pretty.Bytes(), want) {
		t.Errorf("export differs from %s; run go test ./har -run TestGolden -update and read the diff", path)
	}
}

func TestReadRejectsWhatIsNotHAR(t *testing.T) {
	for _, in := range []string{``, `[]`, `{"foo":1}`, `{"log":`} {
		if _, err := Read(strings.NewReader(in)); err == nil {
			t.Errorf("Read(%q) accepted it", in)
		}
	}
}

func TestMessageTimeAcceptsStrings(t *testing.T) {
	var m Message
	if err := json.Unmarshal([]byte(`{"type":"send","time":"2026-12-03T10:00:00.5Z","opcode":1,"data":"x"}`), &m); err != nil {
		t.Fatal(err)
	}
	if !m.Time.Time().Equal(t0.Add(500 * time.Millisecond)) {
		t.Errorf("time %v", m.Time.Time())
	}
	if err := json.Unmarshal([]byte(`{"time":true}`), &m); err == nil {
		t.Error("a boolean time was accepted")
	}
}

func TestTrimPartialRune(t *testing.T) {
	for in, want := range map[string]string{"abc": "abc", "h\xc3\xa9": "h\xc3\xa9", "h\xc3": "h", "\xe2\x82": "", "x\xf0\x9f\x98": "x", "": ""} {
		if got := string(trimPartialRune([]byte(in))); got != want {
			t.Errorf("trimPartialRune(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestContentCodings(t *testing.T) {
	text := strings.Repeat("hello brotli ", 50)
	var br bytes.Buffer
	bw := brotli.NewWriter(&br)
	bw.Write([]byte(text))
	bw.Close()
	gz := gzipped(t, text)
	st := store.New(store.Options{})
	bus := flow.NewBus()
	ex := func(enc string, body []byte, truncated bool) flow.Record {
		return flow.Record{Kind: flow.KindExchange, Exchange: &flow.Exchange{
			ID: bus.NextID(), Method: "GET", URL: "http://c.example/" + enc, Proto: "HTTP/1.1", Status: 200, Start: t0,
			ResponseHeader: http.Header{"Content-Encoding": {enc}, "Content-Type": {"text/plain"}},
			ResponseBody:   flow.Body{Data: body, Len: int64(len(body)) * 2, Truncated: truncated},
		}}
	}
	st.Observe([]flow.Record{ex("br", br.Bytes(), false), ex("gzip", gz[:len(gz)/2], true)})
	h := Build(st.Export(), st.Stats(), Options{})
	whole, cut := h.Log.Entries[0], h.Log.Entries[1]
	if c := whole.Response.Content; c.Text != text || c.Encoding != "" || whole.X.ContentEncoding != "" {
		t.Errorf("br body: text %.20q encoding %q still %q", c.Text, c.Encoding, whole.X.ContentEncoding)
	}
	if c := cut.Response.Content; c.Encoding != "base64" || cut.X.ContentEncoding != "gzip" {
		t.Errorf("cut gzip body: encoding %q still %q", c.Encoding, cut.X.ContentEncoding)
	}
}
