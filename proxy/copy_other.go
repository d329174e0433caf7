//go:build !unix

package proxy

import "net"

// chunkReader reads whatever a connection has ready into a buffer of its own.
type chunkReader struct {
	conn net.Conn
	own  []byte
}

func newChunkReader(conn net.Conn, _ *bufferPool) *chunkReader {
	return &chunkReader{conn: conn}
}

func (c *chunkReader) next() ([]byte, error) {
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
