package store

import (
	"crypto/sha256"
	"encoding/hex"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hopscope/hopscope/flow"
)

func TestStoreKeepsEveryKindOfFlow(t *testing.T) {
	w := newWorld()
	st := New(Options{Now: w.clock.now})
	getStart, getEnd := w.exchange("GET", "http://example.com/api/items?page=2", 200, "", `{"items":[]}`)
	tunOpen, tunEnd := w.tunnel("secure.example", "splice")
	bumpOpen, bumpEnd := w.tunnel("bumped.example", "bump")
	ws := w.websocket("ws://chat.example/socket")
	deniedID := w.bus.NextID()
	denial := flow.Record{Kind: flow.KindDenial, Denial: &flow.Denial{
		Flow: deniedID, Method: "CONNECT", Target: "evil.example:8443", Rule: "connect-ports=443",
		Reason: "port 8443 is not in the CONNECT port list 443", Status: 403, Time: w.clock.now(),
	}}
	fault := flow.Record{Kind: flow.KindFault, Fault: &flow.Fault{Flow: ws.ss.ID, Fault: "ws-drop", Spec: "ws-drop=1", Detail: "dropped message 2", Message: 2, Time: w.clock.now()}}
	publish(t, st, join(
		[]flow.Record{getStart, getEnd, tunOpen, tunEnd, bumpOpen},
		ws.open(),
		[]flow.Record{ws.msg(flow.FromClient, flow.OpText, "hello"), ws.msg(flow.FromServer, flow.OpBinary, "\x00\x01"), fault, denial},
	)...)

	p := listFlows(t, st, "")
	type row struct {
		Type   Type
		Method string
		Host   string
		Path   string
		Status int
		Open   bool
	}
	var got []row
	for _, f := range p.Flows {
		got = append(got, row{f.Type, f.Method, f.Host, f.Path, f.Status, f.Open})
	}
	want := []row{
		{TypeHTTP, "GET", "example.com", "/api/items?page=2", 200, false},
		{TypeTunnel, "CONNECT", "secure.example", "", 200, false},
		{TypeBumped, "CONNECT", "bumped.example", "", 200, true},
		{TypeWebSocket, "GET", "chat.example", "/socket", 101, true},
		{TypeDenied, "CONNECT", "evil.example", "", 403, false},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("flow list:\n got %+v\nwant %+v", got, want)
	}
	if p.Total != 5 {
		t.Errorf("Total = %d, want 5", p.Total)
	}
	wsSum := p.Flows[3]
	if wsSum.Messages != 2 || wsSum.ClientMessages != 1 || wsSum.ServerMessages != 1 || wsSum.Faults != 1 || wsSum.Session != ws.ss.ID {
		t.Errorf("websocket summary counts: %+v", wsSum)
	}

	// The session's ID finds the same flow as its exchange's.
	byEx, ok1 := st.Get(ws.ex.ID)
	bySess, ok2 := st.Get(ws.ss.ID)
	if !ok1 || !ok2 || byEx.ID != bySess.ID || byEx.SessionRecord == nil || len(byEx.FaultRecords) != 1 {
		t.Fatalf("Get by exchange (%v) and by session (%v) differ or lack parts: %+v", ok1, ok2, byEx)
	}
	msgs, ok, err := st.Messages(ws.ss.ID, MessageQuery{})
	if err != nil || !ok || len(msgs.Messages) != 2 {
		t.Fatalf("Messages: %v %v %+v", ok, err, msgs)
	}
	if m := msgs.Messages[0]; m.From != "client" || m.Type != "text" || string(m.Payload) != "hello" || m.Flow != ws.ex.ID {
		t.Errorf("first message: %+v", m)
	}

	// Closing ends the flow; its duration runs to the close.
	publish(t, st, ws.close(1000), bumpEnd)
	f, _ := st.Get(ws.ex.ID)
	if f.Open || f.SessionRecord.Code != 1000 || f.Duration < time.Second {
		t.Errorf("after close: open=%v code=%d duration=%v", f.Open, f.SessionRecord.Code, f.Duration)
	}
	if got := listFlows(t, st, "~open").Flows; len(got) != 0 {
		t.Errorf("~open after every close matches %d flows", len(got))
	}
}

func TestStandaloneDenialAndFaultGetTheirOwnFlows(t *testing.T) {
	w := newWorld()
	st := New(Options{Now: w.clock.now})
	publish(t, st,
		flow.Record{Kind: flow.KindDenial, Denial: &flow.Denial{Method: "GET", Target: "http://blocked.example/", Rule: "deny-host", Status: 403}},
		flow.Record{Kind: flow.KindFault, Fault: &flow.Fault{Fault: "reset-after", Target: "a.example:443", Detail: "reset after 10 bytes"}},
	)
	p := listFlows(t, st, "")
	if len(p.Flows) != 2 || p.Flows[0].Type != TypeDenied || p.Flows[1].Type != TypeFault {
		t.Fatalf("standalone records: %+v", p.Flows)
	}
	if p.Flows[0].ID < localIDBase || p.Flows[1].Host != "a.example" || p.Flows[1].Start.IsZero() {
		t.Errorf("standalone flows lack an ID, a host or a time: %+v", p.Flows)
	}
}

func TestSessionBeforeItsExchangeIsFoldedIn(t *testing.T) {
	w := newWorld()
	st := New(Options{Now: w.clock.now})
	ws := w.websocket("ws://x.example/")
	// Records may arrive in another order than they happened; the store
	// still shows one flow.
	sessionOnly := *ws.ss
	sessionOnly.Exchange = 0
	publish(t, st,
		flow.Record{Kind: flow.KindWSOpen, Session: &sessionOnly},
		ws.msg(flow.FromClient, flow.OpText, "early"),
		flow.Record{Kind: flow.KindExchange, Exchange: ws.ex},
	)
	p := listFlows(t, st, "")
	if len(p.Flows) != 1 || p.Flows[0].ID != ws.ex.ID || p.Flows[0].Messages != 1 || p.Flows[0].MessagesKept != 1 {
		t.Fatalf("want one flow with the message, got %+v", p.Flows)
	}
	if st.Stats().Messages != 1 {
		t.Errorf("Stats.Messages = %d, want 1", st.Stats().Messages)
	}
}

func TestCountBoundEvictsOldestFinishedFirst(t *testing.T) {
	w := newWorld()
	st := New(Options{MaxFlows: 3, Now: w.clock.now})
	ws := w.websocket("ws://live.example/")
	var recs []flow.Record
	recs = append(recs, ws.open()...) // open the whole time: must survive
	var done []flow.ID
	for i := 0; i < 5; i++ {
		s, e := w.exchange("GET", "http://example.com/"+string(rune('a'+i)), 200, "", "ok")
		recs = append(recs, s, e)
		done = append(done, e.Exchange.ID)
	}
	sub := st.Subscribe(SubscribeOptions{})
	defer sub.Close()
	publish(t, st, recs...)
	got := ids(listFlows(t, st, ""))
	want := []flow.ID{ws.ex.ID, done[3], done[4]}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("kept %v, want the live session and the two newest %v", got, want)
	}
	if s := st.Stats(); s.Flows != 3 || s.EvictedFlows != 3 {
		t.Errorf("stats %+v, want 3 flows, 3 evicted", s)
	}
	// Flows that were announced and then evicted are announced gone.
	evicted := map[flow.ID]bool{}
	for len(sub.Updates()) > 0 {
		if u := <-sub.Updates(); u.Kind == UpdateEvict {
			evicted[u.ID] = true
		}
	}
	for _, id := range done[:3] {
		if _, ok := st.Get(id); ok {
			t.Errorf("flow %d still there", id)
		}
	}
	if len(evicted) > 3 {
		t.Errorf("more evictions announced than happened: %v", evicted)
	}
}

func TestByteBoundEvictsOldestMessagesOfALiveSession(t *testing.T) {
	w := newWorld()
	const maxBytes = 64 << 10
	st := New(Options{MaxBytes: maxBytes, Now: w.clock.now})
	ws := w.websocket("ws://chatty.example/")
	publish(t, st, ws.open()...)
	payload := strings.Repeat("x", 1000)
	var last uint64
	for batch := 0; batch < 20; batch++ {
		var recs []flow.Record
		for i := 0; i < 50; i++ {
			r := ws.msg(flow.FromServer, flow.OpText, payload)
			last = r.Message.Seq
			recs = append(recs, r)
		}
		st.Observe(recs)
		if b := st.Stats().Bytes; b > maxBytes {
			t.Fatalf("after batch %d the store holds %d bytes, bound %d", batch, b, maxBytes)
		}
	}
	f, ok := st.Get(ws.ss.ID)
	if !ok {
		t.Fatal("the live session was evicted instead of its old messages")
	}
	if f.Messages != 1000 || f.EvictedMessages == 0 || int64(f.MessagesKept)+f.EvictedMessages != 1000 {
		t.Errorf("messages seen %d, kept %d, evicted %d", f.Messages, f.MessagesKept, f.EvictedMessages)
	}
	page, _, _ := st.Messages(ws.ss.ID, MessageQuery{Limit: 5000})
	if n := len(page.Messages); n == 0 || page.Messages[n-1].Seq != last || page.Messages[0].Seq != last-uint64(n)+1 {
		t.Errorf("kept messages are not the newest run ending at %d: first %d, %d kept", last, page.Messages[0].Seq, n)
	}
	if got := listFlows(t, st, "~evicted"); len(got.Flows) != 1 {
		t.Errorf("~evicted matched %d flows", len(got.Flows))
	}
}

func TestByteBoundEvictsWhicheverIsOlder(t *testing.T) {
	w := newWorld()
	st := New(Options{MaxBytes: 40 << 10, Now: w.clock.now})
	// An old finished exchange, then a live session sending messages: the
	// exchange is older than the messages and goes first.
	s, e := w.exchange("GET", "http://old.example/", 200, "", strings.Repeat("b", 4000))
	ws := w.websocket("ws://live.example/")
	publish(t, st, join([]flow.Record{s, e}, ws.open())...)
	for i := 0; i < 60; i++ {
		st.Observe([]flow.Record{ws.msg(flow.FromClient, flow.OpText, strings.Repeat("m", 1000))})
	}
	if _, ok := st.Get(e.Exchange.ID); ok {
		t.Error("the old exchange outlived newer messages")
	}
	f, ok := st.Get(ws.ex.ID)
	if !ok || f.EvictedMessages == 0 {
		t.Fatalf("the session (%v) should have lost old messages too: %+v", ok, f.Summary)
	}
	// A newer finished exchange is kept while older messages go.
	s2, e2 := w.exchange("GET", "http://new.example/", 200, "", "small")
	st.Observe([]flow.Record{s2, e2})
	for i := 0; i < 10; i++ {
		st.Observe([]flow.Record{ws.msg(flow.FromClient, flow.OpText, strings.Repeat("m", 1000))})
	}
	if _, ok := st.Get(e2.Exchange.ID); !ok {
		t.Error("a newer exchange went before older messages")
	}
	if b := st.Stats().Bytes; b > 40<<10 {
		t.Errorf("bytes %d over the bound", b)
	}
}

func TestItemCapKeepsHeadLengthAndHash(t *testing.T) {
	w := newWorld()
	st := New(Options{ItemBytes: 1024, Now: w.clock.now})
	big := strings.Repeat("0123456789abcdef", 4096) // 64 KiB
	ws := w.websocket("ws://big.example/")
	s, e := w.exchange("POST", "http://dl.example/file", 200, big, "")
	// A 4 GiB download: the bus hands over the first bytes and the length.
	e.Exchange.ResponseBody = flow.Body{Data: []byte(big[:2048]), Len: 4 << 30, Truncated: true, SHA256: "abc"}
	publish(t, st, join(ws.open(), []flow.Record{ws.msg(flow.FromClient, flow.OpText, big), s, e})...)

	page, _, _ := st.Messages(ws.ss.ID, MessageQuery{})
	m := page.Messages[0]
	sum := sha256.Sum256([]byte(big))
	if len(m.Payload) != 1024 || !m.PayloadCut || m.Len != int64(len(big)) || m.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("message kept %d bytes, cut=%v, len=%d, sha=%q", len(m.Payload), m.PayloadCut, m.Len, m.SHA256)
	}
	if string(m.Payload) != big[:1024] {
		t.Error("the kept payload is not the message's start")
	}
	f, _ := st.Get(e.Exchange.ID)
	rb, qb := f.Exchange.ResponseBody, f.Exchange.RequestBody
	if len(rb.Data) != 1024 || rb.Len != 4<<30 || !rb.Truncated || rb.SHA256 != "abc" {
		t.Errorf("response body: kept %d, len %d, truncated %v, sha %q", len(rb.Data), rb.Len, rb.Truncated, rb.SHA256)
	}
	if len(qb.Data) != 1024 || !qb.Truncated || qb.Len != int64(len(big)) {
		t.Errorf("request body: kept %d, len %d, truncated %v", len(qb.Data), qb.Len, qb.Truncated)
	}
	if !f.Truncated {
		t.Error("summary does not say a part was cut")
	}
	if b := st.Stats().Bytes; b > 16<<10 {
		t.Errorf("store holds %d bytes for two flows with 1 KiB items", b)
	}
}

func TestPagingAndNewest(t *testing.T) {
	w := newWorld()
	st := New(Options{Now: w.clock.now})
	var recs []flow.Record
	for i := 0; i < 25; i++ {
		_, e := w.exchange("GET", "http://example.com/", 200, "", "")
		recs = append(recs, e)
	}
	publish(t, st, recs...)
	var seen []uint64
	var after uint64
	for {
		p, err := st.List(Query{After: after, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range p.Flows {
			seen = append(seen, f.Seq)
		}
		if !p.More {
			break
		}
		after = p.Flows[len(p.Flows)-1].Seq
	}
	if len(seen) != 25 || seen[0] != 1 || seen[24] != 25 {
		t.Fatalf("paged through %v", seen)
	}
	p, _ := st.List(Query{Newest: true, Limit: 10})
	if len(p.Flows) != 10 || !p.More || p.Flows[0].Seq != 16 || p.Flows[9].Seq != 25 {
		t.Fatalf("newest page: more=%v seqs %d..%d", p.More, p.Flows[0].Seq, p.Flows[len(p.Flows)-1].Seq)
	}
	p, _ = st.List(Query{Newest: true, Before: 16, Limit: 10})
	if p.Flows[0].Seq != 6 || p.Flows[9].Seq != 15 || !p.More {
		t.Fatalf("page before 16: %d..%d", p.Flows[0].Seq, p.Flows[9].Seq)
	}
}

func TestMessageQuery(t *testing.T) {
	w := newWorld()
	st := New(Options{Now: w.clock.now})
	ws := w.websocket("ws://q.example/")
	recs := ws.open()
	recs = append(recs,
		ws.msg(flow.FromClient, flow.OpText, `{"op":"hello"}`), // 1
		ws.msg(flow.FromServer, flow.OpText, `{"op":"welcome"}`),
		ws.msg(flow.FromClient, flow.OpPing, ""),
		ws.msg(flow.FromServer, flow.OpPong, ""),
		ws.msg(flow.FromServer, flow.OpBinary, "\x01HELLO"), // 5
	)
	drop := ws.msg(flow.FromClient, flow.OpText, "secret password")
	drop.Message.Action = "drop"
	recs = append(recs, drop)
	publish(t, st, recs...)
	seqs := func(q MessageQuery) []uint64 {
		t.Helper()
		p, ok, err := st.Messages(ws.ex.ID, q)
		if err != nil || !ok {
			t.Fatalf("Messages(%+v): %v %v", q, ok, err)
		}
		out := []uint64{}
		for _, m := range p.Messages {
			out = append(out, m.Seq)
		}
		return out
	}
	tests := []struct {
		q    MessageQuery
		want []uint64
	}{
		{MessageQuery{}, []uint64{1, 2, 3, 4, 5, 6}},
		{MessageQuery{From: "client"}, []uint64{1, 3, 6}},
		{MessageQuery{Type: "control"}, []uint64{3, 4}},
		{MessageQuery{Type: "data", From: "server"}, []uint64{2, 5}},
		{MessageQuery{Type: "binary"}, []uint64{5}},
		{MessageQuery{Text: "hello"}, []uint64{1, 5}},
		{MessageQuery{Action: "drop"}, []uint64{6}},
		{MessageQuery{FromSeq: 4}, []uint64{4, 5, 6}},
		{MessageQuery{FromSeq: 2, Limit: 2}, []uint64{2, 3}},
		{MessageQuery{Newest: true, Limit: 2}, []uint64{5, 6}},
		{MessageQuery{Newest: true, Limit: 2, From: "client"}, []uint64{3, 6}},
		{MessageQuery{Newest: true, Limit: 10, FromSeq: 5}, []uint64{5, 6}},
	}
	for _, tt := range tests {
		if got := seqs(tt.q); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%+v: got %v, want %v", tt.q, got, tt.want)
		}
	}
	p, _, _ := st.Messages(ws.ex.ID, MessageQuery{Limit: 2})
	if !p.More || p.NextSeq != 3 {
		t.Errorf("page of 2: more=%v next=%d", p.More, p.NextSeq)
	}
	if p, _, _ := st.Messages(ws.ex.ID, MessageQuery{Newest: true, Limit: 2}); !p.More {
		t.Error("the newest 2 of 6 do not say older ones match")
	}
	if _, _, err := st.Messages(ws.ex.ID, MessageQuery{From: "both"}); err == nil {
		t.Error("a bad direction was accepted")
	}
	if _, ok, _ := st.Messages(12345, MessageQuery{}); ok {
		t.Error("an unknown flow has messages")
	}
}

func TestSubscriptionCoalescesAndCountsMisses(t *testing.T) {
	w := newWorld()
	st := New(Options{Now: w.clock.now})
	ws := w.websocket("ws://live.example/")
	all := st.Subscribe(SubscribeOptions{Messages: true, Buffer: 10_000})
	defer all.Close()
	tiny := st.Subscribe(SubscribeOptions{Buffer: 1})
	defer tiny.Close()
	filtered, err := ParseFilter("host:other.example")
	if err != nil {
		t.Fatal(err)
	}
	none := st.Subscribe(SubscribeOptions{Filter: filtered})
	defer none.Close()

	recs := ws.open()
	for i := 0; i < 100; i++ {
		recs = append(recs, ws.msg(flow.FromClient, flow.OpText, "tick"))
	}
	st.Observe(recs) // one batch
	var flows, msgs int
	for len(all.Updates()) > 0 {
		switch u := <-all.Updates(); u.Kind {
		case UpdateFlow:
			flows++
			if u.Flow == nil || u.Flow.ID != ws.ex.ID {
				t.Errorf("flow update without its summary: %+v", u)
			}
		case UpdateMessage:
			msgs++
		}
	}
	if msgs != 100 {
		t.Errorf("%d message updates, want 100", msgs)
	}
	if flows > 2 {
		t.Errorf("%d summary updates for one batch, want them coalesced (at most 2)", flows)
	}
	if tiny.Missed() == 0 && len(tiny.Updates()) == 1 {
		// the first summary fitted; publish another batch to overflow
		st.Observe([]flow.Record{ws.msg(flow.FromServer, flow.OpText, "x")})
	}
	if tiny.Missed() == 0 {
		t.Error("a full subscriber missed nothing")
	}
	if len(none.Updates()) != 0 {
		t.Errorf("a filter for another host let %d updates through", len(none.Updates()))
	}
	st.Clear()
	if u := <-all.Updates(); u.Kind != UpdateClear {
		t.Errorf("after Clear got %+v", u)
	}
	if s := st.Stats(); s.Flows != 0 || s.Bytes != 0 || s.Messages != 0 {
		t.Errorf("after Clear: %+v", s)
	}
	all.Close()
	if _, ok := <-all.Updates(); ok {
		t.Error("channel still open after Close")
	}
	all.Close() // twice is harmless
}

// TestConcurrentUse runs publishers, readers and subscribers at once; run
// with -race.
func TestConcurrentUse(t *testing.T) {
	w := newWorld()
	st := New(Options{MaxFlows: 50, MaxBytes: 128 << 10})
	bus := flow.NewBus()
	st.Attach(bus)
	// Records are built before the goroutines start: world is not
	// concurrency-safe, the bus and the store are.
	var batches [4][]flow.Record
	for g := range batches {
		for i := 0; i < 40; i++ {
			ws := w.websocket("ws://c.example/")
			batches[g] = append(batches[g], ws.open()...)
			for j := 0; j < 20; j++ {
				batches[g] = append(batches[g], ws.msg(flow.Side(j%2), flow.OpText, "concurrent message"))
			}
			batches[g] = append(batches[g], ws.close(1000))
			s, e := w.exchange("GET", "http://c.example/x", 200, "", "body")
			batches[g] = append(batches[g], s, e)
		}
	}
	var wg sync.WaitGroup
	for g := range batches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, r := range batches[g] {
				bus.Publish(r)
			}
		}()
	}
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for r := 0; r < 3; r++ {
		readers.Add(1)
		go func() {
			defer readers.Done()
			sub := st.Subscribe(SubscribeOptions{Messages: true, Buffer: 16})
			defer sub.Close()
			for {
				select {
				case <-stop:
					return
				case <-sub.Updates():
				default:
				}
				p, _ := st.List(Query{Filter: "msg:concurrent", Newest: true, Limit: 10})
				for _, f := range p.Flows {
					st.Get(f.ID)
					st.Messages(f.ID, MessageQuery{Text: "message"})
				}
				st.Stats()
				st.Export()
			}
		}()
	}
	wg.Wait()
	bus.Close()
	close(stop)
	readers.Wait()
	s := st.Stats()
	if s.Flows > 50 || s.Bytes > 128<<10 {
		t.Errorf("bounds broken under concurrency: %+v", s)
	}
	if s.Flows == 0 {
		t.Error("nothing kept")
	}
}

// TestSmallPayloadsDoNotPinTheRelaysBlocks: the relay carves small
// payload copies from shared 16 KiB blocks (flow.Slab); a store that kept
// the carvings would keep whole blocks alive behind a count of a few
// bytes.
func TestSmallPayloadsDoNotPinTheRelaysBlocks(t *testing.T) {
	w := newWorld()
	st := New(Options{Now: w.clock.now})
	ws := w.websocket("ws://slab.example/")
	var slab flow.Slab
	r := ws.msg(flow.FromClient, flow.OpText, "")
	r.Message.Payload = slab.Copy([]byte("tiny"), 100)
	r.Message.Len = 4
	publish(t, st, append(ws.open(), r)...)
	page, _, _ := st.Messages(ws.ss.ID, MessageQuery{})
	kept := page.Messages[0].Payload
	if string(kept) != "tiny" {
		t.Fatalf("kept %q", kept)
	}
	if &kept[0] == &r.Message.Payload[0] {
		t.Error("the store kept the relay's slab carving, pinning its block")
	}
}

// A session whose opening the store missed (the bus dropped it for a slow
// store) still shows, from what its messages say.
func TestMessagesOfAnUnseenSessionMakeAFlow(t *testing.T) {
	w := newWorld()
	st := New(Options{Now: w.clock.now})
	ws := w.websocket("ws://missed.example/")
	a := ws.msg(flow.FromClient, flow.OpText, "first seen")
	a.Message.Client, a.Message.Tunnel = ws.ss.Client, 77
	publish(t, st, a, ws.msg(flow.FromServer, flow.OpText, "second"))
	p := listFlows(t, st, "type:websocket")
	if len(p.Flows) != 1 || p.Flows[0].Messages != 2 || p.Flows[0].Tunnel != 77 || !p.Flows[0].Open || p.Flows[0].Client != ws.ss.Client.Addr {
		t.Fatalf("flows %+v", p.Flows)
	}
	publish(t, st, ws.close(1000))
	if p := listFlows(t, st, "type:websocket"); len(p.Flows) != 1 || p.Flows[0].Open || p.Flows[0].URL != "ws://missed.example/" {
		t.Fatalf("after the close: %+v", p.Flows)
	}
	if s := st.Stats(); s.Orphans != 1 {
		t.Errorf("Orphans = %d, want 1 (one session made from its messages)", s.Orphans)
	}
}
