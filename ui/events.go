package ui

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/hopscope/hopscope/flow"
)

// streamQueue is how many changes may wait for one browser; beyond, the
// browser is told to reload the list (resync) instead of the store
// waiting for it.
const streamQueue = 4096

// flushEvery coalesces a flow's changes (a busy WebSocket changes its
// flow with every message) into one row update per interval.
const flushEvery = 100 * time.Millisecond

// events streams changes as Server-Sent Events: "flow" (a row, JSON
// Summary), "message" ({flow, message}), "evict" ({id}), "clear",
// "resync" (changes were missed: reload) and "stats".
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		apiError(w, http.StatusInternalServerError, "streaming is not supported on this connection")
		return
	}
	rc := http.NewResponseController(w)
	queue := make(chan Update, streamQueue)
	missed := make(chan struct{}, 1)
	cancel := s.opts.Source.Subscribe(func(u Update) {
		if u.Kind == UpdateMissed {
			select {
			case missed <- struct{}{}:
			default:
			}
			return
		}
		select {
		case queue <- u:
		default:
			select {
			case missed <- struct{}{}:
			default:
			}
		}
	})
	defer cancel()

	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	_, _ = fmt.Fprint(w, "retry: 1000\n\n")
	fl.Flush()

	ticker := time.NewTicker(flushEvery)
	defer ticker.Stop()
	dirty := map[flow.ID]bool{}
	var order []flow.ID
	send := func(event string, v any) bool {
		data, err := json.Marshal(v)
		if err != nil {
			return true
		}
		_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		_, err = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, data)
		return err == nil
	}
	flushFlows := func() bool {
		for _, id := range order {
			if f, ok := s.opts.Source.Flow(id); ok {
				if !send("flow", summarize(&f)) {
					return false
				}
			}
		}
		clear(dirty)
		order = order[:0]
		return true
	}
	idle := 0
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		case <-missed:
			// Drain what is queued: the reload covers it.
			for len(queue) > 0 {
				<-queue
			}
			clear(dirty)
			order = order[:0]
			if !send("resync", struct{}{}) {
				return
			}
			fl.Flush()
		case u := <-queue:
			switch u.Kind {
			case UpdateFlow:
				if !dirty[u.ID] {
					dirty[u.ID] = true
					order = append(order, u.ID)
				}
			case UpdateMessage:
				if u.Message == nil {
					continue
				}
				// The row first, so a browser never sees a message for
				// a flow it does not know.
				if dirty[u.ID] && !flushFlows() {
					return
				}
				if !send("message", map[string]any{"flow": strconv.FormatUint(uint64(u.ID), 10), "message": messageJSON(u.Message)}) {
					return
				}
			case UpdateEvict:
				delete(dirty, u.ID)
				if !send("evict", map[string]string{"id": strconv.FormatUint(uint64(u.ID), 10)}) {
					return
				}
			case UpdateClear:
				clear(dirty)
				order = order[:0]
				if !send("clear", struct{}{}) {
					return
				}
			}
		case <-ticker.C:
			if len(order) > 0 {
				if !flushFlows() || !send("stats", s.opts.Source.Stats()) {
					return
				}
				idle = 0
			} else if idle++; idle >= int(15*time.Second/flushEvery) {
				idle = 0
				if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
					return
				}
			}
			fl.Flush()
		}
	}
}
