//go:build !unix

package proxy

import (
	"io"
	"net"
)

// copyConn copies src to dst with a pooled buffer.
func copyConn(dst io.Writer, src net.Conn, pool *bufferPool) (int64, error) {
	return copyGeneric(dst, src, pool)
}
