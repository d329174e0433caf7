package ui

import (
	"strings"
	"sync"

	"github.com/hopscope/hopscope/flow"
)

// fakeSource is a Source over a few flows set by the test, for the
// security and API tests that are about the UI, not the store.
type fakeSource struct {
	mu    sync.Mutex
	flows []Flow
	msgs  map[flow.ID][]Message
	subs  map[int]func(Update)
	next  int
}

func newFakeSource() *fakeSource {
	return &fakeSource{msgs: map[flow.ID][]Message{}, subs: map[int]func(Update){}}
}

func (f *fakeSource) add(fl Flow) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fl.Seq = uint64(len(f.flows) + 1)
	f.flows = append(f.flows, fl)
	for _, fn := range f.subs {
		fn(Update{Kind: UpdateFlow, ID: fl.ID})
	}
}

func (f *fakeSource) addMessage(id flow.ID, m Message) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m.Seq = uint64(len(f.msgs[id]) + 1)
	f.msgs[id] = append(f.msgs[id], m)
	for i := range f.flows {
		if f.flows[i].ID == id {
			f.flows[i].Messages.Total++
		}
	}
	for _, fn := range f.subs {
		fn(Update{Kind: UpdateFlow, ID: id})
		fn(Update{Kind: UpdateMessage, ID: id, Message: &m})
	}
}

func (f *fakeSource) Flows(query string, limit int) ([]Flow, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Flow
	for _, fl := range f.flows {
		if query == "" || (fl.Exchange != nil && strings.Contains(fl.Exchange.URL, query)) {
			out = append(out, fl)
		}
	}
	if len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, nil
}

func (f *fakeSource) Flow(id flow.ID) (Flow, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, fl := range f.flows {
		if fl.ID == id {
			return fl, true
		}
	}
	return Flow{}, false
}

func (f *fakeSource) Messages(id flow.ID, after uint64, limit int) ([]Message, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Message
	for _, m := range f.msgs[id] {
		if m.Seq > after && len(out) < limit {
			out = append(out, m)
		}
	}
	return out, true
}

func (f *fakeSource) Subscribe(fn func(Update)) func() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next++
	n := f.next
	f.subs[n] = fn
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.subs, n)
	}
}

func (f *fakeSource) Clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.flows = nil
	f.msgs = map[flow.ID][]Message{}
	for _, fn := range f.subs {
		fn(Update{Kind: UpdateClear})
	}
}

func (f *fakeSource) Stats() any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return map[string]int{"flows": len(f.flows)}
}
