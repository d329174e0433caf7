package store

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hopscope/hopscope/flow"
)

// chattyHour plays an hour of simulated traffic into st, a second at a
// time: sessions WebSockets each sending perSecond messages (both
// directions, 100 to 2,100 bytes), and one HTTP exchange with a 10 KiB
// body a second. check runs after every simulated second.
func chattyHour(st *Store, sessions, perSecond int, check func(second int)) (messages int) {
	w := newWorld()
	payload := strings.Repeat("chatty websocket traffic, ", 100) // 2,600 bytes
	var socks []*session
	for i := 0; i < sessions; i++ {
		ws := w.websocket("ws://chatty.example/feed")
		socks = append(socks, ws)
		st.Observe(ws.open())
	}
	recs := make([]flow.Record, 0, sessions*perSecond+2)
	for second := 0; second < 3600; second++ {
		recs = recs[:0]
		for _, ws := range socks {
			for i := 0; i < perSecond; i++ {
				n := 100 + (second*perSecond+i)%2000
				recs = append(recs, ws.msg(flow.Side(i%2), flow.OpText, payload[:n]))
				messages++
			}
		}
		s, e := w.exchange("GET", "http://chatty.example/poll", 200, "", payload[:1000])
		e.Exchange.ResponseBody = flow.Body{Data: []byte(strings.Repeat("b", 10<<10)), Len: 10 << 10}
		recs = append(recs, s, e)
		st.Observe(recs)
		w.clock.step(time.Second)
		if check != nil {
			check(second)
		}
	}
	return messages
}

// TestChattyHourStaysWithinBytes: an hour of chatty WebSockets (simulated
// time) never takes the store past its byte bound, the sessions stay, and
// every message is either kept or counted as evicted.
func TestChattyHourStaysWithinBytes(t *testing.T) {
	const maxBytes = 2 << 20
	st := New(Options{MaxBytes: maxBytes})
	var peak int64
	sent := chattyHour(st, 2, 10, func(second int) {
		b := st.Stats().Bytes
		peak = max(peak, b)
		if b > maxBytes {
			t.Fatalf("second %d: store holds %d bytes, bound %d", second, b, maxBytes)
		}
	})
	s := st.Stats()
	if s.EvictedMessages == 0 || s.EvictedFlows == 0 {
		t.Errorf("an hour fitted in %d bytes? %+v", maxBytes, s)
	}
	var kept, evicted int64
	for _, f := range listFlows(t, st, "type:websocket").Flows {
		kept += int64(f.MessagesKept)
		evicted += f.EvictedMessages
	}
	if n := len(listFlows(t, st, "type:websocket").Flows); n != 2 {
		t.Fatalf("%d live sessions kept, want 2", n)
	}
	if kept+evicted != int64(sent) {
		t.Errorf("sent %d messages, kept %d + evicted %d", sent, kept, evicted)
	}
	t.Logf("%d messages in a simulated hour; peak %d bytes of %d; %d kept, %d evicted, %d flows evicted", sent, peak, maxBytes, kept, evicted, s.EvictedFlows)
}

// BenchmarkChattyHour plays an hour of chatty WebSocket traffic (20
// sessions at 20 messages a second each, 1.44 million messages, plus an
// exchange a second) into a store bounded at 32 MiB and at the default
// 256 MiB, and reports the store's count of bytes and the Go heap it
// really holds afterwards:
//
//	go test ./store -run '^$' -bench ChattyHour -benchtime 1x -benchmem
func BenchmarkChattyHour(b *testing.B) {
	for _, maxBytes := range []int64{32 << 20, DefaultMaxBytes} {
		b.Run(fmt.Sprintf("bound-%dMiB", maxBytes>>20), func(b *testing.B) {
			for b.Loop() {
				runtime.GC()
				var before runtime.MemStats
				runtime.ReadMemStats(&before)
				st := New(Options{MaxBytes: maxBytes})
				var peak int64
				msgs := chattyHour(st, 20, 20, func(int) { peak = max(peak, st.Stats().Bytes) })
				runtime.GC()
				var after runtime.MemStats
				runtime.ReadMemStats(&after)
				s := st.Stats()
				b.ReportMetric(float64(msgs), "msgs/hour")
				b.ReportMetric(float64(peak)/(1<<20), "peak-store-MiB")
				b.ReportMetric(float64(maxBytes)/(1<<20), "bound-MiB")
				b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/(1<<20), "heap-MiB")
				b.ReportMetric(float64(s.EvictedMessages), "evicted-msgs")
				runtime.KeepAlive(st)
			}
		})
	}
}

// BenchmarkObserveMessage is the store's cost per WebSocket message on its
// own goroutine (the relay only enqueues): 200-byte text messages into a
// store at its byte bound, so every message also evicts one, one at a
// time (batch-1, the worst case) and in the bus's largest batches.
//
//	go test ./store -run '^$' -bench ObserveMessage -benchmem
func BenchmarkObserveMessage(b *testing.B) {
	for _, size := range []int{1, 256} {
		b.Run(fmt.Sprintf("batch-%d", size), func(b *testing.B) {
			w := newWorld()
			st := New(Options{MaxBytes: 4 << 20})
			ws := w.websocket("ws://bench.example/")
			st.Observe(ws.open())
			payload := strings.Repeat("m", 200)
			batch := make([]flow.Record, 256)
			for i := range batch {
				batch[i] = ws.msg(flow.FromClient, flow.OpText, payload)
			}
			for st.Stats().EvictedMessages == 0 { // fill to the bound first
				st.Observe(batch)
			}
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				st.Observe(batch[:size])
				n += size
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/msg")
		})
	}
}

// BenchmarkList is a search over a full store of 10,000 exchanges, as
// the UI's search box runs it: a field term and a body word.
//
//	go test ./store -run '^$' -bench List -benchmem
func BenchmarkList(b *testing.B) {
	w := newWorld()
	st := New(Options{})
	var recs []flow.Record
	for i := 0; i < DefaultMaxFlows; i++ {
		_, e := w.exchange("GET", fmt.Sprintf("http://host%d.example/api/items/%d?page=2", i%50, i), 200, "", strings.Repeat("body text ", 100))
		recs = append(recs, e)
	}
	st.Observe(recs)
	for _, filter := range []string{"", "host:host7 status:2xx", "needle"} {
		b.Run(fmt.Sprintf("%q", filter), func(b *testing.B) {
			f, err := ParseFilter(filter)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				st.ListFilter(f, Query{Newest: true, Limit: 200})
			}
		})
	}
}
