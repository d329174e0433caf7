package proxy

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"sync"
)

// prefixConn is a connection some of whose first bytes were already read
// into a buffer (by net/http's request reader, or while reading a parent
// proxy's answer). Reads return those bytes first, so nothing a peer sent
// early is lost.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// splitPrefix returns the raw connection under c and the bytes still owed
// from its buffer. Relays write the prefix themselves and then copy from the
// raw connection, so that the kernel can splice.
func splitPrefix(c net.Conn) (net.Conn, []byte) {
	if pc, ok := c.(*prefixConn); ok {
		prefix := pc.prefix
		pc.prefix = nil
		return pc.Conn, prefix
	}
	return c, nil
}

// hijackKeepingBuffer is the ResponseWriter handed to goproxy for CONNECT.
// goproxy hijacks and drops the bufio.Reader that net/http read the request
// with, losing any bytes a client sent right behind its CONNECT (a
// ClientHello sent optimistically); this hands those bytes on inside the
// connection instead.
type hijackKeepingBuffer struct {
	http.ResponseWriter
}

func (h hijackKeepingBuffer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if n := brw.Reader.Buffered(); n > 0 {
		peek, _ := brw.Reader.Peek(n)
		conn = &prefixConn{Conn: conn, prefix: append([]byte(nil), peek...)}
	}
	return conn, brw, nil
}

// connSet tracks hijacked connections, which http.Server.Shutdown does not
// know about, so that shutdown can wait for them and then close them.
type connSet struct {
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	relays  int
	closed  bool
	changed chan struct{} // closed when relays drops; nil when nobody waits
}

// add registers the connections of one relay; it reports false when the
// set is already closed, in which case the caller must not start relaying.
func (s *connSet) add(conns ...net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.conns == nil {
		s.conns = map[net.Conn]struct{}{}
	}
	for _, c := range conns {
		s.conns[c] = struct{}{}
	}
	s.relays++
	return true
}

// remove unregisters the connections of one relay that has ended.
func (s *connSet) remove(conns ...net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range conns {
		delete(s.conns, c)
	}
	s.relays--
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
}

// waitIdle blocks until no relay is running or ctx is done, and reports
// whether all relays ended.
func (s *connSet) waitIdle(ctx context.Context) bool {
	for {
		s.mu.Lock()
		if s.relays == 0 {
			s.mu.Unlock()
			return true
		}
		if s.changed == nil {
			s.changed = make(chan struct{})
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return false
		}
	}
}

// closeAll closes every tracked connection and refuses new relays. The
// connections are closed outside the lock: closing one may end its relay,
// which then calls remove (a tunnel's inner connection does so from
// Close), and that must not wait for the lock closeAll holds.
func (s *connSet) closeAll() {
	s.mu.Lock()
	s.closed = true
	conns := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}
