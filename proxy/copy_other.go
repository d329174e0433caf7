//go:build !unix

package proxy

import (
	"errors"
	"net"
	"os"
)

// chunkReader reads whatever a connection has ready into a buffer of its own.
type chunkReader struct {
	conn net.Conn
	own  []byte
	idle *idleClock
}

func newChunkReader(conn net.Conn, _ *bufferPool, idle *idleClock) *chunkReader {
	return &chunkReader{conn: conn, idle: idle}
}

func (c *chunkReader) next() ([]byte, error) {
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
			continue
		default:
			return nil, err
		}
	}
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
