// Package intercept pauses WebSocket messages at breakpoints so that a
// person can forward, edit, drop or close on them, and injects messages of
// the person's own into live sessions. It implements proxy.Interceptor;
// its HTTP API (Handler) is what the web UI and scripts talk to.
//
// A paused message holds back its own direction only: later messages from
// the same side wait behind it (order is kept), the other side's messages
// keep flowing, and control frames are never paused. A paused message
// nobody acts on is forwarded unchanged after the timeout.
package intercept

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/hopscope/hopscope/flow"
	"github.com/hopscope/hopscope/policy"
	"github.com/hopscope/hopscope/proxy"
)

// kindWebSocket is the Kind of a paused WebSocket message.
const kindWebSocket = "websocket"

// DefaultTimeout is how long a paused message waits for a person.
const DefaultTimeout = 60 * time.Second

// Options configure an Engine.
type Options struct {
	// Timeout forwards a paused message unchanged when nobody acted on it
	// for this long. Default DefaultTimeout; negative: wait forever (until
	// the session ends).
	Timeout time.Duration
	// Breakpoints are set from the start (config file, flags).
	Breakpoints []BreakpointSpec
	// HTTPBreakpoints pause HTTP requests and answers.
	HTTPBreakpoints []HTTPBreakpointSpec
}

// BreakpointSpec selects messages to pause, in the vocabulary of the
// WebSocket rules (--ws-rules): direction, type (opcode), URL glob
// (host and path), contains, regex, json_path and json_equals, lengths.
type BreakpointSpec struct {
	// Name identifies the breakpoint (default "break[N]").
	Name  string             `yaml:"name" json:"name"`
	Match policy.WSMatchSpec `yaml:"match" json:"match"`
}

type breakpoint struct {
	spec BreakpointSpec
	rule policy.WSRules // one rule, so that matching is the rules' own
}

// Engine is the interceptor. The zero value is not usable: call New.
type Engine struct {
	timeout time.Duration

	mu          sync.Mutex
	breakpoints []breakpoint
	// httpBreakpoints pause HTTP exchanges; httpArmed mirrors
	// len(httpBreakpoints) > 0.
	httpBreakpoints []HTTPBreakpointSpec
	httpArmed       atomic.Bool
	sessions        map[flow.ID]*proxy.WSLive
	paused          map[uint64]*Paused
	nextBreak       int
	// armed mirrors len(breakpoints) > 0, read without the lock for every
	// message.
	armed  atomic.Bool
	nextID atomic.Uint64
}

var _ proxy.Interceptor = (*Engine)(nil)

// New returns an engine with the breakpoints of opts set.
func New(opts Options) (*Engine, error) {
	e := &Engine{timeout: opts.Timeout, sessions: map[flow.ID]*proxy.WSLive{}, paused: map[uint64]*Paused{}}
	if e.timeout == 0 {
		e.timeout = DefaultTimeout
	}
	for _, spec := range opts.Breakpoints {
		if _, err := e.SetBreakpoint(spec); err != nil {
			return nil, err
		}
	}
	for _, spec := range opts.HTTPBreakpoints {
		if _, err := e.SetHTTPBreakpoint(spec); err != nil {
			return nil, fmt.Errorf("HTTP breakpoint %s: %w", spec.Name, err)
		}
	}
	return e, nil
}

// SetBreakpoint adds a breakpoint, or replaces the one with the same
// name. It returns the breakpoint as set (with its name).
func (e *Engine) SetBreakpoint(spec BreakpointSpec) (BreakpointSpec, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if spec.Name == "" {
		spec.Name = fmt.Sprintf("break[%d]", e.nextBreak)
	}
	e.nextBreak++
	rules, err := policy.CompileWSRules([]policy.WSRuleSpec{{Name: spec.Name, Match: spec.Match, Action: policy.WSPass}})
	if err != nil {
		var re *policy.WSRuleError
		if errors.As(err, &re) {
			err = re.Err
		}
		return spec, fmt.Errorf("breakpoint %s: %w", spec.Name, err)
	}
	bp := breakpoint{spec: spec, rule: rules}
	for i := range e.breakpoints {
		if e.breakpoints[i].spec.Name == spec.Name {
			e.breakpoints[i] = bp
			return spec, nil
		}
	}
	e.breakpoints = append(e.breakpoints, bp)
	e.armed.Store(true)
	return spec, nil
}

// ClearBreakpoint removes the named breakpoint ("" removes all). Messages
// already paused stay paused.
func (e *Engine) ClearBreakpoint(name string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	found := false
	kept := e.breakpoints[:0]
	for _, bp := range e.breakpoints {
		if name == "" || bp.spec.Name == name {
			found = true
			continue
		}
		kept = append(kept, bp)
	}
	clear(e.breakpoints[len(kept):])
	e.breakpoints = kept
	e.armed.Store(len(kept) > 0)
	return found
}

// Breakpoints lists the breakpoints in order.
func (e *Engine) Breakpoints() []BreakpointSpec {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]BreakpointSpec, len(e.breakpoints))
	for i, bp := range e.breakpoints {
		out[i] = bp.spec
	}
	return out
}

// WebSocketOpened implements proxy.Interceptor.
func (e *Engine) WebSocketOpened(s *proxy.WSLive) proxy.WSDecider {
	e.mu.Lock()
	e.sessions[s.Info().ID] = s
	e.mu.Unlock()
	return &decider{engine: e, live: s}
}

// WebSocketClosed implements proxy.Interceptor.
func (e *Engine) WebSocketClosed(s *proxy.WSLive) {
	e.mu.Lock()
	delete(e.sessions, s.Info().ID)
	e.mu.Unlock()
}

// Sessions lists the live sessions, oldest first.
func (e *Engine) Sessions() []flow.WSSession {
	e.mu.Lock()
	out := make([]flow.WSSession, 0, len(e.sessions))
	for _, s := range e.sessions {
		out = append(out, s.Info())
	}
	e.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Paused is a WebSocket message, or an HTTP request or answer, waiting
// for a person.
type Paused struct {
	ID uint64
	// Kind is "websocket", "request" or "response".
	Kind    string
	Session flow.ID
	URL     string
	From    flow.Side
	Op      flow.Opcode
	// For HTTP: the exchange, the request's method, the answer's status
	// (response) and the head as it stands.
	Exchange flow.ID
	Method   string
	Status   int
	Header   http.Header
	// Payload is a copy of the message's plaintext (its start, when
	// Truncated), or the HTTP body as it crossed the wire.
	Payload   []byte
	Len       int64
	Truncated bool
	// Breakpoint is the name of the breakpoint that paused it.
	Breakpoint string
	// Editable is set when the message can be dropped or replaced;
	// NotEditable says why not.
	Editable    bool
	NotEditable string
	Since       time.Time
	// Deadline is when it is forwarded unchanged; zero: never.
	Deadline time.Time

	// settled is closed once the message is decided (by a person or
	// the timeout); decision and actor say how. Guarded by Engine.mu.
	settled  chan struct{}
	done     bool
	decision Decision
	actor    string
}

// Decision is what a person does with a paused message.
type Decision struct {
	// Action is "forward", "edit", "drop" or "close" for a WebSocket
	// message; "forward", "edit" or "respond" (answer the client instead,
	// or replace the destination's answer) for HTTP.
	Action string `json:"action"`
	// For HTTP edit and respond: the whole header to send (nil: as it
	// is) and the status (respond; edit of an answer; 0: as it is).
	Header http.Header `json:"header,omitempty"`
	Status int         `json:"status,omitempty"`
	// For edit, exactly one of: Text (a text message), JSON (validated,
	// sent as text), Hex (the bytes, sent with the message's opcode;
	// valid UTF-8 when that is text). For HTTP, at most one: the new body
	// (none: the body as it is).
	Text *string `json:"text,omitempty"`
	JSON *string `json:"json,omitempty"`
	Hex  *string `json:"hex,omitempty"`
	// For close: the code (default 1000) and reason both sides are sent.
	Code   uint16 `json:"code,omitempty"`
	Reason string `json:"reason,omitempty"`

	payload []byte
	op      flow.Opcode
	// body is set when an HTTP decision gave a body.
	body bool
}

// ErrNotPaused is returned for a paused message that is gone (acted on,
// timed out, or its session ended).
var ErrNotPaused = errors.New("no such paused message (it was acted on, timed out, or its session ended)")

// DecisionError is a decision that cannot be carried out; the message
// stays paused.
type DecisionError struct{ Reason string }

func (e *DecisionError) Error() string { return e.Reason }

// PausedMessages lists the paused messages, oldest first.
func (e *Engine) PausedMessages() []*Paused {
	e.mu.Lock()
	out := make([]*Paused, 0, len(e.paused))
	for _, p := range e.paused {
		out = append(out, p)
	}
	e.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Decide acts on a paused message: it goes on, edited, dropped, or both
// sides are closed.
func (e *Engine) Decide(id uint64, d Decision) error {
	e.mu.Lock()
	p, ok := e.paused[id]
	e.mu.Unlock()
	if !ok {
		return ErrNotPaused
	}
	if err := p.check(&d); err != nil {
		return err
	}
	if !e.settle(p, d, "person") {
		return ErrNotPaused
	}
	return nil
}

// settle decides p once; it reports whether this call did.
func (e *Engine) settle(p *Paused, d Decision, actor string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if p.done {
		return false
	}
	p.done, p.decision, p.actor = true, d, actor
	delete(e.paused, p.ID)
	close(p.settled)
	return true
}

// check validates d against the message and fills in what to send.
func (p *Paused) check(d *Decision) error {
	if p.Kind != kindWebSocket {
		return p.checkHTTP(d)
	}
	switch d.Action {
	case "forward":
		return nil
	case "drop":
		if !p.Editable {
			return &DecisionError{Reason: "cannot drop: " + p.NotEditable}
		}
		return nil
	case "close":
		if d.Code == 0 {
			d.Code = 1000
		}
		if !(d.Code >= 1000 && d.Code <= 1003) && !(d.Code >= 1007 && d.Code <= 1014) && !(d.Code >= 3000 && d.Code <= 4999) {
			return &DecisionError{Reason: fmt.Sprintf("code %d cannot be sent in a close frame (use 1000-1003, 1007-1014 or 3000-4999)", d.Code)}
		}
		if len(d.Reason) > 123 || !utf8.ValidString(d.Reason) {
			return &DecisionError{Reason: "a close reason is at most 123 bytes of UTF-8"}
		}
		return nil
	case "edit":
	default:
		return &DecisionError{Reason: fmt.Sprintf("action %q: use forward, edit, drop or close", d.Action)}
	}
	if !p.Editable {
		return &DecisionError{Reason: "cannot edit: " + p.NotEditable}
	}
	given := 0
	for _, set := range []bool{d.Text != nil, d.JSON != nil, d.Hex != nil} {
		if set {
			given++
		}
	}
	if given != 1 {
		return &DecisionError{Reason: "edit takes exactly one of text, json or hex"}
	}
	switch {
	case d.Text != nil:
		d.payload, d.op = []byte(*d.Text), flow.OpText
	case d.JSON != nil:
		var v any
		if err := json.Unmarshal([]byte(*d.JSON), &v); err != nil {
			return &DecisionError{Reason: "json is not valid JSON: " + err.Error()}
		}
		d.payload, d.op = []byte(*d.JSON), flow.OpText
	default:
		b, err := hex.DecodeString(*d.Hex)
		if err != nil {
			return &DecisionError{Reason: "hex: " + err.Error()}
		}
		d.payload, d.op = b, p.Op
		if p.Op == flow.OpText && !utf8.Valid(b) {
			return &DecisionError{Reason: "the bytes are not valid UTF-8, which a text message must be"}
		}
	}
	return nil
}

// Inject sends a message of the person's own to one side of a live
// session.
func (e *Engine) Inject(session flow.ID, to flow.Side, op flow.Opcode, payload []byte) (proxy.Injected, error) {
	e.mu.Lock()
	live := e.sessions[session]
	e.mu.Unlock()
	if live == nil {
		return proxy.Injected{}, &proxy.InjectError{Reason: fmt.Sprintf("no live WebSocket session %d", session)}
	}
	return live.Inject(to, op, payload, "person")
}

// CloseSession sends both sides of a live session a close frame.
func (e *Engine) CloseSession(session flow.ID, code uint16, reason string) error {
	e.mu.Lock()
	live := e.sessions[session]
	e.mu.Unlock()
	if live == nil {
		return &proxy.InjectError{Reason: fmt.Sprintf("no live WebSocket session %d", session)}
	}
	return live.Close(code, reason)
}

// decider is one session's breakpoint check, for both directions.
type decider struct {
	engine *Engine
	live   *proxy.WSLive
}

// Decide implements proxy.WSDecider: it pauses a message that a
// breakpoint selects until a person acts, the timeout passes or the
// session ends.
func (d *decider) Decide(m *proxy.WSMessageView, v *proxy.WSVerdict) {
	e := d.engine
	if !e.armed.Load() || m.Op.Control() {
		return
	}
	msg := policy.WSMessage{From: m.From.String(), Type: m.Op.String(), URL: m.URL,
		Payload: m.Payload, Len: m.Len, Truncated: m.Truncated}
	name := ""
	e.mu.Lock()
	for _, bp := range e.breakpoints {
		if bp.rule.Match(msg) != nil {
			name = bp.spec.Name
			break
		}
	}
	if name == "" || !m.Held {
		e.mu.Unlock()
		if name != "" {
			v.Rule, v.Note = name, fmt.Sprintf("not paused at breakpoint %s: larger than --ws-inspect-limit, so it was streamed as it arrived", name)
		}
		return
	}
	p := &Paused{
		ID: e.nextID.Add(1), Kind: kindWebSocket, Session: m.Session, URL: m.URL, From: m.From, Op: m.Op,
		Payload: append([]byte(nil), m.Payload...), Len: m.Len, Truncated: m.Truncated,
		Breakpoint: name, Editable: m.Modifiable,
	}
	if !m.Modifiable {
		p.NotEditable = notEditable(m)
	}
	e.mu.Unlock()
	v.Rule = name
	dec, actor := e.wait(p, m.Hold, d.live.Done())
	switch actor {
	case "person":
		d.apply(p, dec, v)
	case "timeout":
		v.Actor, v.Note = "timeout", fmt.Sprintf("paused at breakpoint %s; forwarded unchanged after the %s timeout", name, e.timeout)
	default:
		v.Note = fmt.Sprintf("paused at breakpoint %s when the session ended", name)
	}
}

// wait pauses p until a person decides ("person"), the timeout passes
// ("timeout": forward) or done is closed ("": forward). hold, when the
// relay gives one, does the waiting, so that the direction reads on.
func (e *Engine) wait(p *Paused, hold func(until <-chan struct{}), done <-chan struct{}) (Decision, string) {
	p.Since = time.Now()
	p.settled = make(chan struct{})
	if e.timeout > 0 {
		p.Deadline = p.Since.Add(e.timeout)
		t := time.AfterFunc(e.timeout, func() { e.settle(p, Decision{Action: "forward"}, "timeout") })
		defer t.Stop()
	}
	e.mu.Lock()
	e.paused[p.ID] = p
	e.mu.Unlock()
	if hold != nil {
		hold(p.settled)
	} else {
		select {
		case <-p.settled:
		case <-done:
		}
	}
	// The session or the client went away: nobody decided.
	e.settle(p, Decision{Action: "forward"}, "")
	e.mu.Lock()
	defer e.mu.Unlock()
	return p.decision, p.actor
}

func (d *decider) apply(p *Paused, dec Decision, v *proxy.WSVerdict) {
	held := time.Since(p.Since).Round(time.Millisecond)
	v.Actor = "person"
	switch dec.Action {
	case "forward":
		v.Note = fmt.Sprintf("paused at breakpoint %s for %s; forwarded unchanged", p.Breakpoint, held)
	case "drop":
		v.Action = policy.WSDrop
		v.Note = fmt.Sprintf("paused at breakpoint %s for %s; dropped", p.Breakpoint, held)
	case "close":
		v.Action, v.Code, v.Reason = policy.WSClose, dec.Code, dec.Reason
		v.Note = fmt.Sprintf("paused at breakpoint %s for %s; closed both sides with %d", p.Breakpoint, held, dec.Code)
	case "edit":
		v.Action, v.Replacement, v.ReplacementOp = policy.WSRewrite, dec.payload, dec.op
		v.Note = fmt.Sprintf("paused at breakpoint %s for %s; edited (%d bytes before, %d after)", p.Breakpoint, held, p.Len, len(dec.payload))
	}
}

func notEditable(m *proxy.WSMessageView) string {
	switch {
	case m.Truncated:
		return "only part of the message could be inspected (--ws-inspect-limit)"
	case m.Compressed:
		return "the sender keeps its compression context, so dropping or changing a message would corrupt the ones after it"
	}
	return "the relay no longer holds the whole message"
}
