package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/rs/zerolog"

	"github.com/hopscope/hopscope/policy"
	"github.com/hopscope/hopscope/proxy/wsframe"
)

// relayOnce runs a session over real sockets: input is what the client
// sends; it returns what the server received and what the client got back.
func relayOnce(t testing.TB, srv *Server, input []byte) (toServer, toClient []byte) {
	clientEnd, clientSide := tcpPair(t.(*testing.T))
	upstreamSide, serverEnd := tcpPair(t.(*testing.T))
	sess := &wsSession{srv: srv, url: "ws://fuzz/", path: "forward", start: time.Now(),
		client: &wsPeer{conn: clientSide}, upstream: &wsPeer{conn: upstreamSide}}
	done := make(chan struct{})
	go func() {
		sess.run(nil, nil)
		close(done)
	}()
	serverGot := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(serverEnd)
		serverGot <- b
	}()
	_, _ = clientEnd.Write(input)
	_ = clientEnd.(*net.TCPConn).CloseWrite()
	_ = clientEnd.SetReadDeadline(time.Now().Add(5 * time.Second))
	back, _ := io.ReadAll(clientEnd)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the session did not end after the client closed")
	}
	return <-serverGot, back
}

// FuzzWebSocketRelay: what the client sends reaches the server byte for
// byte while it is valid; anything invalid ends in a close frame to the
// client with a protocol code, and nothing panics or hangs.
func FuzzWebSocketRelay(f *testing.F) {
	masked := func(fr ws.Frame) []byte { return ws.MustCompileFrame(ws.MaskFrame(fr)) }
	f.Add(masked(ws.NewTextFrame([]byte("hello"))))
	f.Add(bytes.Join([][]byte{
		masked(ws.NewFrame(ws.OpText, false, []byte("a"))),
		masked(ws.NewPingFrame([]byte("p"))),
		masked(ws.NewFrame(ws.OpContinuation, true, []byte("b"))),
		masked(ws.NewBinaryFrame(make([]byte, 300))),
	}, nil))
	f.Add(ws.MustCompileFrame(ws.NewTextFrame([]byte("unmasked"))))
	f.Add([]byte{0xff, 0xff, 0xff})
	srv, err := New(&Options{WebSocket: WebSocketOptions{MaxMessage: 1 << 16}}, zerolog.Nop())
	if err != nil {
		f.Fatal(err)
	}
	// The same relay holding messages, as it does when a rule may drop or
	// rewrite them (this rule never matches).
	never, err := policy.CompileWSRules([]policy.WSRuleSpec{{Match: policy.WSMatchSpec{Contains: "\x00never\x00"}, Action: policy.WSDrop}})
	if err != nil {
		f.Fatal(err)
	}
	holding, err := New(&Options{WebSocket: WebSocketOptions{MaxMessage: 1 << 16, Rules: never}}, zerolog.Nop())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		if len(input) > 1<<17 {
			return
		}
		checkHeldRelay(t, holding, input)
		toServer, toClient := relayOnce(t, srv, input)
		// Judge the input with a parser of its own.
		p := wsframe.New(wsframe.Config{From: wsframe.Client, InspectLimit: srv.opts.WebSocket.InspectLimit, MaxMessage: 1 << 16})
		verr := p.Feed(input, discardSink{})
		var v *wsframe.Violation
		switch {
		case verr == nil:
			// Held back at most: an unfinished header, control frame or
			// code point at the end of the input.
			if !bytes.HasPrefix(input, toServer) || len(input)-len(toServer) > ws.MaxHeaderSize+125 {
				t.Fatalf("valid input: server got %d of %d bytes, not a prefix", len(toServer), len(input))
			}
		case errors.As(verr, &v):
			// The server gets a valid prefix of the input, cut before the
			// offending frame's bytes, then hopscope's close frame unless
			// the cut fell inside a frame.
			got := toServer
			closing := closeFrame(ws.StatusProtocolError, "hopscope: the client broke the protocol", true)
			if len(got) >= len(closing) && !bytes.HasPrefix(input, got) {
				got = got[:len(got)-len(closing)]
				sf, err := readFrame(bytes.NewReader(toServer[len(got):]))
				if err != nil || sf.Header.OpCode != ws.OpClose || !sf.Header.Masked {
					t.Fatalf("the server's last frame is not a masked close: %v %v", sf.Header, err)
				}
			}
			if !bytes.HasPrefix(input, got) {
				t.Fatalf("the server got %d bytes that are not a prefix of the input and a close frame", len(toServer))
			}
			var edge wsframe.Edge
			edge.Wrote(got)
			if len(got) < len(toServer) && !edge.Between() {
				t.Fatal("hopscope's close frame went out inside a frame")
			}
			if err := wsframe.New(wsframe.Config{From: wsframe.Client, MaxMessage: 1 << 16}).Feed(got, discardSink{}); err != nil {
				t.Fatalf("the server received bytes of the refused frame: %v", err)
			}
			f, err := readFrame(bytes.NewReader(toClient))
			if err != nil || f.Header.OpCode != ws.OpClose {
				t.Fatalf("invalid input (%v): the client got %q, want a close frame", v, toClient)
			}
			if code, _ := ws.ParseCloseFrameData(f.Payload); code != v.Code {
				t.Fatalf("close code %d, want %d", code, v.Code)
			}
		default:
			t.Fatalf("parser error %v", verr)
		}
	})
}

type discardSink struct{}

func (discardSink) Header(ws.Header, []byte, int) error { return nil }
func (discardSink) Payload([]byte, int) error           { return nil }
func (discardSink) Message(*wsframe.Message) error      { return nil }

// readFrame reads one frame the relay wrote, at most 1 MiB.
func readFrame(r io.Reader) (ws.Frame, error) {
	h, err := ws.ReadHeader(r)
	if err != nil {
		return ws.Frame{}, err
	}
	if h.Length > 1<<20 {
		return ws.Frame{}, errors.New("frame over 1 MiB")
	}
	payload := make([]byte, h.Length)
	if _, err := io.ReadFull(r, payload); err != nil {
		return ws.Frame{}, err
	}
	return ws.Frame{Header: h, Payload: payload}, nil
}

// messageLog records the messages of a stream, data and control apart.
type messageLog struct {
	data, control []string
}

func (l *messageLog) Header(ws.Header, []byte, int) error { return nil }
func (l *messageLog) Payload([]byte, int) error           { return nil }
func (l *messageLog) Message(m *wsframe.Message) error {
	entry := wsframe.OpName(m.Op) + ":" + string(m.Payload)
	if m.Op.IsControl() {
		l.control = append(l.control, entry)
	} else {
		l.data = append(l.data, entry)
	}
	return nil
}

// checkHeldRelay: when the relay holds messages, control frames may pass a
// held message, so bytes can be reordered; but every data message must
// reach the server whole and in order, and control frames in their order.
func checkHeldRelay(t *testing.T, srv *Server, input []byte) {
	cfg := wsframe.Config{From: wsframe.Client, InspectLimit: srv.opts.WebSocket.InspectLimit, MaxMessage: 1 << 16}
	var want messageLog
	if wsframe.New(cfg).Feed(input, &want) != nil {
		return // invalid input: the byte-level check covers it
	}
	toServer, _ := relayOnce(t, srv, input)
	var got messageLog
	if err := wsframe.New(cfg).Feed(toServer, &got); err != nil {
		t.Fatalf("the server got an invalid stream from a valid one: %v", err)
	}
	if strings.Join(got.data, "\x00") != strings.Join(want.data, "\x00") ||
		strings.Join(got.control, "\x00") != strings.Join(want.control, "\x00") {
		t.Fatalf("held relay changed the messages: data %q -> %q, control %q -> %q", want.data, got.data, want.control, got.control)
	}
}
