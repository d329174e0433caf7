// Package replay plays back a recorded session (a HAR file, as hopscope or
// a browser writes it, WebSocket messages included). As a mock server it
// answers HTTP requests with the recorded responses and a WebSocket
// client's messages with the messages the server sent in the recording;
// as a client it resends the recorded requests and client messages to a
// live server and reports where the answers differ.
package replay

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/hopscope/hopscope/flow"
	"github.com/hopscope/hopscope/har"
)

// Recording is what can be replayed from a HAR file.
type Recording struct {
	// Exchanges are the HTTP exchanges with an answer, in file order.
	Exchanges []Exchange
	// Sessions are the WebSocket sessions, in file order.
	Sessions []Session
}

// Exchange is one recorded HTTP request and its answer.
type Exchange struct {
	Method string
	URL    *url.URL
	// RequestBody is the recorded request body (what HAR kept of it).
	RequestBody []byte
	Status      int
	Header      http.Header
	Body        []byte
	// Wait is how long the answer took to start.
	Wait time.Duration
}

// Session is one recorded WebSocket: its URL and messages in order.
type Session struct {
	URL         *url.URL
	Subprotocol string
	Messages    []Message
	// CloseCode is the code of the close frame the server sent, 0 if the
	// recording has none.
	CloseCode   uint16
	CloseReason string
}

// Message is one recorded WebSocket message as its receiver got it.
type Message struct {
	From    flow.Side
	Op      flow.Opcode
	Payload []byte
	// At is the time since the session's first message.
	At time.Duration
}

// Load reads a HAR file.
func Load(path string) (*Recording, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening the recording: %w", err)
	}
	defer f.Close()
	return Read(f)
}

// Read reads a HAR document.
func Read(r io.Reader) (*Recording, error) {
	h, err := har.Read(r)
	if err != nil {
		return nil, err
	}
	return FromHAR(h)
}

// FromHAR takes what can be replayed from a parsed HAR file: answered
// exchanges and WebSocket sessions. Entries hopscope answered itself (a
// refusal) are replayed like any other.
func FromHAR(h *har.HAR) (*Recording, error) {
	rec := &Recording{}
	for i := range h.Log.Entries {
		e := &h.Log.Entries[i]
		u, err := url.Parse(e.Request.URL)
		if err != nil {
			return nil, fmt.Errorf("entry %d: URL %q: %w", i, e.Request.URL, err)
		}
		if e.WebSocket != nil || u.Scheme == "ws" || u.Scheme == "wss" {
			rec.Sessions = append(rec.Sessions, session(u, e))
			continue
		}
		if e.Response.Status == 0 {
			continue // never answered
		}
		x := Exchange{Method: e.Request.Method, URL: u, Status: e.Response.Status,
			Header: http.Header{}, Wait: time.Duration(e.Timings.Wait * float64(time.Millisecond))}
		if pd := e.Request.PostData; pd != nil {
			x.RequestBody = decodeText(pd.Text, pd.Encoding)
		}
		for _, nv := range e.Response.Headers {
			x.Header.Add(nv.Name, nv.Value)
		}
		x.Body = decodeText(e.Response.Content.Text, e.Response.Content.Encoding)
		if e.X == nil || e.X.ContentEncoding == "" {
			// HAR holds the decoded body: it is served as such.
			x.Header.Del("Content-Encoding")
		}
		for _, h := range []string{"Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive"} {
			x.Header.Del(h)
		}
		rec.Exchanges = append(rec.Exchanges, x)
	}
	return rec, nil
}

func session(u *url.URL, e *har.Entry) Session {
	s := Session{URL: u}
	for _, nv := range e.Response.Headers {
		if strings.EqualFold(nv.Name, "Sec-WebSocket-Protocol") {
			s.Subprotocol = nv.Value
		}
	}
	if e.WebSocket == nil {
		return s
	}
	msgs := append([]har.Message(nil), *e.WebSocket...)
	sort.SliceStable(msgs, func(i, j int) bool { return msgs[i].Time < msgs[j].Time })
	var first time.Time
	clientClosed := false
	for i := range msgs {
		m := &msgs[i]
		from := flow.FromServer
		switch m.Type {
		case "send":
			from = flow.FromClient
		case "receive":
		default:
			continue // Chrome's "error" entries are not messages
		}
		payload, ok := m.Delivered()
		if !ok {
			continue
		}
		at := m.Time.Time()
		if first.IsZero() {
			first = at
		}
		op := flow.Opcode(m.Opcode)
		if op == flow.OpClose {
			// Only a close the server began is replayed; one that
			// answers the client's is the client's to cause again.
			clientClosed = clientClosed || from == flow.FromClient
			if from == flow.FromServer && !clientClosed && s.CloseCode == 0 {
				s.CloseCode, s.CloseReason = 1005, ""
				if m.X != nil && m.X.CloseCode != 0 {
					s.CloseCode, s.CloseReason = m.X.CloseCode, m.X.CloseReason
				}
			}
			continue
		}
		if op.Control() {
			continue // pings and pongs are the peers' own business
		}
		s.Messages = append(s.Messages, Message{From: from, Op: op, Payload: payload, At: at.Sub(first)})
	}
	return s
}

func decodeText(text, encoding string) []byte {
	if strings.EqualFold(encoding, "base64") {
		if b, err := decodeBase64(text); err == nil {
			return b
		}
	}
	return []byte(text)
}
