package ui

import (
	"fmt"
	"io"
	"sync"

	"github.com/hopscope/hopscope/flow"
	"github.com/hopscope/hopscope/har"
	"github.com/hopscope/hopscope/store"
)

// StoreSource is the Source over hopscope's flow store.
func StoreSource(st *store.Store) Source { return storeSource{st} }

// StoreHAR exports and imports HAR files with package har over st.
// version is written as log.creator.version.
func StoreHAR(st *store.Store, version string) HAR { return storeHAR{st, version} }

type storeSource struct{ st *store.Store }

var _ Source = storeSource{}

func (s storeSource) Flows(query string, limit int) ([]Flow, error) {
	ids, err := matching(s.st, query, limit)
	if err != nil {
		return nil, err
	}
	out := make([]Flow, 0, len(ids))
	for _, id := range ids {
		if f, ok := s.st.Get(id); ok {
			out = append(out, fromStore(&f))
		}
	}
	return out, nil
}

// matching lists the IDs of the newest flows (at most limit) a query
// matches, oldest first, reading the store a page at a time.
func matching(st *store.Store, query string, limit int) ([]flow.ID, error) {
	var ids []flow.ID
	before := uint64(0)
	for len(ids) < limit {
		page, err := st.List(store.Query{Filter: query, Newest: true, Before: before, Limit: min(limit-len(ids), 1000)})
		if err != nil {
			return nil, err
		}
		// Pages come oldest first; collect newest pages first, then flip.
		for i := len(page.Flows) - 1; i >= 0; i-- {
			ids = append(ids, page.Flows[i].ID)
		}
		if !page.More || len(page.Flows) == 0 {
			break
		}
		before = page.Flows[0].Seq
	}
	for i, j := 0, len(ids)-1; i < j; i, j = i+1, j-1 {
		ids[i], ids[j] = ids[j], ids[i]
	}
	return ids, nil
}

func (s storeSource) Flow(id flow.ID) (Flow, bool) {
	f, ok := s.st.Get(id)
	if !ok {
		return Flow{}, false
	}
	return fromStore(&f), true
}

func fromStore(f *store.Flow) Flow {
	sm := &f.Summary
	return Flow{
		ID: sm.ID, Seq: sm.Seq, Open: sm.Open,
		Exchange: f.Exchange, Tunnel: f.TunnelRecord, Denial: f.Denial, Session: f.SessionRecord,
		Faults: f.FaultRecords, Violations: f.Violations,
		MessageBytes: max(sm.Size, 0),
		Messages: MessageCounts{
			Total: sm.Messages, Client: sm.ClientMessages, Server: sm.ServerMessages, Kept: sm.MessagesKept,
			Dropped: sm.Dropped, Rewritten: sm.Rewritten, Closed: sm.Closed, Evicted: sm.EvictedMessages,
		},
	}
}

func fromStoreMessage(m *store.Message) Message {
	return Message{
		Seq: m.Seq, Time: m.Time, From: m.From, Opcode: m.Opcode, Type: m.Type,
		Len: m.Len, WireLen: m.WireLen, PayloadLen: m.PayloadLen, Fragments: m.Fragments,
		Compressed: m.Compressed, Truncated: m.Truncated, Action: m.Action, Rule: m.Rule, Note: m.Note,
		CloseCode: m.CloseCode, CloseReason: m.CloseReason, Payload: m.Payload, PayloadCut: m.PayloadCut,
		SHA256: m.SHA256, Replacement: m.Replacement,
	}
}

func (s storeSource) Messages(id flow.ID, after uint64, limit int) ([]Message, bool) {
	var out []Message
	from := after + 1
	for len(out) < limit {
		page, ok, err := s.st.Messages(id, store.MessageQuery{FromSeq: from, Limit: min(limit-len(out), 5000)})
		if err != nil || !ok {
			return out, ok
		}
		for i := range page.Messages {
			out = append(out, fromStoreMessage(&page.Messages[i]))
		}
		if !page.More {
			break
		}
		from = page.NextSeq
	}
	return out, true
}

func (s storeSource) Subscribe(fn func(Update)) (cancel func()) {
	sub := s.st.Subscribe(store.SubscribeOptions{Buffer: streamQueue, Messages: true})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var missed uint64
		for u := range sub.Updates() {
			if n := sub.Missed(); n != missed {
				missed = n
				fn(Update{Kind: UpdateMissed})
			}
			switch u.Kind {
			case store.UpdateFlow:
				fn(Update{Kind: UpdateFlow, ID: u.ID})
			case store.UpdateMessage:
				if u.Message != nil {
					m := fromStoreMessage(u.Message)
					fn(Update{Kind: UpdateMessage, ID: u.ID, Message: &m})
				}
			case store.UpdateEvict:
				fn(Update{Kind: UpdateEvict, ID: u.ID})
			case store.UpdateClear:
				fn(Update{Kind: UpdateClear})
			}
		}
	}()
	return func() {
		sub.Close()
		wg.Wait()
	}
}

func (s storeSource) Clear()     { s.st.Clear() }
func (s storeSource) Stats() any { return s.st.Stats() }

type storeHAR struct {
	st      *store.Store
	version string
}

func (h storeHAR) Export(w io.Writer, query string) error {
	f, err := store.ParseFilter(query)
	if err != nil {
		return err
	}
	return har.WriteExports(w, h.st.ExportFilter(f), h.st.Stats(), har.Options{Version: h.version})
}

func (h storeHAR) Import(r io.Reader) (int, error) {
	doc, err := har.Read(r)
	if err != nil {
		return 0, err
	}
	stats := har.Import(h.st, doc)
	if stats.Entries == 0 && len(doc.Log.Entries) > 0 {
		return 0, fmt.Errorf("none of the %d entries could be imported", len(doc.Log.Entries))
	}
	return stats.Entries, nil
}
