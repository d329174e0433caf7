package replay

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/rs/zerolog"

	"github.com/hopscope/hopscope/flow"
)

// How a mock server picks the answers to a WebSocket client's message.
const (
	// MatchOrder answers the client's Nth message with what the server
	// sent after the Nth client message of the recording, whatever the
	// client sent.
	MatchOrder = "order"
	// MatchMessage answers a client message with what the server sent
	// after the first recorded client message with the same payload (JSON
	// compared as values), and nothing when none has it.
	MatchMessage = "message"
)

// How fast a mock server sends.
const (
	// TimingFast sends every answer at once.
	TimingFast = "fast"
	// TimingOriginal keeps the recorded gaps between a client's message
	// and the server's answers, and between those answers.
	TimingOriginal = "original"
)

// Options configure a mock Server.
type Options struct {
	// Match is MatchOrder (default) or MatchMessage.
	Match string
	// Timing is TimingFast (default) or TimingOriginal.
	Timing string
	// Log gets a line for each request served and each one the recording
	// has no answer for. The zero value logs nothing.
	Log zerolog.Logger
}

func (o Options) check() (Options, error) {
	switch o.Match {
	case "":
		o.Match = MatchOrder
	case MatchOrder, MatchMessage:
	default:
		return o, fmt.Errorf("match %q: use order or message", o.Match)
	}
	switch o.Timing {
	case "":
		o.Timing = TimingFast
	case TimingFast, TimingOriginal:
	default:
		return o, fmt.Errorf("timing %q: use fast or original", o.Timing)
	}
	return o, nil
}

// Server answers from a recording. It is an http.Handler; Close ends the
// WebSocket sessions it serves.
type Server struct {
	rec  *Recording
	opts Options

	mu sync.Mutex
	// used counts how often each exchange and session was served, so that
	// repeated requests get the recorded answers in turn.
	used     map[any]int
	misses   int
	conns    map[net.Conn]bool
	closed   bool
	sessions sync.WaitGroup
}

// NewServer returns a mock server for rec.
func NewServer(rec *Recording, opts Options) (*Server, error) {
	opts, err := opts.check()
	if err != nil {
		return nil, err
	}
	return &Server{rec: rec, opts: opts, used: map[any]int{}, conns: map[net.Conn]bool{}}, nil
}

// Misses counts the requests and WebSocket messages the recording had no
// answer for.
func (s *Server) Misses() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.misses
}

// Close ends the WebSocket sessions being served and waits for them.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.sessions.Wait()
}

// ServeHTTP answers r from the recording: the recorded exchanges with the
// same method, path and query are served in turn (the last one again once
// all were); a WebSocket handshake gets the next recorded session on that
// path. Hosts are ignored, since the mock stands in for any of them.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if isUpgrade(r) {
		s.serveWebSocket(w, r)
		return
	}
	var found []int
	for i, x := range s.rec.Exchanges {
		if x.Method == r.Method && samePath(x.URL.RequestURI(), r.URL.RequestURI()) {
			found = append(found, i)
		}
	}
	if len(found) == 0 {
		s.miss()
		s.opts.Log.Warn().Str("event", "replay_miss").Str("method", r.Method).Str("uri", r.URL.RequestURI()).Msg("no recorded answer")
		w.Header().Set("X-Hopscope-Replay", "miss")
		http.Error(w, fmt.Sprintf("hopscope replay: the recording has no answer for %s %s", r.Method, r.URL.RequestURI()), http.StatusNotFound)
		return
	}
	x := s.rec.Exchanges[found[s.take(r.Method+" "+r.URL.RequestURI(), len(found))]]
	if s.opts.Timing == TimingOriginal && x.Wait > 0 {
		select {
		case <-time.After(x.Wait):
		case <-r.Context().Done():
			return
		}
	}
	for k, v := range x.Header {
		w.Header()[k] = v
	}
	w.Header().Set("X-Hopscope-Replay", "hit")
	w.WriteHeader(x.Status)
	_, _ = w.Write(x.Body)
	s.opts.Log.Info().Str("event", "replay").Str("method", r.Method).Str("uri", r.URL.RequestURI()).Int("status", x.Status).Msg("served")
}

// take returns which of n candidates to serve for key, in turn.
func (s *Server) take(key any, n int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.used[key]
	s.used[key] = i + 1
	return min(i, n-1)
}

func (s *Server) miss() {
	s.mu.Lock()
	s.misses++
	s.mu.Unlock()
}

func samePath(recorded, asked string) bool {
	if recorded == "" {
		recorded = "/"
	}
	return recorded == asked
}

func isUpgrade(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	var found []int
	for i, sess := range s.rec.Sessions {
		if samePath(sess.URL.RequestURI(), r.URL.RequestURI()) {
			found = append(found, i)
		}
	}
	if len(found) == 0 {
		s.miss()
		s.opts.Log.Warn().Str("event", "replay_miss").Str("uri", r.URL.RequestURI()).Msg("no recorded WebSocket")
		http.Error(w, "hopscope replay: the recording has no WebSocket at "+r.URL.RequestURI(), http.StatusNotFound)
		return
	}
	sess := &s.rec.Sessions[found[s.take("ws "+r.URL.RequestURI(), len(found))]]
	up := ws.HTTPUpgrader{}
	if sess.Subprotocol != "" {
		up.Protocol = func(p string) bool { return p == sess.Subprotocol }
	}
	conn, _, _, err := up.Upgrade(r, w)
	if err != nil {
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		conn.Close()
		return
	}
	s.conns[conn] = true
	s.sessions.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, conn)
		s.mu.Unlock()
		conn.Close()
		s.sessions.Done()
	}()
	s.opts.Log.Info().Str("event", "replay_ws").Str("uri", r.URL.RequestURI()).Int("messages", len(sess.Messages)).Msg("replaying a WebSocket")
	p := &player{srv: s, sess: sess, conn: conn, sent: make([]bool, len(sess.Messages))}
	p.run()
}

// player replays one recorded session to one client.
type player struct {
	srv  *Server
	sess *Session
	conn net.Conn
	// sent marks the recorded messages played (server's) or matched
	// (client's).
	sent []bool
}

func (p *player) run() {
	msgs := p.sess.Messages
	// What the server said before the client said anything.
	if !p.answer(-1) {
		return
	}
	next := 0 // order mode: the next recorded client message
	for {
		payload, op, err := wsutil.ReadClientData(p.conn)
		if err != nil {
			return
		}
		after := -1
		switch p.srv.opts.Match {
		case MatchOrder:
			for next < len(msgs) && msgs[next].From != flow.FromClient {
				next++
			}
			if next < len(msgs) {
				after, next = next, next+1
			}
		case MatchMessage:
			for i, m := range msgs {
				if m.From == flow.FromClient && !p.sent[i] && samePayload(m.Payload, payload) {
					after = i
					break
				}
			}
		}
		if after < 0 {
			p.srv.miss()
			p.srv.opts.Log.Warn().Str("event", "replay_miss").Str("op", opName(op)).Int("len", len(payload)).Msg("no recorded answer to the client's message")
			continue
		}
		p.sent[after] = true
		if !p.answer(after) {
			return
		}
	}
}

// answer sends the server messages recorded after message i (-1: from
// the start) up to the next client message. At the end of the recording
// it sends the recorded close. It reports whether the session goes on.
func (p *player) answer(i int) bool {
	msgs := p.sess.Messages
	mark := time.Duration(0)
	if i >= 0 {
		mark = msgs[i].At
	}
	start := time.Now()
	j := i + 1
	for ; j < len(msgs) && msgs[j].From == flow.FromServer; j++ {
		if p.sent[j] {
			continue
		}
		p.sent[j] = true
		if p.srv.opts.Timing == TimingOriginal {
			if wait := msgs[j].At - mark - time.Since(start); wait > 0 {
				time.Sleep(wait)
			}
		}
		if err := wsutil.WriteServerMessage(p.conn, ws.OpCode(msgs[j].Op), msgs[j].Payload); err != nil {
			return false
		}
	}
	if j == len(msgs) && p.sess.CloseCode != 0 && p.allPlayed() {
		body := ws.NewCloseFrameBody(ws.StatusCode(p.sess.CloseCode), p.sess.CloseReason)
		if p.sess.CloseCode == 1005 {
			body = nil // "no status" is never sent on the wire
		}
		_ = ws.WriteFrame(p.conn, ws.NewCloseFrame(body))
		return false
	}
	return true
}

func (p *player) allPlayed() bool {
	for i, m := range p.sess.Messages {
		if m.From == flow.FromServer && !p.sent[i] {
			return false
		}
	}
	return true
}

// samePayload compares payloads, as JSON values when both are JSON.
func samePayload(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

func opName(op ws.OpCode) string { return flow.Opcode(op).String() }

func decodeBase64(s string) ([]byte, error) { return base64.StdEncoding.DecodeString(s) }
