package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elazarl/goproxy"

	"github.com/hopscope/hopscope/flow"
	"github.com/hopscope/hopscope/mitm"
	"github.com/hopscope/hopscope/policy"
)

// serveTunnel is goproxy's ConnectHijack callback for a CONNECT that
// passed the checks in route: it hands the hijacked connection to
// openTunnel, answering in HTTP.
func (s *Server) serveTunnel(req *http.Request, client net.Conn, _ *goproxy.ProxyCtx) {
	target, _ := targetFrom(req.Context())
	s.openTunnel(req.Context(), client, target, connInfoFrom(req.Context()), connectFront{req: req, s: s})
}

// tunnelFront is the protocol a client asked for its tunnel in (an HTTP
// CONNECT, a SOCKS5 CONNECT). openTunnel tells the client through it
// whether the tunnel is up, once the destination has been dialed.
type tunnelFront interface {
	// established tells the client its tunnel to upstream is open.
	established(client, upstream net.Conn) error
	// failed tells the client why there is no tunnel; the connection is
	// closed after.
	failed(client net.Conn, pe *proxyError) error
	// via names the protocol in tunnel records: "" for HTTP CONNECT.
	via() string
}

// connectFront answers an HTTP CONNECT.
type connectFront struct {
	req *http.Request
	s   *Server
}

func (f connectFront) established(client, _ net.Conn) error {
	answer := "HTTP/1.1 200 Connection established\r\n\r\n"
	if f.s.opts.Persona.Tinyproxy {
		answer = "HTTP/1.0 200 Connection established\r\nProxy-agent: " + f.s.opts.Persona.product() + "\r\n\r\n"
	}
	_, err := io.WriteString(client, answer)
	return err
}

func (f connectFront) failed(client net.Conn, pe *proxyError) error {
	if a, ok := f.s.personaPage(f.req, pe); ok {
		_, err := client.Write(a.bytes())
		return err
	}
	return pe.response(f.req, f.s.opts.Pseudonym).Write(client)
}

func (connectFront) via() string { return "" }

// openTunnel owns the client connection of a tunnel the policy allowed,
// whichever protocol asked for it; ctx carries the exchange (withExchange)
// so that the dialer checks the resolved address, and must last until
// openTunnel returns. It dials the destination first, so that the client's
// success answer means the destination is really there (goproxy's MITM
// path answers 200 even for a closed port), then looks at what the client
// says first: TLS to bump, plaintext HTTP to serve, anything else to
// splice.
//
// Once the tunnel is set up it returns and the relay runs on goroutines
// of its own: net/http keeps a connection's buffers alive until its
// handler returns, which would cost every idle tunnel 8 KiB or more.
func (s *Server) openTunnel(ctx context.Context, client net.Conn, target policy.Request, info connInfo, front tunnelFront) {
	start := time.Now()
	// The tunnel's ID is taken even when nobody observes (an atomic add),
	// so the exchanges inside it always name their tunnel.
	rec := &tunnelRecord{Tunnel: flow.Tunnel{ID: s.flows.NextID(), Client: info.flowClient(),
		Host: target.Host, Port: target.Port, Mode: modeSplice, Start: start, Via: front.via()}}

	upstream, err := s.dialer.dialTunnel(ctx, target.Target())
	rec.Dial = time.Since(start)
	if err != nil {
		pe := classifyUpstreamError(err, target.Target())
		rec.ErrorType = pe.ProxyStatus
		if pe.Status == http.StatusForbidden {
			s.deny(info, rec.ID, http.MethodConnect, target.Target(), pe)
		}
		_ = front.failed(client, pe)
		client.Close()
		rec.Status, rec.err = pe.Status, pe
		s.publishTunnel(flow.KindTunnel, rec)
		return
	}
	primed := &primedConn{conn: upstream, target: target}
	if err := front.established(client, upstream); err != nil {
		client.Close()
		primed.closeUnlessTaken()
		rec.Status, rec.err = http.StatusOK, fmt.Errorf("telling the client its tunnel is open: %w", err)
		s.publishTunnel(flow.KindTunnel, rec)
		return
	}
	rec.Status = http.StatusOK
	if !s.hijacked.add(client, upstream) {
		client.Close()
		primed.closeUnlessTaken()
		return // shutting down
	}
	// finish runs once, from whichever goroutine sees the tunnel end. The
	// record goes out before the tunnel leaves the hijacked set, so a
	// Shutdown waiting for that set closes the bus after it.
	finish := func() {
		primed.closeUnlessTaken()
		client.Close()
		s.publishTunnel(flow.KindTunnel, rec)
		s.hijacked.remove(client, upstream)
	}
	// The tunnel counts as open once its mode is known (after the TLS
	// handshake, for a bumped one).
	splice := func(client, upstream net.Conn) {
		s.publishTunnel(flow.KindTunnelOpen, rec)
		idle := newIdleClock(s.opts.TunnelIdleTimeout)
		faults := s.newConnFaults(info, rec.ID, target.Target(), resetBoth(client, upstream))
		startRelay(s.poller, client, upstream, s.buffers, idle, faults, func(up, down int64, err error) {
			rec.BytesUp, rec.BytesDown, rec.err = up, down, err
			var idleErr errIdle
			if errors.As(rec.err, &idleErr) {
				s.profileFault(info, rec.ID, "idle-timeout", target.Target(), idleErr.Error())
			}
			finish()
		})
	}
	if !s.opts.Policy.Bump.Inspect(target.Host, target.Port) {
		splice(client, upstream)
		return
	}
	first := sniffTunnel(client, upstream)
	primed.conn = first.upstream
	t := tunnelInfo{id: info.id, flow: rec.ID, target: target, primed: primed}
	switch {
	case first.err != nil:
		// The client closed without a byte: an empty tunnel, not an error.
		finish()
	case first.tls && s.opts.Issuer != nil && s.opts.Policy.Bump.BumpTLS(target.Host, target.Port):
		rec.Mode, t.scheme = modeBump, "https"
		counted := &countingConn{Conn: first.client}
		conn, err := s.bump(ctx, counted, target, rec, primed)
		if err != nil {
			rec.err = err
			rec.BytesUp, rec.BytesDown = counted.read.Load(), counted.written.Load()
			finish()
			return
		}
		s.publishTunnel(flow.KindTunnelOpen, rec)
		s.serveInner(conn, t, func() {
			rec.BytesUp, rec.BytesDown = counted.read.Load(), counted.written.Load()
			finish()
		})
	case first.http && !s.opts.Persona.any():
		// squid and tinyproxy splice what they do not bump; so do their personas.
		rec.Mode, t.scheme = modeHTTP, "http"
		counted := &countingConn{Conn: first.client}
		s.publishTunnel(flow.KindTunnelOpen, rec)
		s.serveInner(counted, t, func() {
			rec.BytesUp, rec.BytesDown = counted.read.Load(), counted.written.Load()
			finish()
		})
	default:
		splice(first.client, first.upstream)
	}
}

// bump terminates the client's TLS with a leaf from the local CA. The
// destination is reached through the transport, with its certificate
// verified, so a failure there becomes a 502 page inside the bumped
// connection.
//
// The leaf carries the names of the destination's own certificate: during
// the client's handshake, hopscope first opens TLS to the destination on
// the tunnel's connection (which then serves the first request), as
// mitmproxy does.
func (s *Server) bump(ctx context.Context, client net.Conn, target policy.Request, rec *tunnelRecord, primed *primedConn) (*tls.Conn, error) {
	var leaf mitm.LeafSource
	upstreamLeaf := func(string) (*x509.Certificate, error) { return s.upstreamLeaf(ctx, primed, target) }
	conf := s.opts.Issuer.BumpConfig(target.Host, &leaf, upstreamLeaf)
	if !s.opts.BumpHTTP1Only {
		// HTTP/2 to the client, HTTP/1.1 upstream. The inner server does
		// not offer RFC 8441 extended CONNECT, so browsers open WebSockets
		// on an HTTP/1.1 connection of their own, which the relay serves.
		conf.NextProtos = []string{alpnH2, "http/1.1"}
	}
	conn := tls.Server(client, conf)
	hsCtx, cancel := context.WithTimeout(ctx, s.opts.ReadHeaderTimeout)
	err := conn.HandshakeContext(hsCtx)
	cancel()
	rec.Leaf = "cached"
	if leaf.Minted {
		rec.Leaf = "minted"
	}
	rec.LeafNames = "requested"
	if leaf.Upstream {
		rec.LeafNames = "upstream"
	} else if leaf.UpstreamErr != nil {
		rec.LeafNote = "minted from the requested name alone: " + leaf.UpstreamErr.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("TLS handshake with the client failed (a client that does not trust hopscope's CA says so here; see `hopscope ca install`): %w", err)
	}
	state := conn.ConnectionState()
	rec.SNI, rec.TLSVersion, rec.ALPN = state.ServerName, tls.VersionName(state.Version), state.NegotiatedProtocol
	return conn, nil
}

// alpnH2 is HTTP/2's ALPN protocol ID (RFC 9113 section 3.2).
const alpnH2 = "h2"

// tunnelInfo describes the tunnel an inner request arrived through.
type tunnelInfo struct {
	id     uint64
	flow   flow.ID
	scheme string // "https" for bumped tunnels, "http" for plaintext ones
	target policy.Request
	primed *primedConn
}

type tunnelKey struct{}

func tunnelFrom(ctx context.Context) (tunnelInfo, bool) {
	t, ok := ctx.Value(tunnelKey{}).(tunnelInfo)
	return t, ok
}

// serveInner serves HTTP/1.1, or HTTP/2 when a bumped client chose h2, on a
// tunnel's client connection (decrypted or plaintext) through the same
// front handler logic as plain proxy requests.
// It returns at once; onDone runs when the connection is closed, by
// net/http or, after a WebSocket upgrade, by the relay.
func (s *Server) serveInner(conn net.Conn, t tunnelInfo, onDone func()) {
	outer := connInfo{id: t.id, tunnel: t.id, tunnelFlow: t.flow, bumped: t.scheme == "https"}
	srv := &http.Server{
		Handler:           http.HandlerFunc(s.serveInTunnel),
		ReadHeaderTimeout: s.opts.ReadHeaderTimeout,
		IdleTimeout:       s.opts.IdleTimeout,
		MaxHeaderBytes:    headRoom(s.opts.MaxHeaderBytes),
		ErrorLog:          goproxyLogger{s.log}.std(),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			outer.client = c.RemoteAddr().String()
			ctx = withHeadTap(ctx, c)
			ctx = context.WithValue(ctx, connInfoKey{}, outer)
			ctx = context.WithValue(ctx, tunnelKey{}, t)
			return withPrimed(ctx, t.primed)
		},
	}
	if tc, ok := conn.(*tls.Conn); ok && tc.ConnectionState().NegotiatedProtocol == alpnH2 {
		// net/http serves HTTP/2 (one exchange per stream) only on a
		// *tls.Conn itself, so the connection goes in unwrapped and its
		// end is seen through ConnState. HTTP/2 header names are lower
		// case by rule: there are no wire names to keep.
		var once sync.Once
		srv.ConnState = func(_ net.Conn, st http.ConnState) {
			if st == http.StateClosed {
				once.Do(onDone)
			}
		}
		_ = srv.Serve(&oneConnListener{conn: tc})
		return
	}
	_ = srv.Serve(newOneConnListener(newHeadTap(conn, headRoom(s.opts.MaxHeaderBytes)), onDone))
}

// startRelay copies client->upstream and upstream->client and calls done
// once both directions are done. A clean end of one direction (EOF) is
// passed on as a half-close, so protocols that signal "done sending" by
// closing their write side work; an error on either side closes both,
// since nothing more can be delivered. With a poller, a direction quiet
// for a while is parked there instead of keeping a goroutine.
func startRelay(pl *poller, client, upstream net.Conn, pool *bufferPool, idle *idleClock, faults *connFaults, done func(up, down int64, err error)) {
	client, clientPrefix := splitPrefix(client)
	upstream, upstreamPrefix := splitPrefix(upstream)
	toUpstream, toClient := upstream, client
	if f := faults.forBytes("client"); f != nil {
		toUpstream = &faultWriter{Conn: upstream, faults: f}
	}
	if f := faults.forBytes("server"); f != nil {
		toClient = &faultWriter{Conn: client, faults: f}
	}
	r := &byteRelay{done: done}
	r.left.Store(2)
	r.halves[0] = r.half(pl, toUpstream, client, clientPrefix, pool, idle, 0)
	r.halves[1] = r.half(pl, toClient, upstream, upstreamPrefix, pool, idle, 1)
	go r.halves[0].start()
	go r.halves[1].start()
}

// byteRelay is a tunnel's two directions: 0 client->upstream, 1 back.
type byteRelay struct {
	halves [2]*relayHalf
	left   atomic.Int32
	done   func(up, down int64, err error)
}

// relayHalf is one direction of a byteRelay.
type relayHalf struct {
	r        *byteRelay
	dst, src net.Conn
	prefix   []byte
	pump     *pump
	sent     int64
	err      error
}

func (r *byteRelay) half(pl *poller, dst, src net.Conn, prefix []byte, pool *bufferPool, idle *idleClock, i int) *relayHalf {
	h := &relayHalf{r: r, dst: dst, src: src, prefix: prefix}
	h.pump = newPump(newChunkReader(src, pool, idle), pl, h.write, func(err error) { h.ended(i, err) })
	return h
}

// start sends the prefix, then relays.
func (h *relayHalf) start() {
	if len(h.prefix) > 0 {
		if err := h.write(h.prefix); err != nil {
			h.pump.end(err)
			return
		}
		h.prefix = nil
	}
	h.pump.run()
}

func (h *relayHalf) write(b []byte) error {
	n, err := h.dst.Write(b)
	h.sent += int64(n)
	return err
}

// ended passes a clean end on as a half-close, or closes both sides after
// an error (waking the other direction if it is parked); the last
// direction to end reports.
func (h *relayHalf) ended(i int, err error) {
	if errors.Is(err, io.EOF) {
		if cw, ok := h.dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			h.dst.Close()
		}
	} else {
		if errors.Is(err, net.ErrClosed) {
			err = nil // the other direction closed us down on purpose
		}
		h.err = err
		h.src.Close()
		h.dst.Close()
		h.r.halves[1-i].pump.wake()
	}
	if h.r.left.Add(-1) == 0 {
		r := h.r
		r.done(r.halves[0].sent, r.halves[1].sent, errors.Join(r.halves[0].err, r.halves[1].err))
	}
}

// countingConn counts the bytes read from and written to a client
// connection whose traffic hopscope serves itself (bumped or plaintext
// tunnels). net/http reads in a background goroutine, hence atomics.
type countingConn struct {
	net.Conn
	read, written atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.written.Add(int64(n))
	return n, err
}

// primedConn is the upstream connection a tunnel dialed to check that its
// destination is reachable. When the tunnel is served as HTTP, the
// transport takes it for its first request instead of dialing again, so
// the destination never sees a connection opened and dropped unused.
type primedConn struct {
	mu     sync.Mutex
	conn   net.Conn
	target policy.Request
	taken  bool
	// secure is set once a bump opened TLS on conn (then conn is secure):
	// from then on it is handed out only as TLS.
	secure *tls.Conn
}

// upgrade opens TLS on the primed connection with conf and keeps the TLS
// connection for takeTLS. It fails when the connection was already taken.
func (p *primedConn) upgrade(ctx context.Context, conf *tls.Config) (*tls.Conn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.taken || p.secure != nil {
		return nil, errors.New("the tunnel's connection to the destination is already in use")
	}
	tc := tls.Client(p.conn, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		p.taken = true
		p.conn.Close()
		return nil, err
	}
	p.secure, p.conn = tc, tc
	return tc, nil
}

// takeTLS hands out the connection once, if TLS was opened on it and it
// goes where addr does.
func (p *primedConn) takeTLS(addr string) *tls.Conn {
	p.mu.Lock()
	secure := p.secure
	p.mu.Unlock()
	if secure == nil || p.take(addr) == nil {
		return nil
	}
	return secure
}

type primedKey struct{}

func withPrimed(ctx context.Context, p *primedConn) context.Context {
	return context.WithValue(ctx, primedKey{}, p)
}

func primedFrom(ctx context.Context) *primedConn {
	p, _ := ctx.Value(primedKey{}).(*primedConn)
	return p
}

// take hands out the connection once, if it goes where addr does.
func (p *primedConn) take(addr string) net.Conn {
	host, port, err := policy.SplitHostPort(addr)
	if err != nil || host != p.target.Host || port != p.target.Port {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.taken {
		return nil
	}
	p.taken = true
	return p.conn
}

// takePlain is take for a caller that will speak on the connection as it
// is: a connection TLS was opened on is not for it.
func (p *primedConn) takePlain(addr string) net.Conn {
	p.mu.Lock()
	secure := p.secure
	p.mu.Unlock()
	if secure != nil {
		return nil
	}
	return p.take(addr)
}

func (p *primedConn) closeUnlessTaken() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.taken {
		p.taken = true
		p.conn.Close()
	}
}
