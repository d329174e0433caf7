//go:build unix

package proxy

import (
	"errors"
	"net"
	"os"
	"syscall"
)

// chunkReader reads whatever a connection has ready. For sockets it waits
// for readability through the runtime poller without holding a buffer and
// borrows one from the pool only for the bytes that are ready, so thousands
// of idle relays cost no buffer memory. Deadlines set on the connection
// still apply. Other connections (TLS) read into a buffer of their own.
type chunkReader struct {
	conn net.Conn
	pool *bufferPool
	raw  syscall.RawConn
	read func(fd uintptr) bool // r.onReady, bound once, not per read
	r    readyReader
	own  []byte
}

func newChunkReader(conn net.Conn, pool *bufferPool) *chunkReader {
	c := &chunkReader{conn: conn, pool: pool}
	if sc, ok := conn.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
			c.r.pool = pool
			c.read = c.r.onReady
		}
	}
	return c
}

// next returns the next bytes read; they stay valid until release. At the
// end of the stream it returns io.EOF.
func (c *chunkReader) next() ([]byte, error) {
	if c.raw == nil {
		if c.own == nil {
			c.own = make([]byte, genericChunkSize)
		}
		n, err := c.conn.Read(c.own)
		if n > 0 {
			return c.own[:n], nil
		}
		return nil, err
	}
	if err := c.raw.Read(c.read); err != nil {
		return nil, err
	}
	switch {
	case c.r.err != nil:
		c.release()
		return nil, os.NewSyscallError("read", c.r.err)
	case c.r.n <= 0:
		c.release()
		return nil, errEOF
	}
	return (*c.r.buf)[:c.r.n], nil
}

// release returns the buffer of the last chunk.
func (c *chunkReader) release() {
	if c.r.buf != nil {
		c.pool.put(c.r.buf)
		c.r.buf = nil
	}
}

// readyReader is the callback state of raw reads.
type readyReader struct {
	pool *bufferPool
	buf  *[]byte
	n    int
	err  error
}

// onReady runs when the poller says the socket may be readable. It reports
// false, holding no buffer, when it was not after all.
func (r *readyReader) onReady(fd uintptr) bool {
	r.buf = r.pool.get()
	for {
		r.n, r.err = syscall.Read(int(fd), *r.buf)
		if !errors.Is(r.err, syscall.EINTR) {
			break
		}
	}
	if errors.Is(r.err, syscall.EAGAIN) {
		r.pool.put(r.buf)
		r.buf = nil
		return false
	}
	return true
}
