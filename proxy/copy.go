package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// copyBufferSize is the relay buffer. Measured on loopback (2 cores,
// BenchmarkConnectThroughput and hopscope bench's connect-10MiB): 32 KiB
// reaches 0.82 of direct throughput, 64 KiB 0.79-0.90, 256 KiB 0.92-0.98,
// splice(2) only 0.53, so relays copy through user space. Buffers are
// pooled and held only while bytes are in flight, so their size costs an
// idle connection nothing.
const copyBufferSize = 256 << 10

// bufferPool lends relay buffers. A relay takes one only while bytes are
// in flight, so an idle tunnel or WebSocket holds none. Small buffers are
// for reads through TLS, which return at most one record each.
type bufferPool struct{ pool, small sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{
		pool: sync.Pool{New: func() any {
			b := make([]byte, copyBufferSize)
			return &b
		}},
		small: sync.Pool{New: func() any {
			b := make([]byte, genericChunkSize)
			return &b
		}},
	}
}

func (p *bufferPool) get() *[]byte       { return p.pool.Get().(*[]byte) }
func (p *bufferPool) put(b *[]byte)      { p.pool.Put(b) }
func (p *bufferPool) getSmall() *[]byte  { return p.small.Get().(*[]byte) }
func (p *bufferPool) putSmall(b *[]byte) { p.small.Put(b) }

// genericChunkSize is the read buffer of connections without a file
// descriptor; TLS returns at most one 16 KiB record per read anyway.
const genericChunkSize = 16 << 10

// errEOF is io.EOF, named here for the readers above.
var errEOF = io.EOF

// next returns the next bytes read; they stay valid until release. At the
// end of the stream it returns io.EOF; when the relay has been idle for its
// limit, errIdle.
func (c *chunkReader) next() ([]byte, error) {
	if c.quiet > 0 {
		return c.nextOrQuiet()
	}
	if c.idle == nil {
		return c.read1()
	}
	for {
		c.idle.arm(c.conn)
		b, err := c.read1()
		switch {
		case err == nil:
			c.idle.touch()
			return b, nil
		case c.idle.expired(err):
			return nil, errIdle{c.idle.limit}
		case errors.Is(err, os.ErrDeadlineExceeded):
			continue // the other direction moved; keep waiting
		default:
			return nil, err
		}
	}
}

// nextOrQuiet is next for a reader that may park: errQuiet when nothing
// arrived for c.quiet. The read deadline behind it is set once per quiet
// period, not per read: reads that find bytes only note that they did.
func (c *chunkReader) nextOrQuiet() ([]byte, error) {
	for {
		if !c.quietArmed {
			if err := c.conn.SetReadDeadline(time.Now().Add(c.quiet)); err != nil {
				return nil, err
			}
			c.quietArmed, c.readSince = true, false
		}
		b, err := c.read1()
		switch {
		case err == nil:
			c.readSince = true
			return b, nil
		case !errors.Is(err, os.ErrDeadlineExceeded):
			return nil, err
		}
		c.quietArmed = false
		if !c.readSince {
			_ = c.conn.SetReadDeadline(time.Time{})
			return nil, errQuiet
		}
	}
}

// copyConn copies src to dst until EOF or an error, borrowing buffers only
// while bytes are in flight (see chunkReader).
func copyConn(dst io.Writer, src net.Conn, pool *bufferPool, idle *idleClock) (int64, error) {
	cr := newChunkReader(src, pool, idle)
	var total int64
	for {
		chunk, err := cr.next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return total, nil
			}
			return total, err
		}
		n, werr := dst.Write(chunk)
		total += int64(n)
		cr.release()
		if werr != nil {
			return total, werr
		}
	}
}
