package store

import (
	"fmt"
	"slices"
	"strings"

	"github.com/hopscope/hopscope/flow"
)

// Query selects a page of the flow list.
type Query struct {
	// Filter is an expression in the filter language; "" matches all.
	Filter string
	// After, when not 0, starts after the flow with this Seq (the next
	// page, oldest first).
	After uint64
	// Before, when not 0, ends before the flow with this Seq.
	Before uint64
	// Newest returns the newest matching flows (within After and Before)
	// instead of the oldest: the first page of a live view, or the page
	// before one.
	Newest bool
	// Limit is the page size; default 100, at most 1,000.
	Limit int
}

// Page is one page of the flow list, oldest first.
type Page struct {
	Flows []Summary `json:"flows"`
	// More is set when more flows match beyond the page, in the
	// direction it was read (older for Newest, newer otherwise).
	More bool `json:"more"`
	// Total is how many flows the store holds.
	Total int `json:"total"`
}

// List returns a page of flow summaries.
func (s *Store) List(q Query) (Page, error) {
	f, err := ParseFilter(q.Filter)
	if err != nil {
		return Page{}, err
	}
	return s.ListFilter(f, q), nil
}

// ListFilter is List with a parsed filter (q.Filter is ignored).
func (s *Store) ListFilter(f *Filter, q Query) Page {
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	s.mu.RLock()
	defer s.mu.RUnlock()
	p := Page{Flows: []Summary{}, Total: s.flows}
	// take adds e to the page if it is in range and matches; it says
	// when the scan can stop.
	take := func(e *entry) (stop bool) {
		if e == nil {
			return false
		}
		if (q.Newest && e.seq <= q.After) || (!q.Newest && q.Before != 0 && e.seq >= q.Before) {
			return true // past the range in the scan's direction
		}
		if e.seq <= q.After || (q.Before != 0 && e.seq >= q.Before) || !f.match(e) {
			return false
		}
		if len(p.Flows) == limit {
			p.More = true
			return true
		}
		p.Flows = append(p.Flows, e.summary())
		return false
	}
	if !q.Newest {
		for _, e := range s.order {
			if take(e) {
				break
			}
		}
		return p
	}
	for i := len(s.order) - 1; i >= 0; i-- {
		if take(s.order[i]) {
			break
		}
	}
	slices.Reverse(p.Flows)
	return p
}

// Get returns one flow by any of its IDs (exchange, session, tunnel).
func (s *Store) Get(id flow.ID) (Flow, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e := s.byID[id]
	if e == nil {
		return Flow{}, false
	}
	return e.detail(), true
}

// MessageQuery selects a session's messages.
type MessageQuery struct {
	// From is "client", "server" or "" for both.
	From string
	// Type is an opcode name (text, binary, close, ping, pong), "data"
	// (text or binary), "control" (close, ping, pong) or "" for all.
	Type string
	// Text keeps messages whose kept payload, replacement or close reason
	// holds it (ASCII case folded).
	Text string
	// Action keeps messages with this action (pass, drop, close,
	// rewrite); "" all.
	Action string
	// FromSeq starts at this Seq (inclusive); 0 from the oldest kept.
	FromSeq uint64
	// Limit is the page size; default 200, at most 5,000.
	Limit int
	// Newest returns the newest Limit matching messages (from FromSeq
	// on) instead of the oldest: a long session opens at its end. More
	// then says older ones match too.
	Newest bool
}

// MessagePage is a page of a session's messages, oldest first.
type MessagePage struct {
	Messages []Message `json:"messages"`
	// More is set when more messages match after the page (before it,
	// for Newest); NextSeq is where the next page starts.
	More    bool   `json:"more"`
	NextSeq uint64 `json:"next_seq,omitempty"`
	// Kept counts the messages held for the flow; Evicted those the byte
	// bound pushed out (the oldest).
	Kept    int   `json:"kept"`
	Evicted int64 `json:"evicted"`
}

func (q MessageQuery) check() error {
	switch q.From {
	case "", "client", "server":
	default:
		return fmt.Errorf("messages: from %q: want client or server", q.From)
	}
	switch q.Type {
	case "", "data", "control", "text", "binary", "close", "ping", "pong":
	default:
		return fmt.Errorf("messages: type %q: want text, binary, close, ping, pong, data or control", q.Type)
	}
	switch q.Action {
	case "", "pass", "drop", "close", "rewrite":
	default:
		return fmt.Errorf("messages: action %q: want pass, drop, close or rewrite", q.Action)
	}
	return nil
}

func (q MessageQuery) match(m *Message, text string) bool {
	if q.From != "" && m.From != q.From {
		return false
	}
	switch q.Type {
	case "":
	case "data":
		if m.Opcode >= 0x8 {
			return false
		}
	case "control":
		if m.Opcode < 0x8 {
			return false
		}
	default:
		if m.Type != q.Type {
			return false
		}
	}
	if q.Action != "" && m.Action != q.Action {
		return false
	}
	return text == "" || m.contains(text)
}

// Messages returns a page of a flow's kept messages. ok is false when the
// store does not know the flow.
func (s *Store) Messages(id flow.ID, q MessageQuery) (page MessagePage, ok bool, err error) {
	if err := q.check(); err != nil {
		return MessagePage{}, false, err
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 200
	}
	limit = min(limit, 5000)
	text := strings.ToLower(q.Text)
	s.mu.RLock()
	defer s.mu.RUnlock()
	e := s.byID[id]
	if e == nil {
		return MessagePage{}, false, nil
	}
	page = MessagePage{Messages: []Message{}, Kept: e.msgs.len(), Evicted: e.evictedMsgs}
	kept := e.msgs.kept()
	// Seqs grow along the ring: find the start by binary search.
	lo, hi := 0, len(kept)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if kept[mid].Seq < q.FromSeq {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if q.Newest {
		for i := len(kept) - 1; i >= lo; i-- {
			m := kept[i]
			if !q.match(m, text) {
				continue
			}
			if len(page.Messages) == limit {
				page.More = true
				break
			}
			page.Messages = append(page.Messages, *m)
		}
		slices.Reverse(page.Messages)
		return page, true, nil
	}
	for i := lo; i < len(kept); i++ {
		m := kept[i]
		if !q.match(m, text) {
			continue
		}
		if len(page.Messages) == limit {
			page.More, page.NextSeq = true, m.Seq
			break
		}
		page.Messages = append(page.Messages, *m)
	}
	return page, true, nil
}

// Export is one flow with all its kept messages.
type Export struct {
	Flow Flow
	// Messages are shared with the store (a stored message never
	// changes): read only.
	Messages []*Message
}

// Export returns every flow with its kept messages, oldest first (for
// HAR). It copies pointers, not messages, so a snapshot of a full store
// costs little.
func (s *Store) Export() []Export { return s.ExportFilter(nil) }

// ExportFilter is Export of the flows f matches (nil: all).
func (s *Store) ExportFilter(f *Filter) []Export {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Export, 0, s.flows)
	for _, e := range s.order {
		if e == nil || !f.match(e) {
			continue
		}
		out = append(out, Export{Flow: e.detail(), Messages: slices.Clone(e.msgs.kept())})
	}
	return out
}
