package flow

import (
	"sync"
	"sync/atomic"
	"time"
)

// Observer receives published records on a goroutine of its own, in
// publish order, in batches (a batch holds at least one record). The
// slice is reused after Observe returns; the records in it are not and
// may be kept.
type Observer interface {
	Observe(batch []Record)
}

// ObserverFunc adapts a function to Observer.
type ObserverFunc func(batch []Record)

// Observe calls f.
func (f ObserverFunc) Observe(batch []Record) { f(batch) }

// Options say what an observer wants from the bus.
type Options struct {
	// Name appears in Stats.
	Name string
	// Queue is how many records may wait for the observer; when it is
	// full, new records are dropped for this observer (and counted),
	// because a slow observer must never slow traffic. Default 8192.
	Queue int
	// PayloadBytes is how many bytes of each WebSocket message's payload
	// the observer wants; 0 none. The bus copies the largest wish of all
	// its observers once per message, and only when some observer wants
	// payloads.
	PayloadBytes int
	// BodyBytes is how many bytes of each HTTP body the observer wants; 0
	// none. Bodies are then hashed too.
	BodyBytes int
	// Linger is how long the observer waits, once a record has arrived,
	// for more to join its batch. An observer that keeps up with traffic
	// would otherwise be woken for every record, and each wake-up costs
	// the publisher (the relay) more than the record itself; while the
	// observer lingers, publishing is a plain enqueue. The price is that
	// much delay. 0: no waiting.
	Linger time.Duration
}

// Bus fans published records out to observers without ever blocking the
// publisher. The zero value is not usable: call NewBus.
type Bus struct {
	nextID atomic.Uint64
	// subs is an immutable slice, replaced on Subscribe and on
	// cancellation, so Publish reads it without a lock.
	subs   atomic.Pointer[[]*Subscription]
	mu     sync.Mutex // serialises changes to subs
	closed atomic.Bool
	wg     sync.WaitGroup
}

// NewBus returns a bus with no observers.
func NewBus() *Bus {
	b := &Bus{}
	b.subs.Store(&[]*Subscription{})
	return b
}

// NextID returns a fresh flow ID.
func (b *Bus) NextID() ID { return ID(b.nextID.Add(1)) }

// Subscription is one observer's place on the bus.
type Subscription struct {
	bus     *Bus
	obs     Observer
	opts    Options
	queue   chan Record
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	dropped atomic.Uint64
	seen    atomic.Uint64
}

// Subscribe adds an observer. It sees records published from now on. It
// may be called at any time, also while traffic flows.
func (b *Bus) Subscribe(o Observer, opts Options) *Subscription {
	if opts.Queue <= 0 {
		opts.Queue = 8192
	}
	s := &Subscription{
		bus:   b,
		obs:   o,
		opts:  opts,
		queue: make(chan Record, opts.Queue),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	b.mu.Lock()
	old := *b.subs.Load()
	subs := make([]*Subscription, len(old), len(old)+1)
	copy(subs, old)
	b.subs.Store(ptr(append(subs, s)))
	b.mu.Unlock()
	b.wg.Add(1)
	go s.deliver()
	return s
}

func ptr[T any](v T) *T { return &v }

// Cancel removes the observer. Records already queued are still
// delivered; Cancel returns when the observer has seen them.
func (s *Subscription) Cancel() {
	b := s.bus
	b.mu.Lock()
	old := *b.subs.Load()
	subs := make([]*Subscription, 0, len(old))
	for _, o := range old {
		if o != s {
			subs = append(subs, o)
		}
	}
	b.subs.Store(&subs)
	b.mu.Unlock()
	s.once.Do(func() { close(s.stop) })
	<-s.done
}

// Dropped counts the records this observer missed because its queue was
// full.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// deliver runs the observer: one record, then whatever else is queued, up
// to a batch, so a busy observer is called once per batch, not per record.
func (s *Subscription) deliver() {
	defer s.bus.wg.Done()
	defer close(s.done)
	const maxBatch = 256
	batch := make([]Record, 0, maxBatch)
	var linger *time.Timer
	if s.opts.Linger > 0 {
		linger = time.NewTimer(s.opts.Linger)
		defer linger.Stop()
	}
	for {
		select {
		case r := <-s.queue:
			batch = append(batch[:0], r)
		case <-s.stop:
			s.drain(batch)
			return
		}
		if linger != nil && len(s.queue) < maxBatch {
			linger.Reset(s.opts.Linger)
			select {
			case <-linger.C:
			case <-s.stop:
			}
		}
	fill:
		for len(batch) < maxBatch {
			select {
			case r := <-s.queue:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		s.observe(batch)
	}
}

// drain delivers what is still queued after a stop.
func (s *Subscription) drain(batch []Record) {
	for {
		batch = batch[:0]
	fill:
		for len(batch) < cap(batch) {
			select {
			case r := <-s.queue:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		if len(batch) == 0 {
			return
		}
		s.observe(batch)
	}
}

func (s *Subscription) observe(batch []Record) {
	s.seen.Add(uint64(len(batch)))
	s.obs.Observe(batch)
	clear(batch) // let the records go once the observer is done with them
}

// Publish hands r to every observer without blocking: an observer whose
// queue is full misses it. After Close, Publish does nothing.
func (b *Bus) Publish(r Record) {
	if b.closed.Load() {
		return
	}
	for _, s := range *b.subs.Load() {
		select {
		case s.queue <- r:
		default:
			s.dropped.Add(1)
		}
	}
}

// Active reports whether any observer is subscribed, so a publisher can
// skip building records nobody reads.
func (b *Bus) Active() bool { return len(*b.subs.Load()) > 0 }

// PayloadBytes is the most WebSocket payload bytes any observer wants: a
// publisher copies that many (or none) into WSMessage.Payload.
func (b *Bus) PayloadBytes() int {
	n := 0
	for _, s := range *b.subs.Load() {
		n = max(n, s.opts.PayloadBytes)
	}
	return n
}

// BodyBytes is the most HTTP body bytes any observer wants.
func (b *Bus) BodyBytes() int {
	n := 0
	for _, s := range *b.subs.Load() {
		n = max(n, s.opts.BodyBytes)
	}
	return n
}

// Stat is one observer's delivery figures.
type Stat struct {
	Name    string
	Seen    uint64
	Dropped uint64
	Queued  int
}

// Stats reports, per observer, what it has seen and missed.
func (b *Bus) Stats() []Stat {
	subs := *b.subs.Load()
	out := make([]Stat, len(subs))
	for i, s := range subs {
		out[i] = Stat{Name: s.opts.Name, Seen: s.seen.Load(), Dropped: s.dropped.Load(), Queued: len(s.queue)}
	}
	return out
}

// Close stops the bus: records published from now on are ignored, and
// Close returns when every observer has seen what was queued for it.
func (b *Bus) Close() {
	b.closed.Store(true)
	b.mu.Lock()
	subs := *b.subs.Load()
	b.subs.Store(&[]*Subscription{})
	b.mu.Unlock()
	for _, s := range subs {
		s.once.Do(func() { close(s.stop) })
	}
	b.wg.Wait()
}
