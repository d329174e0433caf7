package bench

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/gobwas/ws"
)

// wsRoute is how a WebSocket reaches the echo origin through a proxy.
type wsRoute int

const (
	// wsForward is ws:// sent to the proxy as an absolute-form GET.
	wsForward wsRoute = iota
	// wsTunnel is ws:// inside a CONNECT tunnel, as browsers send it.
	wsTunnel
	// wssTunnel is wss:// inside a CONNECT tunnel: spliced by a blind
	// proxy, bumped by one that inspects TLS.
	wssTunnel
)

// wsClient is a lockstep echo client: one message out, wait for its echo.
// It writes each frame in one call and reads through a buffer, as browsers
// and WebSocket libraries do, so the proxy sees one segment per message.
type wsClient struct {
	conn  net.Conn
	br    *bufio.Reader
	frame []byte // a masked binary frame, sent as is
	in    []byte
}

func newWSClient(conn net.Conn, br *bufio.Reader, size int) *wsClient {
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte('a' + i%26)
	}
	h := ws.Header{Fin: true, OpCode: ws.OpBinary, Length: int64(size), Masked: true, Mask: ws.NewMask()}
	frame := appendHeader(nil, h)
	start := len(frame)
	frame = append(frame, payload...)
	ws.Cipher(frame[start:], h.Mask, 0)
	return &wsClient{conn: conn, br: br, frame: frame, in: make([]byte, size)}
}

// echo sends the message and reads its echo.
func (c *wsClient) echo() error {
	if _, err := c.conn.Write(c.frame); err != nil {
		return err
	}
	h, err := ws.ReadHeader(c.br)
	if err != nil {
		return err
	}
	if h.OpCode != ws.OpBinary || h.Length != int64(len(c.in)) {
		return fmt.Errorf("echo: got a %v frame of %d bytes, want binary of %d", h.OpCode, h.Length, len(c.in))
	}
	_, err = io.ReadFull(c.br, c.in)
	return err
}

func (c *wsClient) Close() error { return c.conn.Close() }

// appendHeader encodes a frame header (gobwas writes headers only to an
// io.Writer).
func appendHeader(b []byte, h ws.Header) []byte {
	first := byte(h.OpCode)
	if h.Fin {
		first |= 0x80
	}
	var mask byte
	if h.Masked {
		mask = 0x80
	}
	switch {
	case h.Length < 126:
		b = append(b, first, mask|byte(h.Length))
	case h.Length <= 0xffff:
		b = append(b, first, mask|126)
		b = binary.BigEndian.AppendUint16(b, uint16(h.Length))
	default:
		b = append(b, first, mask|127)
		b = binary.BigEndian.AppendUint64(b, uint64(h.Length))
	}
	if h.Masked {
		b = append(b, h.Mask[:]...)
	}
	return b
}

// dialWS opens a WebSocket to the echo origin, directly (t nil) or through
// t by route.
func (e *env) dialWS(t *target, route wsRoute, size int) (*wsClient, error) {
	origin := e.wsOrigin.Addr().String()
	if route == wssTunnel {
		origin = e.wssOrigin.Addr().String()
	}
	var conn net.Conn
	var err error
	target, host := "/echo", origin
	if route == wssTunnel {
		host = withHost(origin, tlsHost) // the name the certificate and the CONNECT carry
	}
	switch {
	case t == nil:
		conn, err = net.DialTimeout("tcp", origin, 5*time.Second)
	case route == wsForward:
		conn, err = net.DialTimeout("tcp", t.Addr, 5*time.Second)
		target = "http://" + origin + "/echo"
	default:
		conn, err = connectVia(t.Addr, host)
	}
	if err != nil {
		return nil, err
	}
	if route == wssTunnel {
		roots := e.originRoots
		if t != nil {
			roots = t.roots
		}
		tc := tls.Client(conn, &tls.Config{ServerName: tlsHost, RootCAs: roots, NextProtos: []string{"http/1.1"}})
		_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			conn.Close()
			return nil, fmt.Errorf("TLS handshake: %w", err)
		}
		_ = tc.SetDeadline(time.Time{})
		conn = tc
	}
	br, err := wsHandshake(conn, target, host)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return newWSClient(conn, br, size), nil
}

func withHost(addr, host string) string {
	_, port, _ := net.SplitHostPort(addr)
	return net.JoinHostPort(host, port)
}

func wsHandshake(conn net.Conn, target, host string) (*bufio.Reader, error) {
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	defer conn.SetDeadline(time.Time{})
	_, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", target, host)
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(conn, 4<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, fmt.Errorf("WebSocket handshake: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return nil, fmt.Errorf("WebSocket handshake: %s", resp.Status)
	}
	return br, nil
}

// connectVia opens a CONNECT tunnel through proxyAddr. A proxy that
// answers and then sends bytes before the client spoke is broken.
func connectVia(proxyAddr, target string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", proxyAddr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("CONNECT %s through %s: %s", target, proxyAddr, resp.Status)
	}
	if err == nil && br.Buffered() > 0 {
		err = errors.New("bytes after the CONNECT answer")
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// serveWSEcho answers a WebSocket handshake and echoes every data message
// as one unmasked frame, written in one call.
func serveWSEcho(c net.Conn) {
	defer c.Close()
	if _, err := (ws.Upgrader{}).Upgrade(c); err != nil {
		return
	}
	br := bufio.NewReaderSize(c, 4<<10)
	var out []byte
	for {
		h, err := ws.ReadHeader(br)
		if err != nil {
			return
		}
		if h.OpCode == ws.OpClose {
			_, _ = c.Write(appendHeader(nil, ws.Header{Fin: true, OpCode: ws.OpClose}))
			return
		}
		out = appendHeader(out[:0], ws.Header{Fin: h.Fin, OpCode: h.OpCode, Length: h.Length})
		start := len(out)
		if need := start + int(h.Length); cap(out) >= need {
			out = out[:need]
		} else {
			out = append(out, make([]byte, int(h.Length))...)
		}
		if _, err := io.ReadFull(br, out[start:]); err != nil {
			return
		}
		if h.Masked {
			ws.Cipher(out[start:], h.Mask, 0)
		}
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}
