package proxy

import (
	"fmt"
	"net/http"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"

	"github.com/hopscope/hopscope/flow"
	"github.com/hopscope/hopscope/policy"
)

// Interceptor lets a person hold, change and add WebSocket messages of
// live sessions (package intercept implements it). With an Interceptor the
// relay holds every message until it is complete and asks both sides to
// compress each message on its own, so that any message can be dropped or
// replaced without breaking the peer's decompression.
type Interceptor interface {
	// WebSocketOpened is called once per relayed session, before its
	// first message. The decider it returns (nil: none) is asked about
	// the messages of both directions, after the --ws-rules and before
	// the faults; it may block to pause a message.
	WebSocketOpened(s *WSLive) WSDecider
	// WebSocketClosed is called once the session has ended.
	WebSocketClosed(s *WSLive)
}

// WSLive is a relayed WebSocket session as an Interceptor sees it: what
// it is, when it ends, and how to add a message or close it.
type WSLive struct {
	sess *wsSession
	done chan struct{}
}

// Info is the session's record as it opened.
func (l *WSLive) Info() flow.WSSession { return l.sess.opened }

// Done is closed once both connections are closed.
func (l *WSLive) Done() <-chan struct{} { return l.done }

// Close sends both sides a close frame with code and reason, as hopscope
// (the closing side in the session's record).
func (l *WSLive) Close(code uint16, reason string) error {
	if !sendableCode(code) {
		return &InjectError{Reason: fmt.Sprintf("code %d cannot be sent in a close frame (use 1000-1003, 1007-1014 or 3000-4999)", code)}
	}
	l.sess.closeBoth(ws.StatusCode(code), ws.StatusCode(code), reason, reason)
	return nil
}

func sendableCode(c uint16) bool {
	return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999)
}

// InjectError says why a message could not be injected: the stream was
// left as it was.
type InjectError struct{ Reason string }

func (e *InjectError) Error() string { return "not injected: " + e.Reason }

// Injected is what an injection did.
type Injected struct {
	// Seq is the message's number in the session's records.
	Seq uint64
	// Note says how it was sent (uncompressed in a deflate session).
	Note string
}

// injectWait bounds the wait for the stream to a peer to reach a message
// boundary (a long fragmented message may be going out).
const injectWait = 5 * time.Second

// Inject sends a text or binary message of hopscope's own to one side:
// masked towards the server, as a client must; as one uncompressed frame,
// which permessage-deflate allows message by message (RFC 7692 section 6:
// only a frame with RSV1 set is inflated, and only inflated frames enter
// the receiver's history), so the context either side takes over is left
// intact. It waits for the stream to that peer to be between two messages.
func (l *WSLive) Inject(to flow.Side, op flow.Opcode, payload []byte, by string) (Injected, error) {
	sess := l.sess
	switch {
	case op != flow.OpText && op != flow.OpBinary:
		return Injected{}, &InjectError{Reason: fmt.Sprintf("opcode %s: only text and binary messages can be injected", op)}
	case op == flow.OpText && !utf8.Valid(payload):
		return Injected{}, &InjectError{Reason: "a text message must be valid UTF-8 (send it as binary)"}
	case sess.neg.unknown:
		return Injected{}, &InjectError{Reason: fmt.Sprintf("the session negotiated an extension hopscope does not know (%s): it cannot tell what a frame of its own would mean to the peer", sess.neg.raw)}
	case sess.srv.opts.WebSocket.MaxMessage > 0 && int64(len(payload)) > sess.srv.opts.WebSocket.MaxMessage:
		return Injected{}, &InjectError{Reason: fmt.Sprintf("%d bytes is more than --ws-max-message (%d)", len(payload), sess.srv.opts.WebSocket.MaxMessage)}
	}
	peer, from := sess.client, flow.FromServer
	if to == flow.FromServer {
		peer, from = sess.upstream, flow.FromClient
	}
	frame := dataFrame(ws.OpCode(op), payload, to == flow.FromServer)
	if err := peer.writeMessage(frame, injectWait, l.done); err != nil {
		return Injected{}, err
	}
	res := Injected{}
	if sess.neg.deflate {
		res.Note = "sent uncompressed: permessage-deflate allows an uncompressed message at any time, and the peer's decompression history stays as it was"
	}
	res.Seq = sess.seq.Add(1)
	if bus := sess.srv.flows; bus.Active() {
		rec := flow.WSMessage{
			Session: sess.id, Client: sess.info.flowClient(), Tunnel: sess.info.tunnelFlow,
			Seq: res.Seq, Time: time.Now(), From: from, Opcode: op,
			Len: int64(len(payload)), WireLen: int64(len(frame)), PayloadLen: int64(len(payload)), Fragments: 1,
			Action: policy.WSInject, Actor: by, Note: res.Note,
		}
		if n := bus.PayloadBytes(); n > 0 {
			rec.Payload = append([]byte(nil), payload[:min(n, len(payload))]...)
			rec.Truncated = n < len(payload)
		}
		bus.Publish(flow.Record{Kind: flow.KindWSMessage, Message: rec})
	}
	return res, nil
}

// writeMessage writes a whole message of hopscope's own once the stream
// to the peer is between messages, waiting at most wait (or until done).
func (p *wsPeer) writeMessage(frame []byte, wait time.Duration, done <-chan struct{}) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.boundary == nil {
		p.boundary = sync.NewCond(&p.mu)
	}
	deadline := time.Now().Add(wait)
	for {
		select {
		case <-done:
			return &InjectError{Reason: "the session has ended"}
		default:
		}
		switch {
		case p.closed:
			return &InjectError{Reason: "hopscope has closed the session"}
		case p.edge.Closed():
			return &InjectError{Reason: "a close frame was already sent to that side: nothing may follow it"}
		case p.edge.BetweenMessages():
			n, err := p.conn.Write(frame)
			p.edge.Wrote(frame[:n])
			if err != nil {
				return fmt.Errorf("writing the injected message: %w", err)
			}
			return nil
		case !time.Now().Before(deadline):
			return &InjectError{Reason: fmt.Sprintf("a fragmented message was still going out to that side after %s", wait)}
		}
		p.waitBoundary(deadline)
	}
}

// waitBoundary waits (p.mu held) until a write, a close or the deadline
// wakes it.
func (p *wsPeer) waitBoundary(deadline time.Time) {
	t := time.AfterFunc(time.Until(deadline), p.wake)
	p.boundary.Wait()
	t.Stop()
}

// wake wakes injections waiting for the stream to reach a boundary.
func (p *wsPeer) wake() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.boundary != nil {
		p.boundary.Broadcast()
	}
}

// HTTPInterceptor is an Interceptor that also pauses HTTP exchanges: a
// request before it goes upstream, an answer before it goes to the
// client. Both calls may block (a person is deciding) and run on the
// exchange's own goroutine.
type HTTPInterceptor interface {
	// InterceptRequest may change req's header and body, or return an
	// answer that goes to the client instead of the request going
	// upstream. rec is nil when nothing acted.
	InterceptRequest(exchange flow.ID, req *http.Request) (answer *http.Response, rec *flow.Intercept)
	// InterceptResponse may change resp's status, header and body.
	InterceptResponse(exchange flow.ID, req *http.Request, resp *http.Response) (rec *flow.Intercept)
}

// interceptRequest runs the HTTP interceptor on a request about to go
// upstream.
func (s *Server) interceptRequest(r *http.Request) *http.Response {
	hi, ok := s.opts.Interceptor.(HTTPInterceptor)
	if !ok {
		return nil
	}
	ex := exchangeFrom(r.Context())
	var id flow.ID
	if ex != nil && ex.writer != nil {
		id = ex.writer.flow.id()
	}
	answer, rec := hi.InterceptRequest(id, r)
	s.publishIntercept(id, rec)
	if answer != nil {
		answer.Request = r
		if ex != nil {
			ex.answered = true
		}
		if ex != nil && ex.writer != nil {
			ex.writer.byProxy = true
			ex.writer.contentLength = answer.Header.Get("Content-Length")
		}
	}
	return answer
}

// interceptResponse runs the HTTP interceptor on an answer about to go to
// the client.
func (s *Server) interceptResponse(r *http.Request, resp *http.Response) {
	hi, ok := s.opts.Interceptor.(HTTPInterceptor)
	if !ok {
		return
	}
	var id flow.ID
	if ex := exchangeFrom(r.Context()); ex != nil && ex.writer != nil {
		id = ex.writer.flow.id()
	}
	s.publishIntercept(id, hi.InterceptResponse(id, r, resp))
}

func (s *Server) publishIntercept(id flow.ID, rec *flow.Intercept) {
	if rec == nil || !s.flows.Active() {
		return
	}
	rec.Exchange = id
	// Observers get as much of the bodies as they asked for, as with
	// exchanges.
	n := s.flows.BodyBytes()
	for _, m := range []*flow.HTTPMessage{rec.Before, rec.After} {
		if m != nil && len(m.Body) > n {
			m.Body = m.Body[:n]
		}
	}
	if rec.Time.IsZero() {
		rec.Time = time.Now()
	}
	s.flows.Publish(flow.Record{Kind: flow.KindIntercept, Intercept: rec})
}
