package store

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hopscope/hopscope/flow"
)

// check recomputes the store's books from its entries and says where they
// disagree with its counters or break its bounds.
func (s *Store) check() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var flows, messages int
	var bytes int64
	for i, e := range s.order {
		if e == nil {
			continue
		}
		if e.evicted {
			return fmt.Errorf("order[%d] holds an evicted flow %d", i, e.id)
		}
		if e.pos != i {
			return fmt.Errorf("flow %d at order[%d] thinks it is at %d", e.id, i, e.pos)
		}
		if e.cost != e.computeCost() {
			return fmt.Errorf("flow %d cost %d, recomputed %d", e.id, e.cost, e.computeCost())
		}
		var mb int64
		for _, m := range e.msgs.kept() {
			mb += m.cost
		}
		if mb != e.msgBytes {
			return fmt.Errorf("flow %d message bytes %d, recomputed %d", e.id, e.msgBytes, mb)
		}
		if e.open != e.isOpen() {
			return fmt.Errorf("flow %d open=%v, should be %v", e.id, e.open, e.isOpen())
		}
		flows++
		messages += e.msgs.len()
		bytes += e.cost + e.msgBytes
	}
	for id, e := range s.byID {
		if e.evicted || s.order[e.pos] != e {
			return fmt.Errorf("byID[%d] points at a flow no longer kept", id)
		}
	}
	listed := 0
	for _, l := range []list{s.open, s.done} {
		for e := l.head; e != nil; e = e.next {
			listed++
		}
	}
	switch {
	case flows != s.flows || listed != s.flows:
		return fmt.Errorf("flows: counter %d, in order %d, in lists %d", s.flows, flows, listed)
	case messages != s.messages:
		return fmt.Errorf("messages: counter %d, kept %d", s.messages, messages)
	case bytes != s.bytes:
		return fmt.Errorf("bytes: counter %d, recomputed %d", s.bytes, bytes)
	case s.flows > s.opts.MaxFlows:
		return fmt.Errorf("%d flows over the bound %d", s.flows, s.opts.MaxFlows)
	case s.bytes > s.opts.MaxBytes:
		return fmt.Errorf("%d bytes over the bound %d", s.bytes, s.opts.MaxBytes)
	}
	return nil
}

// FuzzStoreBooks plays arbitrary sequences of records (in any order, with
// IDs that collide, sessions that open late or never, Clear in between)
// into a small store and checks its books after every batch.
//
//	go test ./store -run '^$' -fuzz FuzzStoreBooks -fuzztime 60s
func FuzzStoreBooks(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11})
	f.Add([]byte("\x05\x01\x05\x02\x05\x03\x06\x01\x00\x02\x09\x0b\x03\x03\x03\x03"))
	f.Add([]byte(strings.Repeat("\x05\x01\x06\x01", 40)))
	f.Fuzz(func(t *testing.T, ops []byte) {
		t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
		st := New(Options{MaxFlows: 6, MaxBytes: 16 << 10, ItemBytes: 512, Now: func() time.Time { return t0 }})
		var batch []flow.Record
		seq := map[flow.ID]uint64{}
		for i := 0; i+1 < len(ops); i += 2 {
			op, arg := ops[i]%12, ops[i+1]
			id := flow.ID(arg%8 + 1)    // few IDs, so they collide
			sid := flow.ID(arg%8 + 100) // the session of exchange id
			size := int(arg) * 7 % 1500 // payloads across the item cap
			at := t0.Add(time.Duration(i) * time.Millisecond)
			ex := &flow.Exchange{ID: id, Method: "GET", URL: fmt.Sprintf("http://h%d.example/p", arg%3), Start: at,
				RequestHeader: http.Header{"X": {strings.Repeat("h", size%200)}}}
			switch op {
			case 0:
				batch = append(batch, flow.Record{Kind: flow.KindExchangeStart, Exchange: ex})
			case 1:
				ex.Status, ex.ResponseBody = 200, flow.Body{Data: make([]byte, size), Len: int64(size)}
				batch = append(batch, flow.Record{Kind: flow.KindExchange, Exchange: ex})
			case 2:
				ex.Status, ex.WebSocket = 101, sid
				batch = append(batch, flow.Record{Kind: flow.KindExchange, Exchange: ex})
			case 3:
				exID := id
				if arg&0x80 != 0 {
					exID = 0 // the session before its exchange says whose it is
				}
				batch = append(batch, flow.Record{Kind: flow.KindWSOpen, Session: &flow.WSSession{ID: sid, Exchange: exID, Start: at}})
			case 4, 5:
				seq[sid]++
				batch = append(batch, flow.Record{Kind: flow.KindWSMessage, Message: flow.WSMessage{
					Session: sid, Seq: seq[sid], Time: at, From: flow.Side(arg & 1), Opcode: flow.OpText,
					Len: int64(size), PayloadLen: int64(size), Action: []string{"pass", "drop", "rewrite"}[arg%3],
					Payload: make([]byte, size), Replacement: make([]byte, size%3*10)}})
			case 6:
				batch = append(batch, flow.Record{Kind: flow.KindWSClose, Session: &flow.WSSession{ID: sid, Exchange: id, Start: at, Code: 1000}})
			case 7:
				batch = append(batch, flow.Record{Kind: flow.KindTunnelOpen, Tunnel: &flow.Tunnel{ID: id + 50, Host: "t.example", Port: 443, Mode: "bump", Start: at}})
			case 8:
				batch = append(batch, flow.Record{Kind: flow.KindTunnel, Tunnel: &flow.Tunnel{ID: id + 50, Host: "t.example", Port: 443, Mode: "splice", Start: at}})
			case 9:
				fid := id
				if arg&0x80 != 0 {
					fid = 0
				}
				batch = append(batch, flow.Record{Kind: flow.KindDenial, Denial: &flow.Denial{Flow: fid, Target: "d.example:25", Rule: "r", Status: 403}})
			case 10:
				batch = append(batch, flow.Record{Kind: flow.KindFault, Fault: &flow.Fault{Flow: sid, Fault: "ws-drop", Detail: strings.Repeat("d", size%100)}})
			case 11:
				if arg%4 == 0 {
					st.Observe(batch)
					batch = batch[:0]
					st.Clear()
				} else {
					batch = append(batch, flow.Record{Kind: flow.KindWSViolation, Violation: &flow.WSViolation{Session: sid, Violation: "bad"}})
				}
			}
			if arg%5 == 0 { // end a batch here
				st.Observe(batch)
				batch = batch[:0]
				if err := st.check(); err != nil {
					t.Fatalf("after op %d: %v", i/2, err)
				}
			}
		}
		st.Observe(batch)
		if err := st.check(); err != nil {
			t.Fatalf("at the end: %v", err)
		}
		for _, e := range st.Export() { // and every flow reads back
			if _, ok := st.Get(e.Flow.ID); !ok {
				t.Fatalf("exported flow %d not found", e.Flow.ID)
			}
		}
	})
}
