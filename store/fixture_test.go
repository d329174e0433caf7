package store

import (
	"net/http"
	"testing"
	"time"

	"github.com/hopscope/hopscope/flow"
)

// clock is simulated time: tests advance it instead of waiting.
type clock struct{ t time.Time }

func newClock() *clock { return &clock{t: time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)} }

func (c *clock) now() time.Time { return c.t }

func (c *clock) step(d time.Duration) time.Time {
	c.t = c.t.Add(d)
	return c.t
}

// world builds records as the proxy would publish them: fresh IDs from a
// real bus, simulated times.
type world struct {
	bus   *flow.Bus
	clock *clock
	conn  uint64
}

func newWorld() *world { return &world{bus: flow.NewBus(), clock: newClock()} }

func (w *world) client() flow.Client {
	w.conn++
	return flow.Client{Conn: w.conn, Addr: "127.0.0.1:40000"}
}

func body(s string) flow.Body {
	return flow.Body{Data: []byte(s), Len: int64(len(s))}
}

// exchange returns the start and end records of an HTTP exchange.
func (w *world) exchange(method, url string, status int, reqBody, respBody string) (start, end flow.Record) {
	ex := &flow.Exchange{
		ID: w.bus.NextID(), Client: w.client(), Method: method, URL: url, Proto: "HTTP/1.1",
		RequestHeader: http.Header{"User-Agent": {"test"}}, RequestBody: body(reqBody),
		Start: w.clock.step(time.Millisecond),
	}
	st := *ex
	st.RequestBody = flow.Body{}
	done := *ex
	done.Status = status
	done.ResponseHeader = http.Header{"Content-Type": {"text/plain"}}
	done.ResponseBody = body(respBody)
	done.Duration = 3 * time.Millisecond
	done.AnsweredBy = "destination"
	return flow.Record{Kind: flow.KindExchangeStart, Exchange: &st}, flow.Record{Kind: flow.KindExchange, Exchange: &done}
}

// session is one WebSocket as records: its handshake exchange, open and
// close, and its messages.
type session struct {
	w   *world
	ex  *flow.Exchange
	ss  *flow.WSSession
	seq uint64
}

func (w *world) websocket(url string) *session {
	ex := &flow.Exchange{
		ID: w.bus.NextID(), Client: w.client(), Method: "GET", URL: url, Proto: "HTTP/1.1",
		RequestHeader: http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}},
		Start:         w.clock.step(time.Millisecond), Status: http.StatusSwitchingProtocols,
		ResponseHeader: http.Header{"Upgrade": {"websocket"}}, ResponseBody: flow.Body{Len: 0},
		AnsweredBy: "destination",
	}
	ss := &flow.WSSession{ID: w.bus.NextID(), Client: ex.Client, Exchange: ex.ID, URL: url, Path: "forward", Start: ex.Start}
	ex.WebSocket = ss.ID
	return &session{w: w, ex: ex, ss: ss}
}

func (s *session) open() []flow.Record {
	return []flow.Record{{Kind: flow.KindExchange, Exchange: s.ex}, {Kind: flow.KindWSOpen, Session: s.ss}}
}

func (s *session) msg(from flow.Side, op flow.Opcode, payload string) flow.Record {
	s.seq++
	return flow.Record{Kind: flow.KindWSMessage, Message: flow.WSMessage{
		Session: s.ss.ID, Seq: s.seq, Time: s.w.clock.step(time.Millisecond), From: from, Opcode: op,
		Len: int64(len(payload)), WireLen: int64(len(payload)) + 6, PayloadLen: int64(len(payload)),
		Fragments: 1, Action: "pass", Payload: []byte(payload),
	}}
}

func (s *session) close(code uint16) flow.Record {
	c := *s.ss
	c.Code, c.Reason, c.ClosedBy = code, "bye", "client"
	c.Duration = s.w.clock.step(time.Second).Sub(c.Start)
	return flow.Record{Kind: flow.KindWSClose, Session: &c}
}

func (w *world) tunnel(host string, mode string) (open, end flow.Record) {
	t := &flow.Tunnel{ID: w.bus.NextID(), Client: w.client(), Host: host, Port: 443, Mode: mode, Status: 200, Start: w.clock.step(time.Millisecond)}
	done := *t
	done.BytesUp, done.BytesDown, done.Duration = 100, 2000, time.Second
	return flow.Record{Kind: flow.KindTunnelOpen, Tunnel: t}, flow.Record{Kind: flow.KindTunnel, Tunnel: &done}
}

// publish sends records through the bus to a store and waits until the
// store has seen them (Close flushes), so tests see the real path.
func publish(t *testing.T, st *Store, recs ...flow.Record) {
	t.Helper()
	bus := flow.NewBus()
	st.Attach(bus)
	for _, r := range recs {
		bus.Publish(r)
	}
	bus.Close()
	for _, s := range bus.Stats() {
		if s.Dropped > 0 {
			t.Fatalf("bus dropped %d records for %s", s.Dropped, s.Name)
		}
	}
}

func ids(p Page) []flow.ID {
	out := make([]flow.ID, len(p.Flows))
	for i, f := range p.Flows {
		out[i] = f.ID
	}
	return out
}

func listFlows(t *testing.T, st *Store, filter string) Page {
	t.Helper()
	p, err := st.List(Query{Filter: filter, Limit: 1000})
	if err != nil {
		t.Fatalf("List(%q): %v", filter, err)
	}
	return p
}

func join(recs ...[]flow.Record) []flow.Record {
	var out []flow.Record
	for _, r := range recs {
		out = append(out, r...)
	}
	return out
}
