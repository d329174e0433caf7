package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hopscope/hopscope/policy"
)

// upstreamLeaves remembers, for a few minutes, the leaf certificate each
// bumped destination showed, so that the bump can copy its names into the
// leaf it mints without a TLS handshake per tunnel. Bounded in size.
type upstreamLeaves struct {
	mu   sync.Mutex
	seen map[string]seenLeaf
}

type seenLeaf struct {
	cert *x509.Certificate
	at   time.Time
}

const (
	upstreamLeafTTL  = 5 * time.Minute
	upstreamLeafsMax = 4096
)

func (c *upstreamLeaves) get(key string, now time.Time) *x509.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.seen[key]
	if !ok || now.Sub(e.at) > upstreamLeafTTL || now.After(e.cert.NotAfter) {
		return nil
	}
	return e.cert
}

func (c *upstreamLeaves) put(key string, cert *x509.Certificate, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen == nil {
		c.seen = map[string]seenLeaf{}
	}
	if len(c.seen) >= upstreamLeafsMax {
		for k, e := range c.seen {
			if now.Sub(e.at) > upstreamLeafTTL {
				delete(c.seen, k)
			}
		}
		for k := range c.seen {
			if len(c.seen) < upstreamLeafsMax {
				break
			}
			delete(c.seen, k)
		}
	}
	c.seen[key] = seenLeaf{cert: cert, at: now}
}

// upstreamLeaf opens TLS to a bumped tunnel's destination on the tunnel's
// own connection, verified as the transport would verify it, and returns
// the destination's leaf. The TLS connection then serves the tunnel's
// first request (DialTLSContext). Through a parent proxy the transport
// opens its own tunnels, so this connection only answers the question.
//
// A destination seen in the last few minutes is not asked again: its leaf
// is remembered, and the tunnel's first request may then go on a
// kept-alive connection as before. The names are only for the client; the
// connection that carries requests is verified as always.
func (s *Server) upstreamLeaf(ctx context.Context, primed *primedConn, target policy.Request) (*x509.Certificate, error) {
	key := target.Target()
	if leaf := s.leaves.get(key, time.Now()); leaf != nil {
		return leaf, nil
	}
	conf := s.opts.UpstreamTLS.Clone()
	conf.ServerName = target.Host // for an IP, Go verifies the IP SANs
	conf.NextProtos = []string{"http/1.1"}
	hsCtx, cancel := context.WithTimeout(ctx, s.opts.DialTimeout)
	defer cancel()
	tc, err := primed.upgrade(hsCtx, conf)
	if err != nil {
		return nil, fmt.Errorf("TLS to %s first: %w", target.Target(), err)
	}
	certs := tc.ConnectionState().PeerCertificates
	if s.opts.UpstreamProxy != nil {
		primed.closeUnlessTaken()
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("TLS to %s first: no certificate", target.Target())
	}
	s.leaves.put(key, certs[0], time.Now())
	return certs[0], nil
}

// dialTLS is the transport's dialer for https: a bumped tunnel's first
// request takes the TLS connection its handshake already opened; others
// open TLS as the transport would.
func (s *Server) dialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	if p := primedFrom(ctx); p != nil {
		if tc := p.takeTLS(addr); tc != nil {
			return tc, nil
		}
	}
	conn, err := s.dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	conf := s.opts.UpstreamTLS.Clone()
	if conf.ServerName == "" {
		conf.ServerName, _, _ = net.SplitHostPort(addr)
	}
	hsCtx, cancel := context.WithTimeout(ctx, s.opts.DialTimeout)
	defer cancel()
	tc := tls.Client(conn, conf)
	if err := tc.HandshakeContext(hsCtx); err != nil {
		conn.Close()
		return nil, err
	}
	return tc, nil
}
