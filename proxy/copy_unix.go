//go:build unix

package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
)

// copyConn copies src to dst until EOF or an error. For sockets it waits
// for readability through the runtime poller without holding a buffer and
// borrows one from pool only for the bytes that are ready, so thousands of
// idle relays cost no buffer memory. Deadlines set on src still apply.
func copyConn(dst io.Writer, src net.Conn, pool *bufferPool) (int64, error) {
	sc, ok := src.(syscall.Conn)
	if !ok {
		return copyGeneric(dst, src, pool)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return copyGeneric(dst, src, pool)
	}
	r := &readyReader{pool: pool}
	read := r.read // one closure for the whole copy, not one per read
	var total int64
	for {
		err := raw.Read(read)
		switch {
		case err != nil:
			return total, err
		case r.err != nil:
			pool.put(r.buf)
			return total, os.NewSyscallError("read", r.err)
		case r.n <= 0:
			pool.put(r.buf)
			return total, nil // EOF
		}
		w, werr := dst.Write((*r.buf)[:r.n])
		total += int64(w)
		pool.put(r.buf)
		if werr != nil {
			return total, werr
		}
	}
}

// readyReader is the callback state of copyConn's raw reads.
type readyReader struct {
	pool *bufferPool
	buf  *[]byte
	n    int
	err  error
}

// read runs when the poller says the socket may be readable. It reports
// false, holding no buffer, when it was not after all.
func (r *readyReader) read(fd uintptr) bool {
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
