//go:build !unix

package proxy

import (
	"net"
	"time"
)

// chunkReader reads whatever a connection has ready into a buffer of its own.
type chunkReader struct {
	conn net.Conn
	own  []byte
	idle *idleClock
	// quiet is never set here: there is no poller to park in.
	quiet                 time.Duration
	quietArmed, readSince bool
}

func (c *chunkReader) canPark() bool { return false }

func newChunkReader(conn net.Conn, _ *bufferPool, idle *idleClock) *chunkReader {
	return &chunkReader{conn: conn, idle: idle}
}

func (c *chunkReader) read1() ([]byte, error) {
	if c.own == nil {
		c.own = make([]byte, genericChunkSize)
	}
	n, err := c.conn.Read(c.own)
	if n > 0 {
		return c.own[:n], nil
	}
	return nil, err
}

func (c *chunkReader) release() {}
