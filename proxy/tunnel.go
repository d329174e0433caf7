package proxy

import (
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/elazarl/goproxy"
)

// serveTunnel is goproxy's ConnectHijack callback: it owns the client
// connection from here on. It dials the destination, answers the CONNECT,
// and splices bytes both ways until both sides are done.
func (s *Server) serveTunnel(req *http.Request, client net.Conn, _ *goproxy.ProxyCtx) {
	defer client.Close()
	start := time.Now()
	target, _ := targetFrom(req.Context())
	info := connInfoFrom(req.Context())
	rec := tunnelRecord{conn: info, host: target.Host, port: target.Port, mode: "splice"}

	dialCtx := req.Context()
	upstream, err := s.dialer.dialTunnel(dialCtx, req.URL.Host)
	if err != nil {
		pe := classifyUpstreamError(err, target.Target())
		if pe.Status == http.StatusForbidden {
			s.events.deny(info, "CONNECT", target.Target(), pe)
		}
		_ = pe.response(req, s.opts.Pseudonym).Write(client)
		rec.status, rec.err, rec.duration = pe.Status, pe, time.Since(start)
		s.events.tunnel(rec)
		return
	}
	defer upstream.Close()

	if _, err := io.WriteString(client, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		rec.status, rec.err, rec.duration = http.StatusOK, err, time.Since(start)
		s.events.tunnel(rec)
		return
	}
	rec.status = http.StatusOK
	if !s.hijacked.add(client, upstream) {
		return // shutting down
	}
	defer s.hijacked.remove(client, upstream)
	rec.bytesUp, rec.bytesDown, rec.err = relayBytes(client, upstream, s.buffers)
	rec.duration = time.Since(start)
	s.events.tunnel(rec)
}

// relayBytes copies client->upstream and upstream->client until both
// directions are done. A clean end of one direction (EOF) is passed on as a
// half-close, so protocols that signal "done sending" by closing their write
// side work; an error on either side closes both, since nothing more can be
// delivered.
func relayBytes(client, upstream net.Conn, pool *bufferPool) (up, down int64, err error) {
	client, clientPrefix := splitPrefix(client)
	upstream, upstreamPrefix := splitPrefix(upstream)
	var wg sync.WaitGroup
	var upErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		up, upErr = copyHalf(upstream, client, clientPrefix, pool)
	}()
	down, err = copyHalf(client, upstream, upstreamPrefix, pool)
	wg.Wait()
	return up, down, errors.Join(upErr, err)
}

// copyHalf sends prefix and then everything from src to dst.
func copyHalf(dst, src net.Conn, prefix []byte, pool *bufferPool) (int64, error) {
	var sent int64
	if len(prefix) > 0 {
		n, err := dst.Write(prefix)
		sent += int64(n)
		if err != nil {
			src.Close()
			dst.Close()
			return sent, err
		}
	}
	n, err := copyConn(dst, src, pool)
	sent += n
	if err != nil {
		if isClosedConnError(err) {
			err = nil // the other direction closed us down on purpose
		}
		src.Close()
		dst.Close()
		return sent, err
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	} else {
		dst.Close()
	}
	return sent, nil
}

func isClosedConnError(err error) bool {
	return errors.Is(err, net.ErrClosed)
}
