package ui

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/hopscope/hopscope/flow"
	"github.com/hopscope/hopscope/store"
)

// sampleFlows is one flow of every kind the list shows, and a WebSocket
// session with every kind of message mark.
func sampleFlows(src *fakeSource) {
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.Local)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	jsonBody := []byte(`{"user":{"id":42,"name":"Ada"},"roles":["admin","dev"],"active":true}`)
	src.add(Flow{ID: 1, Exchange: &flow.Exchange{ID: 1, Method: "GET", URL: "http://app.test/api/me", Proto: "HTTP/1.1", Status: 200,
		Client:         flow.Client{Addr: "127.0.0.1:50122"},
		RequestHeader:  http.Header{"Accept": {"application/json"}, "Connection": {"keep-alive"}, "Proxy-Connection": {"keep-alive"}, "User-Agent": {"Mozilla/5.0"}},
		ResponseHeader: http.Header{"Content-Type": {"application/json"}, "Content-Length": {"71"}, "Keep-Alive": {"timeout=5"}},
		ResponseBody:   flow.Body{Data: jsonBody, Len: int64(len(jsonBody))},
		Start:          at(0), FirstByte: 3 * time.Millisecond, Duration: 4 * time.Millisecond, AnsweredBy: "destination"}})
	src.add(Flow{ID: 2, Tunnel: &flow.Tunnel{ID: 2, Host: "shop.test", Port: 443, Mode: "bump", Status: 200, SNI: "shop.test", TLSVersion: "TLS 1.3",
		BytesUp: 2100, BytesDown: 48000, Start: at(40), Duration: 900 * time.Millisecond}})
	src.add(Flow{ID: 3, Exchange: &flow.Exchange{ID: 3, Tunnel: 2, Bumped: true, Method: "POST", URL: "https://shop.test/cart?item=7", Status: 201,
		RequestHeader: http.Header{"Content-Type": {"application/json"}}, ResponseHeader: http.Header{"Content-Type": {"text/html; charset=utf-8"}},
		ResponseBody: flow.Body{Data: []byte("<p>ok</p>"), Len: 9}, Start: at(60), FirstByte: 30 * time.Millisecond, Duration: 31 * time.Millisecond}})
	src.add(Flow{ID: 4, Denial: &flow.Denial{Method: "CONNECT", Target: "internal.test:8443", Rule: "connect-ports=443", Status: 403,
		Reason: "port 8443 is not in the CONNECT port list 443", Hint: "To allow it, start hopscope with --connect-ports 443,8443.", Time: at(80)}})
	src.add(Flow{ID: 5, Tunnel: &flow.Tunnel{ID: 5, Host: "pinned.test", Port: 443, Mode: "splice", Status: 200, BytesUp: 800, BytesDown: 5200, Start: at(90), Duration: 2 * time.Second}})
	src.add(Flow{ID: 6, Open: true, Exchange: &flow.Exchange{ID: 6, Method: "GET", URL: "http://chat.test/socket", Status: 101, WebSocket: 7,
		RequestHeader:  http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}, "Sec-Websocket-Extensions": {"permessage-deflate"}},
		ResponseHeader: http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}}, Start: at(100), FirstByte: 2 * time.Millisecond},
		Session: &flow.WSSession{ID: 7, Exchange: 6, URL: "http://chat.test/socket", Path: "forward", Extensions: "permessage-deflate", Start: at(102)},
		Faults:  []flow.Fault{{Flow: 7, Fault: "ws-drop", Spec: "ws-drop=0.1", From: "server", Detail: "dropped a message", Message: 5, Time: at(1500)}}})
	msgs := []Message{
		{Time: at(200), From: "client", Type: "text", Opcode: 1, Len: 32, WireLen: 30, PayloadLen: 24, Fragments: 1, Compressed: true, Action: "pass", Payload: []byte(`{"op":"join","room":"general"}`)},
		{Time: at(230), From: "server", Type: "text", Opcode: 1, Len: 45, WireLen: 40, PayloadLen: 38, Fragments: 1, Compressed: true, Action: "pass", Payload: []byte(`{"op":"joined","room":"general","members":3}`)},
		{Time: at(900), From: "client", Type: "text", Opcode: 1, Len: 11, WireLen: 17, PayloadLen: 11, Fragments: 3, Action: "pass", Payload: []byte("hello world")},
		{Time: at(1000), From: "server", Type: "ping", Opcode: 9, Len: 4, WireLen: 6, PayloadLen: 4, Fragments: 1, Action: "pass", Payload: []byte("beat")},
		{Time: at(1001), From: "client", Type: "pong", Opcode: 10, Len: 4, WireLen: 10, PayloadLen: 4, Fragments: 1, Action: "pass", Payload: []byte("beat")},
		{Time: at(1400), From: "client", Type: "text", Opcode: 1, Len: 22, WireLen: 28, PayloadLen: 22, Fragments: 1, Action: "drop", Rule: "no-secrets", Payload: []byte("my password is hunter2")},
		{Time: at(1500), From: "server", Type: "binary", Opcode: 2, Len: 8, WireLen: 10, PayloadLen: 8, Fragments: 1, Action: "pass", Payload: []byte{0, 1, 2, 3, 0xde, 0xad, 0xbe, 0xef}},
		{Time: at(1600), From: "server", Type: "text", Opcode: 1, Len: 16, WireLen: 18, PayloadLen: 16, Fragments: 1, Action: "rewrite", Rule: "mask", Payload: []byte(`{"token":"abc"}`), Replacement: []byte(`{"token":"***"}`)},
		{Time: at(2000), From: "client", Type: "close", Opcode: 8, Len: 5, WireLen: 11, PayloadLen: 5, Fragments: 1, Action: "pass", CloseCode: 1000, CloseReason: "bye"},
	}
	for _, m := range msgs {
		src.addMessage(6, m)
	}
}

// Every kind of flow renders with its badge, and the WebSocket timeline
// shows both directions, control frames, rule actions and faults.
func TestBrowserRendersEveryKindOfFlow(t *testing.T) {
	chromiumPath(t)
	src := newFakeSource()
	sampleFlows(src)
	tab := openFakeUI(t, src)
	eventually(t, tab, "six rows", `document.querySelectorAll("#rows tr").length === 6`)
	eventually(t, tab, "badges", `["HTTP","TUNNEL","HTTPS","DENIED","WS"].every(b => [...document.querySelectorAll("#rows .badge")].some(e => e.innerText.toUpperCase() === b))`)
	eventually(t, tab, "the denial's rule", `document.querySelector("#rows tr.denied").innerText.includes("connect-ports=443")`)
	// What the page hides stays out of view: the detail pane until a flow
	// is chosen, and the interception button when the engine is off (the
	// fake source has none). A display rule must not beat the hidden
	// attribute.
	eventually(t, tab, "no detail pane before a flow is chosen", `getComputedStyle(document.querySelector("#detail")).display === "none" && getComputedStyle(document.querySelector("#splitter")).display === "none"`)
	eventually(t, tab, "no Intercept button without the engine", `(() => { const b = document.querySelector("#ix-toggle"); return !!b && b.hidden && getComputedStyle(b).display === "none"; })()`)
	if err := chromedp.Do(tab, chromedp.Click(chromedp.CSS(`#rows tr[data-id="4"]`))); err != nil {
		t.Fatal(err)
	}
	eventually(t, tab, "no Copy as curl for a denied CONNECT", `getComputedStyle(document.querySelector("#detail")).display !== "none" && getComputedStyle(document.querySelector("#curl")).display === "none"`)
	eventually(t, tab, "how to allow the denied CONNECT", `(() => { const b = document.querySelector("#detail .denial-box"); return !!b && b.innerText.includes("port 8443 is not in the CONNECT port list 443") && b.querySelector(".denial-hint").innerText === "To allow it, start hopscope with --connect-ports 443,8443."; })()`)
	screenshot(t, tab, "ui-denial")
	if err := chromedp.Do(tab, chromedp.Click(chromedp.CSS(`#rows tr[data-id="6"]`))); err != nil {
		t.Fatal(err)
	}
	eventually(t, tab, "the timeline", `document.querySelectorAll(".ws-list tr[data-seq]").length === 9`)
	eventually(t, tab, "arrows both ways", `document.querySelectorAll(".ws-list td.dir-client").length === 5 && document.querySelectorAll(".ws-list td.dir-server").length === 4`)
	eventually(t, tab, "marks", `["dropped","rewritten"].every(a => document.querySelector(".ws-list").innerText.toLowerCase().includes(a)) && document.querySelector(".ws-list").innerText.includes("1000 “bye”") && document.querySelector(".ws-list").innerText.includes("fault ws-drop")`)
	// The timeline follows the session live.
	src.addMessage(6, Message{Time: time.Now(), From: "server", Type: "text", Opcode: 1, Len: 9, WireLen: 11, PayloadLen: 9, Fragments: 1, Action: "pass", Payload: []byte("live news")})
	eventually(t, tab, "a message arriving live", `document.querySelectorAll(".ws-list tr[data-seq]").length === 10 && document.querySelector(".ws-list tbody tr:last-child").innerText.includes("live news")`)
	eventually(t, tab, "compressed size", `document.querySelector(".ws-list").innerText.includes("deflate 24 B")`)
	eventually(t, tab, "fragments", `document.querySelector(".ws-list .frag").innerText === "×3"`)
	if err := chromedp.Do(tab, chromedp.Click(chromedp.CSS(`.ws-list tr[data-seq="2"]`))); err != nil {
		t.Fatal(err)
	}
	eventually(t, tab, "pretty JSON of the inflated payload", `document.querySelector(".ws-detail pre") && document.querySelector(".ws-detail pre").innerText.includes('"members": 3')`)
	screenshot(t, tab, "ui-websocket")
	// Session filter.
	if err := chromedp.Do(tab, chromedp.SendKeys(chromedp.CSS(`.ws-bar input[type=search]`), "hello")); err != nil {
		t.Fatal(err)
	}
	eventually(t, tab, "filter within the session", `document.querySelectorAll(".ws-list tr[data-seq]").length === 1 && document.querySelector(".ws-list .hl").innerText === "hello"`)
	if err := chromedp.Do(tab, chromedp.Click(chromedp.CSS(`#rows tr[data-id="1"]`))); err != nil {
		t.Fatal(err)
	}
	eventually(t, tab, "hop-by-hop marks", `document.querySelectorAll("#tab-body tr.hop").length === 3`)
	screenshot(t, tab, "ui-headers")
	// A bumped tunnel lists what was read inside it, one click away.
	if err := chromedp.Do(tab, chromedp.Click(chromedp.CSS(`#rows tr[data-id="2"]`))); err != nil {
		t.Fatal(err)
	}
	eventually(t, tab, "the tunnel's exchanges", `document.querySelector("#tab-body").textContent.includes("Inside this tunnel") && document.querySelector("#tab-body a.flow-link") !== null`)
	evalTrue(t, tab, `document.querySelector("#tab-body a.flow-link").click() || true`)
	eventually(t, tab, "the exchange inside", `document.querySelector("#d-url").innerText === "https://shop.test/cart?item=7" && document.querySelector("#tab-body a.flow-link").innerText.includes("CONNECT")`)
}

// A session chattier than a browser can read: the stream drops what the
// page cannot take and says so, the page reloads, and the timeline still
// ends at the newest message with its size bounded.
func TestBrowserFollowsAChattySession(t *testing.T) {
	chromiumPath(t)
	st := store.New(store.Options{})
	s, ts := newTestUI(t, StoreSource(st), Options{})
	start := time.Now()
	st.Observe([]flow.Record{
		{Kind: flow.KindExchange, Exchange: &flow.Exchange{ID: 1, Method: "GET", URL: "http://chatty.test/feed", Status: 101, WebSocket: 2, Start: start}},
		{Kind: flow.KindWSOpen, Session: &flow.WSSession{ID: 2, Exchange: 1, URL: "http://chatty.test/feed", Path: "forward", Start: start}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	tab := startBrowser(t, ctx, browserOptions{})
	do(t, tab, "opening the UI", chromedp.Navigate(s.URL(ts.URL)))
	eventually(t, tab, "the session row", `document.querySelector('#rows tr[data-id="1"]') !== null`)
	// A burst of exchanges: every row arrives, live.
	const burst = 1000
	var recs []flow.Record
	for i := 0; i < burst; i++ {
		id := flow.ID(100 + i)
		recs = append(recs, flow.Record{Kind: flow.KindExchange, Exchange: &flow.Exchange{ID: id, Method: "GET", URL: fmt.Sprintf("http://burst.test/item/%d", i), Status: 200, Start: start}})
		if len(recs) == 250 {
			st.Observe(recs)
			recs = nil
		}
	}
	eventually(t, tab, "every row of the burst", fmt.Sprintf(`document.querySelectorAll("#rows tr").length === %d`, burst+1))
	do(t, tab, "opening the session", chromedp.Click(chromedp.CSS(`#rows tr[data-id="1"]`)))
	eventually(t, tab, "the timeline", `document.querySelector(".ws-list") !== null`)
	const total = 20000
	pubStart := time.Now()
	batch := make([]flow.Record, 0, 500)
	for seq := uint64(1); seq <= total; seq++ {
		p := []byte(fmt.Sprintf(`{"tick":%d}`, seq))
		batch = append(batch, flow.Record{Kind: flow.KindWSMessage, Message: flow.WSMessage{Session: 2, Seq: seq, Time: start.Add(time.Duration(seq) * time.Millisecond),
			From: flow.FromServer, Opcode: flow.OpText, Len: int64(len(p)), WireLen: int64(len(p) + 2), PayloadLen: int64(len(p)), Fragments: 1, Action: "pass", Payload: p}})
		if len(batch) == cap(batch) {
			st.Observe(batch)
			batch = batch[:0]
		}
	}
	published := time.Now()
	defer func() {
		t.Logf("%d messages published in %v; the page showed the newest %v after", total, published.Sub(pubStart), time.Since(published))
	}()
	eventually(t, tab, "the newest message", fmt.Sprintf(`(() => { const r = document.querySelector(".ws-list tbody tr:last-child"); return r && r.innerText.includes('{"tick":%d}'); })()`, total))
	// Settled (a reload after dropped changes may still be on its way):
	// the newest last, the page's size bounded.
	eventually(t, tab, "a bounded timeline ending at the newest", fmt.Sprintf(`(() => { const rows = document.querySelectorAll(".ws-list tr[data-seq]"); const r = document.querySelector(".ws-list tbody tr:last-child"); return rows.length >= 100 && rows.length <= 5500 && r && r.innerText.includes('{"tick":%d}'); })()`, total))
}

// openFakeUI serves src in a UI and opens it in a fresh headless tab,
// after the actions given (a viewport, say); the tab lives until the test
// ends, 45 s at the most.
func openFakeUI(t *testing.T, src Source, before ...chromedp.Action[chromedp.Void]) context.Context {
	t.Helper()
	s, ts := newTestUI(t, src, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	t.Cleanup(cancel)
	tab := startBrowser(t, ctx, browserOptions{})
	if err := chromedp.Do(tab, append(before, chromedp.Navigate(s.URL(ts.URL)))...); err != nil {
		t.Fatal(err)
	}
	return tab
}
