package compare

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Behaviour is what a probe's origin does with the requests it receives.
type Behaviour string

// The origin behaviours.
const (
	// OriginOK answers 200 with a short body and mixed-case header names.
	OriginOK Behaviour = "ok"
	// OriginChunked answers 200 with a chunked body.
	OriginChunked Behaviour = "chunked"
	// OriginClose answers 200 with Connection: close and closes.
	OriginClose Behaviour = "close"
	// OriginEmpty reads the request and closes without a byte of answer.
	OriginEmpty Behaviour = "empty"
	// OriginWebSocket completes a WebSocket handshake when the request
	// asks for one, and answers 426 otherwise.
	OriginWebSocket Behaviour = "websocket"
	// OriginBigHeader answers with a 70 KB header field.
	OriginBigHeader Behaviour = "big-header"
	// OriginRefused is no origin at all: a port nothing listens on.
	OriginRefused Behaviour = "refused"
)

// OriginBody is the body of the origin's ordinary answers.
const OriginBody = "hello from origin\n"

// OriginView is what the origin received for the first request of a probe:
// what a proxy forwarded, with header names as they were on the wire.
type OriginView struct {
	RequestLine string
	Fields      []Field
	// Framing is how the body was framed: "none", "length N", "chunked".
	Framing string
	Body    string
	// Trailers of a chunked body.
	Trailers []Field
}

// origin is a raw HTTP/1.x server on loopback that records every request
// head it reads and answers by its behaviour.
type origin struct {
	ln        net.Listener
	behaviour Behaviour
	addr      string

	mu    sync.Mutex
	seen  []OriginView
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// startOrigin listens on addr ("127.0.0.1:0" for any port) and serves.
// For OriginRefused it returns the address of a closed listener.
func startOrigin(addr string, b Behaviour) (*origin, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("starting the probe origin: %w", err)
	}
	o := &origin{ln: ln, behaviour: b, addr: ln.Addr().String(), conns: map[net.Conn]struct{}{}}
	if b == OriginRefused {
		ln.Close()
		return o, nil
	}
	o.wg.Add(1)
	go o.accept()
	return o, nil
}

func (o *origin) accept() {
	defer o.wg.Done()
	for {
		c, err := o.ln.Accept()
		if err != nil {
			return
		}
		o.mu.Lock()
		o.conns[c] = struct{}{}
		o.mu.Unlock()
		o.wg.Add(1)
		go o.serve(c)
	}
}

// close stops the origin and waits for its connections to end.
func (o *origin) close() {
	o.ln.Close()
	o.mu.Lock()
	for c := range o.conns {
		c.Close()
	}
	o.mu.Unlock()
	o.wg.Wait()
}

// first returns the first request the origin received, if any.
func (o *origin) first() (OriginView, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.seen) == 0 {
		return OriginView{}, false
	}
	return o.seen[0], true
}

func (o *origin) serve(c net.Conn) {
	defer o.wg.Done()
	defer func() {
		c.Close()
		o.mu.Lock()
		delete(o.conns, c)
		o.mu.Unlock()
	}()
	// Nothing in a probe takes long; an origin left waiting is a probe
	// that went wrong, and it must not hang the run.
	_ = c.SetDeadline(time.Now().Add(probeTimeout))
	br := bufio.NewReader(c)
	for {
		m, err := readHead(br)
		if err != nil {
			return
		}
		if m.has("Expect", "100-continue") && o.behaviour != OriginEmpty {
			if _, err := c.Write([]byte("HTTP/1.1 100 Continue\r\n\r\n")); err != nil {
				return
			}
		}
		b, err := readBody(br, m, false)
		o.mu.Lock()
		o.seen = append(o.seen, OriginView{RequestLine: m.start, Fields: m.fields, Framing: b.framing, Body: string(b.data), Trailers: b.trailers})
		o.mu.Unlock()
		if err != nil {
			return
		}
		if !o.answer(c, m) {
			return
		}
	}
}

// answer writes the behaviour's answer to m and reports whether the
// connection stays open for another request.
func (o *origin) answer(c net.Conn, m message) bool {
	date := "Date: " + time.Now().UTC().Format(time.RFC1123) + "\r\n"
	date = strings.Replace(date, "UTC", "GMT", 1)
	plain := "HTTP/1.1 200 OK\r\n" + date + "Content-Type: text/plain\r\nX-Origin-Case: Kept\r\nx-origin-lower: kept\r\nContent-Length: " + strconv.Itoa(len(OriginBody)) + "\r\n\r\n"
	if strings.HasPrefix(m.start, "HEAD ") {
		_, err := c.Write([]byte(plain))
		return err == nil
	}
	var out string
	keep := true
	switch o.behaviour {
	case OriginEmpty:
		return false
	case OriginChunked:
		out = "HTTP/1.1 200 OK\r\n" + date + "Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"6\r\nhello \r\n" + strconv.FormatInt(int64(len(OriginBody)-6), 16) + "\r\n" + OriginBody[6:] + "\r\n0\r\n\r\n"
	case OriginClose:
		out = "HTTP/1.1 200 OK\r\n" + date + "Content-Type: text/plain\r\nConnection: close\r\nContent-Length: " + strconv.Itoa(len(OriginBody)) + "\r\n\r\n" + OriginBody
		keep = false
	case OriginBigHeader:
		out = "HTTP/1.1 200 OK\r\n" + date + "X-Big: " + strings.Repeat("b", 70<<10) + "\r\nContent-Length: " + strconv.Itoa(len(OriginBody)) + "\r\n\r\n" + OriginBody
	case OriginWebSocket:
		key, _ := m.get("Sec-WebSocket-Key")
		if !m.has("Upgrade", "websocket") || key == "" {
			text := "this is a WebSocket endpoint\n"
			out = "HTTP/1.1 426 Upgrade Required\r\n" + date + "Sec-WebSocket-Version: 13\r\nContent-Type: text/plain\r\nContent-Length: " + strconv.Itoa(len(text)) + "\r\n\r\n" + text
			break
		}
		out = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + acceptKey(key) + "\r\n\r\n"
		keep = false
	default:
		out = plain + OriginBody
	}
	if _, err := c.Write([]byte(out)); err != nil {
		return false
	}
	if !keep && o.behaviour == OriginWebSocket {
		// A WebSocket stays open until the client ends it.
		buf := make([]byte, 512)
		for {
			if _, err := c.Read(buf); err != nil {
				break
			}
		}
	}
	return keep
}

// acceptKey is RFC 6455's Sec-WebSocket-Accept for key.
func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}
