package flow

import (
	"sync"
	"testing"
	"time"
)

// collector keeps every record it sees.
type collector struct {
	mu      sync.Mutex
	records []Record
	batches int
}

func (c *collector) Observe(batch []Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.records = append(c.records, batch...)
	c.batches++
}

func (c *collector) seqs() []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]uint64, len(c.records))
	for i, r := range c.records {
		out[i] = r.Message.Seq
	}
	return out
}

func message(seq uint64) Record {
	return Record{Kind: KindWSMessage, Message: WSMessage{Seq: seq, Opcode: OpText}}
}

func TestBusDeliversInPublishOrderAndFlushesOnClose(t *testing.T) {
	b := NewBus()
	var a, c collector
	b.Subscribe(&a, Options{Name: "a"})
	b.Subscribe(&c, Options{Name: "c"})
	for i := uint64(1); i <= 1000; i++ {
		b.Publish(message(i))
	}
	b.Close()
	for name, col := range map[string]*collector{"a": &a, "c": &c} {
		got := col.seqs()
		if len(got) != 1000 {
			t.Fatalf("observer %s saw %d records, want 1000", name, len(got))
		}
		for i, s := range got {
			if s != uint64(i+1) {
				t.Fatalf("observer %s: record %d has seq %d: order not kept", name, i, s)
			}
		}
	}
	b.Publish(message(1001)) // after Close: ignored, no panic
	if n := len(a.seqs()); n != 1000 {
		t.Fatalf("a record published after Close was delivered (%d records)", n)
	}
}

// A stuck observer must not hold up the publisher nor the other observers;
// what it misses is counted.
func TestBusSlowObserverNeverBlocksPublisher(t *testing.T) {
	b := NewBus()
	release := make(chan struct{})
	var stuckSeen int
	stuck := b.Subscribe(ObserverFunc(func(batch []Record) {
		<-release
		stuckSeen += len(batch)
	}), Options{Name: "stuck", Queue: 16})
	var fast collector
	b.Subscribe(&fast, Options{Name: "fast", Queue: 100000})

	const n = 10000
	done := make(chan struct{})
	go func() {
		for i := uint64(1); i <= n; i++ {
			b.Publish(message(i))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Publish blocked behind a stuck observer")
	}
	if stuck.Dropped() == 0 {
		t.Fatal("the stuck observer's misses were not counted")
	}
	close(release)
	b.Close()
	if got := uint64(stuckSeen) + stuck.Dropped(); got != n {
		t.Fatalf("stuck observer: seen %d + dropped %d = %d, want %d", stuckSeen, stuck.Dropped(), got, n)
	}
	if got := len(fast.seqs()); got != n {
		t.Fatalf("the fast observer saw %d of %d records", got, n)
	}
}

func TestBusStatsNameEveryObserver(t *testing.T) {
	b := NewBus()
	block := make(chan struct{})
	b.Subscribe(ObserverFunc(func([]Record) { <-block }), Options{Name: "ui", Queue: 1})
	for i := uint64(0); i < 5; i++ {
		b.Publish(message(i))
	}
	stats := b.Stats()
	if len(stats) != 1 || stats[0].Name != "ui" {
		t.Fatalf("Stats() = %+v, want one entry named ui", stats)
	}
	// One record is with the observer, at most one queued; the rest missed.
	if stats[0].Dropped < 3 {
		t.Fatalf("Stats() = %+v: want at least 3 dropped of 5 with a queue of 1", stats)
	}
	close(block)
	b.Close()
}

func TestBusCapsAreTheLargestWish(t *testing.T) {
	b := NewBus()
	if b.Active() || b.PayloadBytes() != 0 || b.BodyBytes() != 0 {
		t.Fatal("an empty bus wants something")
	}
	s1 := b.Subscribe(ObserverFunc(func([]Record) {}), Options{PayloadBytes: 256})
	b.Subscribe(ObserverFunc(func([]Record) {}), Options{PayloadBytes: 64 << 10, BodyBytes: 1 << 20})
	if !b.Active() || b.PayloadBytes() != 64<<10 || b.BodyBytes() != 1<<20 {
		t.Fatalf("caps = %d/%d, want 65536/1048576", b.PayloadBytes(), b.BodyBytes())
	}
	s1.Cancel()
	if len(b.Stats()) != 1 {
		t.Fatalf("after Cancel, %d observers remain, want 1", len(b.Stats()))
	}
	b.Close()
}

func TestBusCancelDeliversWhatWasQueued(t *testing.T) {
	b := NewBus()
	var c collector
	s := b.Subscribe(&c, Options{})
	for i := uint64(1); i <= 100; i++ {
		b.Publish(message(i))
	}
	s.Cancel()
	b.Publish(message(101))
	if got := len(c.seqs()); got != 100 {
		t.Fatalf("after Cancel the observer has %d records, want exactly the 100 published before", got)
	}
	b.Close()
}

func TestBusConcurrentPublishersAndSubscribers(t *testing.T) {
	b := NewBus()
	var wg sync.WaitGroup
	var cols [4]collector
	for i := range cols {
		b.Subscribe(&cols[i], Options{Queue: 1 << 16})
	}
	for p := 0; p < 8; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				b.Publish(Record{Kind: KindFault, Fault: &Fault{Fault: "x"}})
				_ = b.NextID()
			}
		}()
	}
	late := b.Subscribe(ObserverFunc(func([]Record) {}), Options{})
	wg.Wait()
	late.Cancel()
	b.Close()
	for i := range cols {
		if n := len(cols[i].records); n != 8000 {
			t.Fatalf("observer %d saw %d of 8000 records", i, n)
		}
	}
	if id := b.NextID(); id != 8001 {
		t.Fatalf("NextID after 8000 ids = %d, want 8001: ids must be unique and dense", id)
	}
}

func TestKindAndOpcodeNames(t *testing.T) {
	if KindWSMessage.String() != "ws_message" || Kind(200).String() != "unknown" {
		t.Fatal("kind names are off")
	}
	for op, want := range map[Opcode]string{OpText: "text", OpBinary: "binary", OpClose: "close", OpPing: "ping", OpPong: "pong", 3: "unknown"} {
		if op.String() != want {
			t.Fatalf("Opcode(%d) = %q, want %q", op, op.String(), want)
		}
	}
	if !OpPing.Control() || OpText.Control() || FromServer.String() != "server" {
		t.Fatal("Control or Side names are off")
	}
}
