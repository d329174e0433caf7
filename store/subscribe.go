package store

import (
	"sync/atomic"

	"github.com/hopscope/hopscope/flow"
)

// UpdateKind says what an Update reports.
type UpdateKind string

// The kinds of update.
const (
	// UpdateFlow: a flow is new or changed; Update.Flow is its summary.
	// Updates to one flow are coalesced per batch of records, so a chatty
	// WebSocket yields one summary per batch, not one per message.
	UpdateFlow UpdateKind = "flow"
	// UpdateMessage: a WebSocket message was kept; Update.Message.
	UpdateMessage UpdateKind = "message"
	// UpdateEvict: the flow Update.ID left the store (a bound, or merged
	// into another flow).
	UpdateEvict UpdateKind = "evict"
	// UpdateClear: the store was cleared.
	UpdateClear UpdateKind = "clear"
)

// Update is one live change.
type Update struct {
	Kind    UpdateKind `json:"kind"`
	ID      flow.ID    `json:"id,omitempty"`
	Flow    *Summary   `json:"flow,omitempty"`
	Message *Message   `json:"message,omitempty"`
}

// SubscribeOptions say what a subscriber wants.
type SubscribeOptions struct {
	// Buffer is how many updates may wait; beyond it updates are missed
	// (counted by Missed), because a slow reader must never slow the
	// store. Default 1024.
	Buffer int
	// Filter, when set, passes only summaries of matching flows.
	// Messages, evictions and clears always pass (a message filter
	// would rescan the session for every message).
	Filter *Filter
	// Messages asks for UpdateMessage updates.
	Messages bool
	// Session, with Messages, limits them to one flow's messages (its
	// exchange or session ID); 0 means all.
	Session flow.ID
}

// Subscriber receives live updates on a channel.
type Subscriber struct {
	store  *Store
	opts   SubscribeOptions
	c      chan Update
	missed atomic.Uint64
	closed bool // guarded by store.mu
}

// Subscribe starts live updates. Call Close when done.
func (s *Store) Subscribe(opts SubscribeOptions) *Subscriber {
	if opts.Buffer <= 0 {
		opts.Buffer = 1024
	}
	sub := &Subscriber{store: s, opts: opts, c: make(chan Update, opts.Buffer)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if opts.Session != 0 {
		if e := s.byID[opts.Session]; e != nil {
			sub.opts.Session = e.id
		}
	}
	s.subs[sub] = struct{}{}
	return sub
}

// Updates is the channel of updates; it is closed by Close.
func (sub *Subscriber) Updates() <-chan Update { return sub.c }

// Missed counts updates dropped because the channel was full. A reader
// that missed some should reload what it shows (List).
func (sub *Subscriber) Missed() uint64 { return sub.missed.Load() }

// Close stops the updates and closes the channel.
func (sub *Subscriber) Close() {
	s := sub.store
	s.mu.Lock()
	defer s.mu.Unlock()
	if sub.closed {
		return
	}
	sub.closed = true
	delete(s.subs, sub)
	close(sub.c)
}

func (sub *Subscriber) send(u Update) {
	select {
	case sub.c <- u:
	default:
		sub.missed.Add(1)
	}
}

// broadcast sends u to every subscriber. Callers hold s.mu.
func (s *Store) broadcast(u Update) {
	for sub := range s.subs {
		sub.send(u)
	}
}

// flushDirty sends one summary per entry changed in the batch.
func (s *Store) flushDirty() {
	for _, e := range s.dirty {
		e.dirty = false
		if !e.evicted {
			s.flushEntry(e)
		}
	}
	clear(s.dirty)
	s.dirty = s.dirty[:0]
}

// flushEntry sends e's summary now. Callers hold s.mu.
func (s *Store) flushEntry(e *entry) {
	e.rev++
	e.announced = true
	if len(s.subs) == 0 {
		return
	}
	sm := e.summary()
	for sub := range s.subs {
		if sub.opts.Filter != nil && !sub.opts.Filter.match(e) {
			continue
		}
		sub.send(Update{Kind: UpdateFlow, ID: e.id, Flow: &sm})
	}
}

// broadcastMessage sends a kept message to the subscribers that want it.
func (s *Store) broadcastMessage(e *entry, m *Message) {
	var cp *Message
	for sub := range s.subs {
		if !sub.opts.Messages || (sub.opts.Session != 0 && sub.opts.Session != e.id) {
			continue
		}
		if cp == nil {
			c := *m
			cp = &c
		}
		sub.send(Update{Kind: UpdateMessage, ID: e.id, Message: cp})
	}
}
