package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"sync"
	"time"
)

// Tunnel modes, the "mode" field of tunnel events.
const (
	modeSplice = "splice"
	modeBump   = "bump"
	modeHTTP   = "http"
)

// firstSpeaker is what sniffTunnel learned about a fresh tunnel.
type firstSpeaker struct {
	// client and upstream are the two sides, with any bytes read while
	// sniffing still to be read first.
	client, upstream net.Conn
	// tls is true when the client opened with a TLS handshake record.
	tls bool
	// http is true when the client opened with an HTTP/1.x request line.
	http bool
	// err is set when the client closed or failed before saying anything.
	err error
}

// sniffSize is enough for a TLS record header or an HTTP method and the
// space after it; the rest stays in the socket.
const sniffSize = 64

// sniffTunnel waits for whichever side of a new tunnel speaks first. A
// client that speaks first is classified by its first bytes; a destination
// that speaks first (SMTP, SSH and other server-first protocols) means the
// tunnel is spliced, without any delay to wait out.
func sniffTunnel(client, upstream net.Conn) firstSpeaker {
	clientBR := bufio.NewReaderSize(client, sniffSize)
	upstreamBR := bufio.NewReaderSize(upstream, sniffSize)
	const (
		fromClient = iota
		fromUpstream
	)
	type spoke struct {
		side int
		err  error
	}
	first := make(chan spoke, 2)
	go func() {
		_, err := clientBR.Peek(1)
		first <- spoke{fromClient, err}
	}()
	go func() {
		_, err := upstreamBR.Peek(1)
		first <- spoke{fromUpstream, err}
	}()
	winner := <-first
	// Stop the other side's wait; a read that lands at the same moment
	// stays in its buffer and is passed on.
	other := upstream
	if winner.side == fromUpstream {
		other = client
	}
	_ = other.SetReadDeadline(time.Now())
	// The other side's error, if it closed meanwhile, is left for the
	// relay to meet on its next read.
	<-first
	_ = other.SetReadDeadline(time.Time{})

	out := firstSpeaker{}
	if winner.side == fromClient {
		if winner.err != nil {
			out.err = winner.err
		} else {
			out.tls, out.http = classify(clientBR, client)
		}
	}
	out.client = withBuffered(client, clientBR)
	out.upstream = withBuffered(upstream, upstreamBR)
	return out
}

// classify looks at the client's first bytes. A TLS handshake record starts
// 0x16 0x03; an HTTP/1.x request starts with an upper-case method token and
// a space. A method split across packets gets a short wait to complete.
func classify(br *bufio.Reader, conn net.Conn) (isTLS, isHTTP bool) {
	head, _ := br.Peek(br.Buffered())
	if head[0] == 0x16 {
		if len(head) < 2 {
			head = peekWithin(br, conn, 2)
		}
		return len(head) >= 2 && head[1] == 0x03, false
	}
	if head[0] < 'A' || head[0] > 'Z' {
		return false, false
	}
	if bytes.IndexByte(head, ' ') < 0 && len(head) < maxMethodLen+1 && allMethodChars(head) {
		head = peekWithin(br, conn, maxMethodLen+1)
	}
	return false, isRequestLineStart(head)
}

func allMethodChars(b []byte) bool {
	for _, c := range b {
		if (c < 'A' || c > 'Z') && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

// peekWithin waits up to a second for n bytes and returns what it has.
func peekWithin(br *bufio.Reader, conn net.Conn, n int) []byte {
	_ = conn.SetReadDeadline(time.Now().Add(time.Second))
	head, _ := br.Peek(n)
	_ = conn.SetReadDeadline(time.Time{})
	if len(head) == 0 {
		head, _ = br.Peek(br.Buffered())
	}
	return head
}

const maxMethodLen = 16

// isRequestLineStart reports whether b starts like "METHOD " where METHOD
// is an upper-case token: every registered HTTP method looks like that,
// and no TLS, SSH or binary protocol opening does.
func isRequestLineStart(b []byte) bool {
	sp := bytes.IndexByte(b, ' ')
	return sp > 0 && sp <= maxMethodLen && allMethodChars(b[:sp])
}

// withBuffered returns conn with what br has read but not yet handed out
// placed in front of it.
func withBuffered(conn net.Conn, br *bufio.Reader) net.Conn {
	n := br.Buffered()
	if n == 0 {
		return conn
	}
	head, _ := br.Peek(n)
	prefix := append([]byte(nil), head...)
	if pc, ok := conn.(*prefixConn); ok {
		// br read the front of conn's own prefix; what it did not read
		// comes after what it holds.
		return &prefixConn{Conn: pc.Conn, prefix: append(prefix, pc.prefix...)}
	}
	return &prefixConn{Conn: conn, prefix: prefix}
}

// oneConnListener hands http.Server.Serve one connection and then ends
// the Serve loop at once; the connection lives on in its own goroutine,
// and onClose reports its end. No goroutine waits for it.
type oneConnListener struct {
	conn   net.Conn
	served bool
}

func newOneConnListener(conn net.Conn, onClose func()) *oneConnListener {
	return &oneConnListener{conn: &closeNotifyConn{Conn: conn, onClose: onClose}}
}

// errListenerDone ends Serve after the one connection was handed out.
var errListenerDone = errors.New("the tunnel's one connection was handed out")

func (l *oneConnListener) Accept() (net.Conn, error) {
	if !l.served {
		l.served = true
		return l.conn, nil
	}
	return nil, errListenerDone
}

func (l *oneConnListener) Close() error   { return nil }
func (l *oneConnListener) Addr() net.Addr { return l.conn.LocalAddr() }

// closeNotifyConn runs onClose once, when the connection is first closed.
type closeNotifyConn struct {
	net.Conn
	onClose func()
	once    sync.Once
}

func (c *closeNotifyConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.onClose)
	return err
}
