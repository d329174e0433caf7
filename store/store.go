package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/hopscope/hopscope/contentcoding"
	"github.com/hopscope/hopscope/flow"
)

// Defaults for Options.
const (
	DefaultMaxFlows  = 10_000
	DefaultMaxBytes  = 256 << 20
	DefaultItemBytes = 64 << 10
	// maxFaultsPerFlow bounds the faults kept on one flow: ws-drop on a
	// chatty session acts on every message. The rest are counted.
	maxFaultsPerFlow = 64
	// maxViolationsPerFlow bounds the violations kept on one flow (a
	// session ends at its first, so this is generous).
	maxViolationsPerFlow = 8
	// smallPayload is the largest payload flow.Slab carves from a shared
	// block; the store copies those (see capPayload).
	smallPayload = 1 << 10
)

// Options bound a Store. The zero value means the defaults.
type Options struct {
	// MaxFlows is how many flows the store keeps; when a new one arrives
	// beyond it, the oldest finished flow goes (an open one only when all
	// are open). Default 10,000; a negative value means the default.
	MaxFlows int
	// MaxBytes bounds what the store holds, counted as payload, body and
	// header bytes kept plus a fixed overhead per flow and per message.
	// Beyond it the oldest message or finished flow goes, whichever is
	// older. Default 256 MiB.
	MaxBytes int64
	// ItemBytes is how much of each body and each WebSocket message
	// payload is kept: the first ItemBytes bytes, with the full length and
	// (when the store saw the whole) a SHA-256. Default 64 KiB; a
	// negative value keeps no payloads at all.
	ItemBytes int
	// Now stamps standalone records that carry no time; default
	// time.Now. Tests set it to simulate time.
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.MaxFlows <= 0 {
		o.MaxFlows = DefaultMaxFlows
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.ItemBytes == 0 {
		o.ItemBytes = DefaultItemBytes
	}
	if o.ItemBytes < 0 {
		o.ItemBytes = 0
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Store keeps recent flows in memory, bounded by count and by bytes. It is
// a flow.Observer: subscribe it to the proxy's bus (Attach). All methods
// are safe for concurrent use.
type Store struct {
	opts Options

	mu sync.RWMutex
	// byID finds an entry by any of its IDs (exchange, session, tunnel).
	byID map[flow.ID]*entry
	// order holds entries by creation, with holes (nil) where entries
	// were evicted; holes are squeezed out when they are half the slice.
	order []*entry
	holes int
	// open and done are the eviction lists: finished flows go oldest
	// finished first, open ones only when nothing else is left.
	open, done list
	// msgs orders every kept message across sessions, oldest first, for
	// byte eviction; refs to evicted messages are skipped lazily.
	msgs     []msgRef
	msgsHead int
	// counters
	flows, messages int
	bytes           int64
	stamp           uint64 // orders flows and messages as they arrive
	nextSeq         uint64 // numbers flows in the order they arrived
	nextLocalID     uint64
	evictedFlows    uint64
	evictedMessages uint64
	orphans         uint64

	subs  map[*Subscriber]struct{}
	dirty []*entry // entries changed in the current batch
}

// localIDBase starts the IDs the store gives records that have none
// (standalone denials and faults) and imported flows, far above what a bus
// hands out, so the two never meet.
const localIDBase = flow.ID(1) << 62

var _ flow.Observer = (*Store)(nil)

// New returns an empty store.
func New(opts Options) *Store {
	return &Store{
		opts: opts.withDefaults(),
		byID: make(map[flow.ID]*entry),
		subs: make(map[*Subscriber]struct{}),
	}
}

// Options returns the store's settings with defaults filled in.
func (s *Store) Options() Options { return s.opts }

// BusOptions says what the store wants from a bus: payloads and bodies up
// to ItemBytes.
// It lingers a millisecond for records to batch up, as the event log
// does: each wake-up costs the relay more than a record, and a live view
// does not notice a millisecond.
func (s *Store) BusOptions() flow.Options {
	return flow.Options{Name: "store", PayloadBytes: s.opts.ItemBytes, BodyBytes: s.opts.ItemBytes, Linger: time.Millisecond}
}

// Attach subscribes the store to bus. Cancel the subscription to detach.
func (s *Store) Attach(bus *flow.Bus) *flow.Subscription {
	return bus.Subscribe(s, s.BusOptions())
}

// NewID returns an ID for a flow that did not come from a bus (an
// imported one); it never collides with bus IDs.
func (s *Store) NewID() flow.ID {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.localID()
}

func (s *Store) localID() flow.ID {
	s.nextLocalID++
	return localIDBase + flow.ID(s.nextLocalID)
}

// Stats are the store's figures.
type Stats struct {
	Flows    int   `json:"flows"`
	Messages int   `json:"messages"`
	Bytes    int64 `json:"bytes"`
	MaxFlows int   `json:"max_flows"`
	MaxBytes int64 `json:"max_bytes"`
	// ItemBytes is how much of each body and payload is kept.
	ItemBytes int `json:"item_bytes"`
	// EvictedFlows and EvictedMessages count what the bounds pushed out
	// since the start (Clear does not count).
	EvictedFlows    uint64 `json:"evicted_flows"`
	EvictedMessages uint64 `json:"evicted_messages"`
	// Orphans counts the sessions the store first heard of from a
	// message (their opening record was missed, or their flow evicted):
	// it made a flow for them from what the message says.
	Orphans uint64 `json:"orphans"`
}

// Stats reports the store's figures.
func (s *Store) Stats() Stats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return Stats{
		Flows: s.flows, Messages: s.messages, Bytes: s.bytes,
		MaxFlows: s.opts.MaxFlows, MaxBytes: s.opts.MaxBytes, ItemBytes: s.opts.ItemBytes,
		EvictedFlows: s.evictedFlows, EvictedMessages: s.evictedMessages, Orphans: s.orphans,
	}
}

// Clear forgets every flow. Subscribers get an UpdateClear.
func (s *Store) Clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.order {
		if e != nil {
			e.evicted = true
		}
	}
	s.byID = make(map[flow.ID]*entry)
	s.order, s.holes = nil, 0
	s.open, s.done = list{}, list{}
	s.msgs, s.msgsHead = nil, 0
	s.flows, s.messages, s.bytes = 0, 0, 0
	s.dirty = s.dirty[:0]
	s.broadcast(Update{Kind: UpdateClear})
}

// Observe takes a batch of records from the bus.
func (s *Store) Observe(batch []flow.Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range batch {
		s.apply(&batch[i])
	}
	s.enforce()
	s.flushDirty()
}

func (s *Store) apply(r *flow.Record) {
	switch r.Kind {
	case flow.KindExchangeStart, flow.KindExchange:
		if r.Exchange == nil {
			return
		}
		ex := s.capExchange(r.Exchange)
		e := s.entryFor(ex.ID, ex.Start)
		if r.Kind == flow.KindExchangeStart && e.exDone {
			return // the end overtook the start; keep the end
		}
		e.ex = ex
		e.exDone = r.Kind == flow.KindExchange
		e.reqPlain = s.plain(ex.RequestHeader, ex.RequestBody.Data)
		e.respPlain = s.plain(ex.ResponseHeader, ex.ResponseBody.Data)
		if ex.WebSocket != 0 {
			s.alias(e, ex.WebSocket)
		}
		s.touch(e)
	case flow.KindTunnelOpen, flow.KindTunnel:
		if r.Tunnel == nil {
			return
		}
		e := s.entryFor(r.Tunnel.ID, r.Tunnel.Start)
		if r.Kind == flow.KindTunnelOpen && e.tunDone {
			return
		}
		e.tun = r.Tunnel
		e.tunDone = r.Kind == flow.KindTunnel
		s.touch(e)
	case flow.KindDenial:
		if r.Denial == nil {
			return
		}
		id := r.Denial.Flow
		if id == 0 {
			id = s.localID()
		}
		e := s.entryFor(id, r.Denial.Time)
		e.den = r.Denial
		s.touch(e)
	case flow.KindFault:
		if r.Fault == nil {
			return
		}
		id := r.Fault.Flow
		if id == 0 {
			id = s.localID()
		}
		e := s.entryFor(id, r.Fault.Time)
		e.faultCount++
		if len(e.faults) < maxFaultsPerFlow {
			e.faults = append(e.faults, *r.Fault)
		}
		s.touch(e)
	case flow.KindIntercept:
		if r.Intercept == nil || r.Intercept.Exchange == 0 {
			return
		}
		e := s.entryFor(r.Intercept.Exchange, r.Intercept.Time)
		if len(e.intercepts) < maxFaultsPerFlow {
			e.intercepts = append(e.intercepts, *r.Intercept)
		}
		s.touch(e)
	case flow.KindWSOpen, flow.KindWSClose:
		ss := r.Session
		if ss == nil {
			return
		}
		e := s.byID[ss.ID]
		if e == nil && ss.Exchange != 0 {
			e = s.byID[ss.Exchange]
		}
		if e == nil {
			e = s.entryFor(ss.ID, ss.Start)
		}
		s.alias(e, ss.ID)
		if r.Kind == flow.KindWSOpen && e.sessDone {
			return
		}
		e.sess = ss
		e.sessDone = r.Kind == flow.KindWSClose
		s.touch(e)
	case flow.KindWSMessage:
		m := &r.Message
		s.addMessage(s.sessionFor(m.Session, m.Client, m.Tunnel, m.Time), m)
	case flow.KindWSViolation:
		v := r.Violation
		if v == nil {
			return
		}
		e := s.sessionFor(v.Session, v.Client, v.Tunnel, v.Time)
		if len(e.violations) < maxViolationsPerFlow {
			e.violations = append(e.violations, *v)
		}
		s.touch(e)
	}
}

// sessionFor returns the flow of a session a message names. When the
// store never saw the session open (the bus dropped the record, or a
// bound evicted the flow), it makes a flow from what the message says, so
// a live session stays visible; Stats.Orphans counts those.
func (s *Store) sessionFor(id flow.ID, client flow.Client, tunnel flow.ID, at time.Time) *entry {
	if e := s.byID[id]; e != nil {
		return e
	}
	s.orphans++
	e := s.entryFor(id, at)
	e.sess = &flow.WSSession{ID: id, Client: client, Tunnel: tunnel, Start: e.start}
	s.touch(e)
	return e
}

// entryFor returns the entry known by id, making one if there is none.
func (s *Store) entryFor(id flow.ID, start time.Time) *entry {
	if e := s.byID[id]; e != nil {
		return e
	}
	if start.IsZero() {
		start = s.opts.Now()
	}
	s.nextSeq++
	e := &entry{id: id, seq: s.nextSeq, start: start, open: true}
	s.byID[id] = e
	e.ids = append(e.ids, id)
	e.pos = len(s.order)
	s.order = append(s.order, e)
	s.open.pushBack(e)
	s.flows++
	e.cost = e.computeCost()
	s.bytes += e.cost
	return e
}

func (s *Store) alias(e *entry, id flow.ID) {
	if other := s.byID[id]; other == e {
		return
	} else if other != nil {
		// The session was known on its own before its exchange said
		// whose it is (records overtook each other): fold it in.
		s.merge(e, other)
	}
	s.byID[id] = e
	e.ids = append(e.ids, id)
}

// merge moves what other holds into e and drops other.
func (s *Store) merge(e, other *entry) {
	if e.sess == nil {
		e.sess, e.sessDone = other.sess, other.sessDone
	}
	e.faults = append(e.faults, other.faults...)
	if len(e.faults) > maxFaultsPerFlow {
		e.faults = e.faults[:maxFaultsPerFlow]
	}
	e.faultCount += other.faultCount
	e.violations = append(e.violations, other.violations...)
	e.intercepts = append(e.intercepts, other.intercepts...)
	for _, m := range other.msgs.kept() {
		c := *m
		c.Flow = e.id
		s.pushMessage(e, &c)
	}
	e.msgStats.add(other.msgStats)
	s.removeEntry(other, false)
}

// touch recomputes an entry's cost and list after a change and marks it
// for the batch's updates.
func (s *Store) touch(e *entry) {
	old := e.cost
	e.cost = e.computeCost()
	s.bytes += e.cost - old
	if open := e.isOpen(); open != e.open {
		e.open = open
		if open {
			s.done.remove(e)
			s.open.pushBack(e)
		} else {
			s.open.remove(e)
			s.stamp++
			e.doneStamp = s.stamp
			s.done.pushBack(e)
		}
	}
	s.markDirty(e)
}

func (s *Store) markDirty(e *entry) {
	if !e.dirty {
		e.dirty = true
		s.dirty = append(s.dirty, e)
	}
}

func (s *Store) addMessage(e *entry, rm *flow.WSMessage) {
	m := Message{
		Flow:        e.id,
		Session:     rm.Session,
		Seq:         rm.Seq,
		Time:        rm.Time,
		From:        rm.From.String(),
		Type:        rm.Opcode.String(),
		Opcode:      int(rm.Opcode),
		Len:         rm.Len,
		WireLen:     rm.WireLen,
		PayloadLen:  rm.PayloadLen,
		Fragments:   rm.Fragments,
		Compressed:  rm.Compressed,
		Truncated:   rm.Truncated,
		Action:      rm.Action,
		Rule:        rm.Rule,
		Note:        rm.Note,
		Actor:       rm.Actor,
		CloseCode:   rm.CloseCode,
		CloseReason: rm.CloseReason,
	}
	if m.Time.IsZero() {
		m.Time = s.opts.Now()
	}
	m.Payload, m.PayloadCut, m.SHA256 = s.capPayload(rm.Payload, rm.Len)
	m.Replacement, _, _ = s.capPayload(rm.Replacement, int64(len(rm.Replacement)))
	e.msgStats.count(&m)
	s.pushMessage(e, &m)
	if !e.announced {
		s.flushEntry(e)
	}
	s.broadcastMessage(e, &m)
	s.markDirty(e)
}

func (s *Store) pushMessage(e *entry, m *Message) {
	s.stamp++
	m.stamp = s.stamp
	m.cost = m.computeCost()
	e.msgs.push(m)
	e.msgBytes += m.cost
	s.bytes += m.cost
	s.messages++
	s.msgs = append(s.msgs, msgRef{e: e, stamp: m.stamp})
}

// capPayload keeps at most ItemBytes of p. It copies when it keeps less
// than p, when p's backing array is larger than what is kept (another
// observer asked the bus for more), and always for small payloads, which
// the relay carves from shared 16 KiB blocks (flow.Slab): a kept carving
// would keep its whole block alive. So the store's count of bytes is what
// it really holds. whole is the payload's full length.
func (s *Store) capPayload(p []byte, whole int64) (kept []byte, cut bool, sum string) {
	if p == nil {
		return nil, whole > 0, ""
	}
	n := min(len(p), s.opts.ItemBytes)
	sawWhole := int64(len(p)) >= whole
	cut = int64(n) < whole
	if sawWhole && cut {
		h := sha256.Sum256(p)
		sum = hex.EncodeToString(h[:])
	}
	if n <= smallPayload || n < len(p) || cap(p) > n+n/4+64 {
		return append([]byte(nil), p[:n]...), cut, sum
	}
	return p[:n:n], cut, sum
}

// plain decodes a content-encoded body, as far as it was kept and at
// most ItemBytes of it, so that searches find text in gzip or br answers;
// nil when the body is not encoded or does not decode.
func (s *Store) plain(h http.Header, data []byte) []byte {
	enc := strings.Join(h.Values("Content-Encoding"), ", ")
	if len(data) == 0 || contentcoding.Identity(enc) {
		return nil
	}
	out, _, err := contentcoding.Decode(data, enc, s.opts.ItemBytes)
	if err != nil || len(out) == 0 {
		return nil
	}
	return bytes.Clone(out)
}

// capExchange returns a copy of ex with bodies cut to ItemBytes.
func (s *Store) capExchange(ex *flow.Exchange) *flow.Exchange {
	c := *ex
	c.RequestBody = s.capBody(c.RequestBody)
	c.ResponseBody = s.capBody(c.ResponseBody)
	return &c
}

func (s *Store) capBody(b flow.Body) flow.Body {
	if b.Data == nil {
		return b
	}
	kept, cut, _ := s.capPayload(b.Data, int64(len(b.Data)))
	b.Data = kept
	b.Truncated = b.Truncated || cut
	return b
}

// enforce evicts until both bounds hold.
func (s *Store) enforce() {
	for s.flows > s.opts.MaxFlows {
		s.evictFlow()
	}
	for s.bytes > s.opts.MaxBytes {
		if !s.evictOldest() {
			return
		}
	}
	s.compact()
}

// evictFlow removes the oldest finished flow, or the oldest open one when
// all are open.
func (s *Store) evictFlow() bool {
	e := s.done.head
	if e == nil {
		e = s.open.head
	}
	if e == nil {
		return false
	}
	s.removeEntry(e, true)
	return true
}

// evictOldest removes whichever is older: the oldest kept message, or the
// oldest finished flow (by when it finished). Open flows go last, so a
// live WebSocket keeps its newest messages rather than vanishing.
func (s *Store) evictOldest() bool {
	ref, ok := s.oldestMessage()
	if ok && (s.done.head == nil || ref.stamp < s.done.head.doneStamp) {
		s.evictMessage(ref.e)
		return true
	}
	return s.evictFlow()
}

// oldestMessage finds the oldest kept message, dropping stale refs.
func (s *Store) oldestMessage() (msgRef, bool) {
	for s.msgsHead < len(s.msgs) {
		ref := s.msgs[s.msgsHead]
		if !ref.e.evicted && ref.e.msgs.len() > 0 && ref.e.msgs.front().stamp == ref.stamp {
			return ref, true
		}
		s.msgs[s.msgsHead] = msgRef{}
		s.msgsHead++
	}
	return msgRef{}, false
}

func (s *Store) evictMessage(e *entry) {
	m := e.msgs.pop()
	e.msgBytes -= m.cost
	s.bytes -= m.cost
	s.messages--
	s.msgs[s.msgsHead] = msgRef{}
	s.msgsHead++
	e.evictedMsgs++
	e.evictedMsgBytes += m.cost
	s.evictedMessages++
	s.markDirty(e)
}

func (s *Store) removeEntry(e *entry, evicted bool) {
	if e.open {
		s.open.remove(e)
	} else {
		s.done.remove(e)
	}
	for _, id := range e.ids {
		if s.byID[id] == e {
			delete(s.byID, id)
		}
	}
	s.bytes -= e.cost + e.msgBytes
	s.messages -= e.msgs.len()
	s.flows--
	e.evicted = true
	s.holes++
	s.order[e.pos] = nil
	if evicted {
		s.evictedFlows++
		s.evictedMessages += uint64(e.msgs.len())
	}
	// Stale refs in s.msgs may keep e itself a while; not its payloads.
	e.msgs = msgRing{}
	if e.announced {
		s.broadcast(Update{Kind: UpdateEvict, ID: e.id})
	}
}

// compact squeezes holes out of order and stale refs out of msgs once they
// are half of them, so both stay proportional to what is kept.
func (s *Store) compact() {
	if s.holes > 64 && s.holes*2 > len(s.order) {
		kept := s.order[:0]
		for _, e := range s.order {
			if e != nil {
				e.pos = len(kept)
				kept = append(kept, e)
			}
		}
		clear(s.order[len(kept):])
		s.order, s.holes = kept, 0
	}
	if live := len(s.msgs) - s.msgsHead; live > 1024 && live > 2*s.messages || s.msgsHead > 1024 && s.msgsHead*2 > len(s.msgs) {
		kept := make([]msgRef, 0, s.messages+s.messages/4)
		for _, ref := range s.msgs[s.msgsHead:] {
			if !ref.e.evicted && ref.e.msgs.len() > 0 && ref.stamp >= ref.e.msgs.front().stamp {
				kept = append(kept, ref)
			}
		}
		s.msgs, s.msgsHead = kept, 0
	}
}

// entry is one flow as the store keeps it. All fields are guarded by the
// store's mutex.
type entry struct {
	id    flow.ID
	ids   []flow.ID
	seq   uint64
	pos   int // index in Store.order
	start time.Time

	ex     *flow.Exchange
	exDone bool
	// reqPlain and respPlain are the bodies decoded from their
	// Content-Encoding, for search; nil when not encoded.
	reqPlain, respPlain []byte
	tun                 *flow.Tunnel
	tunDone             bool
	den                 *flow.Denial
	sess                *flow.WSSession
	sessDone            bool
	faults              []flow.Fault
	faultCount          int
	violations          []flow.WSViolation
	intercepts          []flow.Intercept

	msgs            msgRing
	msgStats        msgStats
	msgBytes        int64
	evictedMsgs     int64
	evictedMsgBytes int64

	cost       int64
	open       bool
	doneStamp  uint64
	evicted    bool
	dirty      bool
	announced  bool
	rev        uint64
	prev, next *entry
}

func (e *entry) isOpen() bool {
	if e.sess != nil || (e.ex != nil && e.ex.WebSocket != 0) {
		if !e.sessDone {
			// a session whose handshake failed never opens; its
			// exchange's end closes the flow.
			return e.sess != nil || !e.exDone || e.ex.Status == http.StatusSwitchingProtocols
		}
		return false
	}
	if e.ex != nil {
		return !e.exDone
	}
	if e.tun != nil {
		return !e.tunDone
	}
	return false
}

const (
	entryOverhead = int64(unsafe.Sizeof(entry{})) + int64(unsafe.Sizeof(flow.Exchange{})) + 64
	// a message is held by pointer from its ring (8 bytes a slot, up to
	// twice over while the ring grows) and by a ref in the eviction queue
	messageOverhead = int64(unsafe.Sizeof(Message{})) + 16 + int64(unsafe.Sizeof(msgRef{}))*2
)

func (e *entry) computeCost() int64 {
	c := entryOverhead + int64(len(e.ids))*8
	if ex := e.ex; ex != nil {
		c += int64(len(ex.URL)+len(ex.Method)+len(ex.Proto)+len(ex.Error)+len(ex.Client.Addr)) +
			headerCost(ex.RequestHeader) + headerCost(ex.ResponseHeader) +
			int64(cap(ex.RequestBody.Data)+cap(ex.ResponseBody.Data)+len(ex.RequestBody.SHA256)+len(ex.ResponseBody.SHA256)) +
			int64(cap(e.reqPlain)+cap(e.respPlain))
	}
	if t := e.tun; t != nil {
		c += int64(unsafe.Sizeof(*t)) + int64(len(t.Host)+len(t.Error)+len(t.SNI)+len(t.Client.Addr))
	}
	if d := e.den; d != nil {
		c += int64(unsafe.Sizeof(*d)) + int64(len(d.Target)+len(d.Rule)+len(d.Reason)+len(d.Hint))
	}
	if ss := e.sess; ss != nil {
		c += int64(unsafe.Sizeof(*ss)) + int64(len(ss.URL)+len(ss.Extensions)+len(ss.Reason)+len(ss.Error))
	}
	for i := range e.faults {
		f := &e.faults[i]
		c += int64(unsafe.Sizeof(*f)) + int64(len(f.Spec)+len(f.Target)+len(f.Detail))
	}
	for i := range e.violations {
		c += int64(unsafe.Sizeof(e.violations[i])) + int64(len(e.violations[i].Violation)+len(e.violations[i].URL))
	}
	return c
}

func headerCost(h http.Header) int64 {
	var c int64
	for k, vs := range h {
		c += int64(len(k)) + 48
		for _, v := range vs {
			c += int64(len(v)) + 16
		}
	}
	return c
}

// list is an intrusive doubly linked list of entries.
type list struct{ head, tail *entry }

func (l *list) pushBack(e *entry) {
	e.prev, e.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = e
	} else {
		l.head = e
	}
	l.tail = e
}

func (l *list) remove(e *entry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else if l.head == e {
		l.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else if l.tail == e {
		l.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

// msgRef points at one kept message, for eviction in arrival order.
type msgRef struct {
	e     *entry
	stamp uint64
}

// msgRing is a session's kept messages, oldest first. It holds pointers,
// so the slack of a growing slice costs 8 bytes a slot, not a Message.
type msgRing struct {
	items []*Message
	head  int
}

func (r *msgRing) len() int         { return len(r.items) - r.head }
func (r *msgRing) front() *Message  { return r.items[r.head] }
func (r *msgRing) kept() []*Message { return r.items[r.head:] }

func (r *msgRing) push(m *Message) {
	if r.head > 0 && r.head*2 >= len(r.items) && len(r.items) == cap(r.items) {
		n := copy(r.items, r.items[r.head:])
		clear(r.items[n:])
		r.items, r.head = r.items[:n], 0
	}
	r.items = append(r.items, m)
}

func (r *msgRing) pop() *Message {
	m := r.items[r.head]
	r.items[r.head] = nil
	r.head++
	if r.head == len(r.items) {
		r.items, r.head = r.items[:0], 0
	}
	return m
}

// msgStats counts a session's messages as seen, kept or not.
type msgStats struct {
	total, client, server int64
	bytes                 int64
	dropped, rewritten    int64
	closed                int64
	truncated             int64
}

func (st *msgStats) count(m *Message) {
	st.total++
	if m.From == "client" {
		st.client++
	} else {
		st.server++
	}
	st.bytes += max(m.Len, m.PayloadLen, 0)
	switch m.Action {
	case "drop":
		st.dropped++
	case "rewrite":
		st.rewritten++
	case "close":
		st.closed++
	}
	if m.Truncated || m.PayloadCut {
		st.truncated++
	}
}

func (st *msgStats) add(o msgStats) {
	st.total += o.total
	st.client += o.client
	st.server += o.server
	st.bytes += o.bytes
	st.dropped += o.dropped
	st.rewritten += o.rewritten
	st.closed += o.closed
	st.truncated += o.truncated
}

// hostPath splits a URL for the summary: the host without its port, and
// the path with its query, as sent. Summaries are built for every flow a
// search looks at, so the common absolute URL is cut by hand, without
// allocating; anything else goes through url.Parse, and a URL that does
// not parse is kept whole as the path.
func hostPath(raw string) (host, path string) {
	if i := strings.Index(raw, "://"); i > 0 && !strings.ContainsAny(raw[:i], "/?#@") {
		rest := raw[i+3:]
		end := strings.IndexAny(rest, "/?#")
		if end < 0 {
			end = len(rest)
		}
		authority := rest[:end]
		if !strings.ContainsAny(authority, "@[%") {
			host = authority
			if c := strings.LastIndexByte(host, ':'); c >= 0 {
				host = host[:c]
			}
			path = rest[end:]
			if h := strings.IndexByte(path, '#'); h >= 0 {
				path = path[:h]
			}
			return host, path
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", raw
	}
	path = u.EscapedPath()
	if u.RawQuery != "" {
		path += "?" + u.RawQuery
	}
	return u.Hostname(), path
}
