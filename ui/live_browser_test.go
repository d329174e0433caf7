package ui

import (
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/hopscope/hopscope/flow"
)

// heldListSource answers its first list request with a snapshot taken
// before a new flow arrives, and returns it only once the test lets it: the
// new flow's live event reaches the browser while the list is on its way.
type heldListSource struct {
	*fakeSource
	once    sync.Once
	arrive  Flow
	release chan struct{}
}

func (h *heldListSource) Flows(query string, limit int) ([]Flow, error) {
	out, err := h.fakeSource.Flows(query, limit)
	h.once.Do(func() {
		h.fakeSource.add(h.arrive)
		<-h.release
	})
	return out, err
}

// A flow that arrives while the page loads the list is not lost when the
// (older) list lands on top of it.
func TestBrowserKeepsAFlowThatArrivesDuringTheListLoad(t *testing.T) {
	chromiumPath(t)
	src := &heldListSource{fakeSource: newFakeSource(), release: make(chan struct{})}
	sampleFlows(src.fakeSource)
	src.arrive = Flow{ID: 40, Tunnel: &flow.Tunnel{ID: 40, Host: "late.test", Port: 443, Mode: "splice", Status: 502,
		Error: "could not resolve late.test", Start: time.Now(), Duration: time.Millisecond}}
	released := false
	release := func() {
		if !released {
			released = true
			close(src.release)
		}
	}
	defer release()
	tab := openFakeUI(t, src)
	eventually(t, tab, "the late flow, live", `document.querySelector('#rows tr[data-id="40"]') !== null`)
	release()
	// The list lands in one go: once its rows are there, the late flow
	// must be too (checked once, not polled: a later reconnect would
	// reload the list and hide the loss).
	eventually(t, tab, "the list loaded", `document.querySelector('#rows tr[data-id="1"]') !== null`)
	kept, err := chromedp.Run(tab, chromedp.Evaluate[bool](`document.querySelectorAll("#rows tr").length === 7 && document.querySelector('#rows tr[data-id="40"]') !== null`))
	if err != nil || !kept {
		rows, _ := chromedp.Run(tab, chromedp.Evaluate[string](`document.querySelector("#rows").innerText`))
		t.Fatalf("the flow that arrived during the list load is gone (err %v); rows:\n%s", err, rows)
	}
}

// An open tunnel or WebSocket has not counted its bytes yet: the page says
// so instead of showing 0 B and 0 messages.
func TestBrowserOpenFlowsDoNotClaimZeroBytes(t *testing.T) {
	chromiumPath(t)
	src := newFakeSource()
	sampleFlows(src)
	src.add(Flow{ID: 8, Open: true, Tunnel: &flow.Tunnel{ID: 8, Host: "live.test", Port: 443, Mode: "splice", Status: 200, Start: time.Now()}})
	tab := openFakeUI(t, src)
	eventually(t, tab, "the open tunnel's size is pending", `(() => { const r = document.querySelector('#rows tr[data-id="8"]'); return !!r && r.querySelector("td.size").innerText === "…"; })()`)
	if err := chromedp.Do(tab, chromedp.Click(chromedp.CSS(`#rows tr[data-id="8"]`))); err != nil {
		t.Fatal(err)
	}
	eventually(t, tab, "the tunnel's bytes are pending", `document.querySelector("#tab-body").innerText.includes("counted when the tunnel ends") && !document.querySelector("#tab-body").innerText.includes("0 B")`)
	if err := chromedp.Do(tab, chromedp.Click(chromedp.CSS(`#rows tr[data-id="6"]`))); err != nil {
		t.Fatal(err)
	}
	// The tabs are drawn again as the session loads: click whichever is there.
	eventually(t, tab, "the session's headers tab", `(() => { const b = document.querySelector('#tabs button[data-tab="messages"]') && document.querySelector('#tabs button[data-tab="headers"]'); if (b) b.click(); return !!b && b.classList.contains("on"); })()`)
	eventually(t, tab, "the session's counts are pending", `document.querySelector("#tab-body").innerText.includes("counted when the session ends") && !document.querySelector("#tab-body").innerText.includes("0 messages")`)
}

// On a laptop-sized window the timeline's payload column keeps room to be
// read: the fixed columns give way first.
func TestBrowserTimelineDataColumnOnANarrowWindow(t *testing.T) {
	chromiumPath(t)
	src := newFakeSource()
	sampleFlows(src)
	tab := openFakeUI(t, src, chromedp.EmulateViewport(1000, 800))
	eventually(t, tab, "the session row", `document.querySelector('#rows tr[data-id="6"]') !== null`)
	if err := chromedp.Do(tab, chromedp.Click(chromedp.CSS(`#rows tr[data-id="6"]`))); err != nil {
		t.Fatal(err)
	}
	eventually(t, tab, "the timeline", `document.querySelectorAll(".ws-list tr[data-seq]").length === 9`)
	width, err := chromedp.Run(tab, chromedp.Evaluate[float64](`document.querySelector(".ws-list td.data").getBoundingClientRect().width`))
	if err != nil || width < 180 {
		t.Errorf("the payload column is %.0f px wide in a 1000 px window (err %v); want room to read it", width, err)
	}
}

// A message fault sits after the message it acted on, named by its number
// in the timeline, even when its clock says it came first.
func TestBrowserFaultSitsAfterItsMessage(t *testing.T) {
	chromiumPath(t)
	src := newFakeSource()
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.Local)
	src.add(Flow{ID: 1, Exchange: &flow.Exchange{ID: 1, Method: "GET", URL: "http://chat.test/socket", Status: 101, WebSocket: 2, Start: t0},
		Session: &flow.WSSession{ID: 2, Exchange: 1, URL: "http://chat.test/socket", Path: "forward", Start: t0},
		// Recorded as the server's first message was decided: the same
		// millisecond as the client's message before it.
		Faults: []flow.Fault{{Flow: 2, Fault: "ws-drop", Spec: "ws-drop=0.3", From: "server", Detail: "dropped message 1", Message: 1, Time: t0}}})
	for _, m := range []Message{
		{Time: t0, From: "client", Type: "text", Opcode: 1, Len: 5, PayloadLen: 5, Fragments: 1, Action: "pass", Payload: []byte("hello")},
		{Time: t0, From: "client", Type: "text", Opcode: 1, Len: 3, PayloadLen: 3, Fragments: 1, Action: "pass", Payload: []byte("two")},
		{Time: t0, From: "server", Type: "text", Opcode: 1, Len: 11, PayloadLen: 11, Fragments: 1, Action: "drop", Payload: []byte("echo: hello")},
		{Time: t0.Add(time.Millisecond), From: "server", Type: "text", Opcode: 1, Len: 9, PayloadLen: 9, Fragments: 1, Action: "pass", Payload: []byte("echo: two")},
	} {
		src.addMessage(1, m)
	}
	tab := openFakeUI(t, src)
	eventually(t, tab, "the session row", `document.querySelector('#rows tr[data-id="1"]') !== null`)
	if err := chromedp.Do(tab, chromedp.Click(chromedp.CSS(`#rows tr[data-id="1"]`))); err != nil {
		t.Fatal(err)
	}
	eventually(t, tab, "the fault right after message #3", `(() => { const r = document.querySelector('.ws-list tr[data-seq="3"]'); const f = r && r.nextElementSibling; return !!f && f.classList.contains("fault") && f.innerText.includes("#3"); })()`)
}
