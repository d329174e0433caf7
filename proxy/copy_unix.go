//go:build unix

package proxy

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"
)

// chunkReader reads whatever a connection has ready. For sockets it waits
// for readability through the runtime poller without holding a buffer and
// borrows one from the pool only for the bytes that are ready, so thousands
// of idle relays cost no buffer memory. Deadlines set on the connection
// still apply. Other connections (TLS) read into a small pooled buffer,
// held while a read waits: a quiet one gives it back (see pump).
type chunkReader struct {
	conn net.Conn
	pool *bufferPool
	raw  syscall.RawConn
	// parkRaw is the socket a pump parks on: raw, or the one under a TLS
	// connection; nil: none.
	parkRaw  syscall.RawConn
	counters []*atomic.Int64       // wrappers between conn and its socket that count reads
	idle     *idleClock            // nil: no idle limit
	read     func(fd uintptr) bool // r.onReady, bound once, not per read
	r        readyReader
	own      *[]byte // the buffer of the last generic read, until release
	// quiet, when set, makes next answer errQuiet after that long
	// without bytes (see pump); quietArmed and readSince track the
	// deadline set for it.
	quiet                 time.Duration
	quietArmed, readSince bool
}

// canPark reports whether a pump may park this reader: it must wait on a
// socket of its own, and no idle limit may be counting on its deadline.
func (c *chunkReader) canPark() bool { return c.parkRaw != nil && c.idle == nil }

func newChunkReader(conn net.Conn, pool *bufferPool, idle *idleClock) *chunkReader {
	c := &chunkReader{conn: conn, pool: pool, idle: idle}
	if sc, counters := socketOf(conn); sc != nil {
		if raw, err := sc.SyscallConn(); err == nil {
			c.counters = counters
			c.raw = raw
			c.r.pool = pool
			c.read = c.r.onReady
			c.parkRaw = raw
		}
	} else if tc := tlsOf(conn); tc != nil {
		// A TLS read that times out can be retried, and one that timed
		// out holds no complete record back, so waiting for the socket
		// under it is enough to know when to read again.
		if sc, _ := socketOf(tc.NetConn()); sc != nil {
			if raw, err := sc.SyscallConn(); err == nil {
				c.parkRaw = raw
			}
		}
	}
	return c
}

func (c *chunkReader) read1() ([]byte, error) {
	if c.raw == nil {
		b := c.pool.getSmall()
		n, err := c.conn.Read(*b)
		if n > 0 {
			c.own = b
			return (*b)[:n], nil
		}
		c.pool.putSmall(b)
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
	for _, n := range c.counters {
		n.Add(int64(c.r.n))
	}
	return (*c.r.buf)[:c.r.n], nil
}

// socketOf finds the socket under hopscope's own connection wrappers, so a
// relay can wait on it without holding a buffer. counters are the
// wrappers' read counts, which the relay keeps up to date instead. A
// prefixConn with bytes still to give stops the search: they come first.
func socketOf(c net.Conn) (syscall.Conn, []*atomic.Int64) {
	var counters []*atomic.Int64
	for {
		switch v := c.(type) {
		case *closeNotifyConn:
			c = v.Conn
		case *headTap:
			c = v.Conn
		case *countingConn:
			counters = append(counters, &v.read)
			c = v.Conn
		case *prefixConn:
			if len(v.prefix) > 0 {
				return nil, nil
			}
			c = v.Conn
		case syscall.Conn:
			return v, counters
		default:
			return nil, nil
		}
	}
}

// tlsOf finds the TLS connection under hopscope's own wrappers, nil if
// there is none.
func tlsOf(c net.Conn) *tls.Conn {
	for {
		switch v := c.(type) {
		case *tls.Conn:
			return v
		case *closeNotifyConn:
			c = v.Conn
		case *headTap:
			c = v.Conn
		case *countingConn:
			c = v.Conn
		default:
			return nil
		}
	}
}

// release returns the buffer of the last chunk.
func (c *chunkReader) release() {
	if c.own != nil {
		c.pool.putSmall(c.own)
		c.own = nil
	}
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
