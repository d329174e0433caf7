package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/hopscope/hopscope/policy"
	"github.com/hopscope/hopscope/proxy/socks5"
)

// ServeSOCKS accepts SOCKS5 clients (RFC 1928, CONNECT only) on ln until
// Shutdown, and returns http.ErrServerClosed then. A SOCKS5 CONNECT passes
// the same checks as an HTTP CONNECT, in the same order: client range,
// credentials (RFC 1929 username/password, the same users as --auth and
// --htpasswd), the policy for the destination, then openTunnel, so it is
// dialed, spliced or bumped and logged exactly as a CONNECT would be.
// Serve and ServeSOCKS may run side by side on one Server.
func (s *Server) ServeSOCKS(ln net.Listener) error {
	if !s.socks.addListener(ln) {
		ln.Close()
		return http.ErrServerClosed
	}
	if ev := s.log.Info(); ev != nil {
		ev.Str("event", EventListen).Str("addr", ln.Addr().String()).Str("protocol", "socks5").
			Bool("auth", !s.opts.Credentials.Empty()).Msg("SOCKS5 listening")
	}
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if s.socks.isClosed() {
				return http.ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporaryAccept(err) {
				// Out of file descriptors and the like: wait, as net/http does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("accepting SOCKS5 clients on %s: %w", ln.Addr(), err)
		}
		backoff = 0
		if !s.socks.conns.add(conn) {
			conn.Close()
			continue
		}
		go func() {
			defer s.socks.conns.remove(conn)
			s.serveSOCKSConn(conn)
		}()
	}
}

// isTemporaryAccept reports accept errors that go away by themselves
// (EMFILE, ECONNABORTED), for which net/http also retries.
func isTemporaryAccept(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// socksListeners are the SOCKS5 listeners and the connections still in
// their handshake, which Shutdown must close; tunnels, once open, are in
// Server.hijacked like CONNECT tunnels.
type socksListeners struct {
	mu     sync.Mutex
	lns    []net.Listener
	closed bool
	conns  connSet
}

func (l *socksListeners) addListener(ln net.Listener) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.lns = append(l.lns, ln)
	return true
}

// firstAddr is the address of the first SOCKS5 listener, for the PAC
// file; the zero value when there is none.
func (l *socksListeners) firstAddr() netip.AddrPort {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ln := range l.lns {
		if tcp, ok := ln.Addr().(*net.TCPAddr); ok {
			return tcp.AddrPort()
		}
	}
	return netip.AddrPort{}
}

func (l *socksListeners) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// closeListeners stops accepting.
func (l *socksListeners) closeListeners() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	for _, ln := range l.lns {
		_ = ln.Close()
	}
}

// shutdown waits until ctx is done for handshakes under way to reach their
// tunnel (or their refusal), then closes the rest.
func (l *socksListeners) shutdown(ctx context.Context) {
	l.closeListeners()
	if !l.conns.waitIdle(ctx) {
		l.conns.closeAll()
		l.conns.waitIdle(context.Background())
	}
	l.conns.closeAll()
}

// serveSOCKSConn runs one client's handshake and, if it is allowed, its
// tunnel. Every refusal the client can be told about gets the SOCKS reply
// code that says it, and a deny event with the reason.
func (s *Server) serveSOCKSConn(conn net.Conn) {
	info := connInfo{id: s.nextConn.Add(1), client: conn.RemoteAddr().String()}
	// The whole handshake must arrive within the header timeout, as an
	// HTTP request's head must (slowloris).
	_ = conn.SetDeadline(time.Now().Add(s.opts.ReadHeaderTimeout))
	br := bufio.NewReaderSize(conn, 512)
	refuse := func(rep socks5.Reply, target string, pe *proxyError) {
		s.deny(info, 0, methodSOCKS, target, pe)
		_ = socks5.WriteReply(conn, rep, netip.AddrPort{})
		conn.Close()
	}

	methods, err := socks5.ReadGreeting(br)
	if err != nil {
		s.answerNotSOCKS(conn, err)
		return
	}
	clientOK := s.clientAllowedAt(conn.RemoteAddr().String())
	needAuth := !s.opts.Credentials.Empty() && clientOK
	method := byte(socks5.MethodNoAcceptable)
	switch {
	case needAuth && bytes.IndexByte(methods, socks5.MethodUserPass) >= 0:
		method = socks5.MethodUserPass
	case needAuth:
	case bytes.IndexByte(methods, socks5.MethodNoAuth) >= 0:
		method = socks5.MethodNoAuth
	case bytes.IndexByte(methods, socks5.MethodUserPass) >= 0:
		// Credentials nobody checks: a client configured with a user for
		// another proxy still gets through.
		method = socks5.MethodUserPass
	}
	if err := socks5.WriteMethod(conn, method); err != nil || method == socks5.MethodNoAcceptable {
		if method == socks5.MethodNoAcceptable {
			s.deny(info, 0, methodSOCKS, "", &proxyError{Status: http.StatusProxyAuthRequired, Rule: "auth",
				Message: "hopscope requires a SOCKS5 user name and password (RFC 1929); the client offered no such method"})
		}
		conn.Close()
		return
	}
	if method == socks5.MethodUserPass {
		user, pass, err := socks5.ReadUserPass(br)
		if err != nil {
			s.socksDiagnostic(info, err)
			conn.Close()
			return
		}
		ok := !needAuth || s.opts.Credentials.Check(user, pass)
		if err := socks5.WriteUserPassStatus(conn, ok); err != nil || !ok {
			if !ok {
				s.deny(info, 0, methodSOCKS, "", &proxyError{Status: http.StatusProxyAuthRequired, Rule: "auth",
					Message: "hopscope: " + errWrongCredentials.Error()})
			}
			conn.Close()
			return
		}
	}

	req, err := socks5.ReadRequest(br)
	if err != nil {
		var re *socks5.RequestError
		if errors.As(err, &re) {
			refuse(re.Reply, "", &proxyError{Status: http.StatusBadRequest, Rule: "request", Message: "hopscope: " + re.Msg})
			return
		}
		s.socksDiagnostic(info, err)
		conn.Close()
		return
	}
	named := net.JoinHostPort(req.Host, strconv.Itoa(int(req.Port)))
	if !clientOK {
		ip := clientHost(info.client)
		refuse(socks5.ReplyNotAllowed, named, clientDenial(ip))
		return
	}
	if req.Command != socks5.CommandConnect {
		refuse(socks5.ReplyCommandNotSupported, named, &proxyError{Status: http.StatusNotImplemented, Rule: "socks5-command",
			Message: fmt.Sprintf("hopscope supports only the SOCKS5 CONNECT command, not %s", socksCommandName(req.Command))})
		return
	}
	target, err := socksTarget(req)
	if err != nil {
		refuse(socks5.ReplyGeneralFailure, "", &proxyError{Status: http.StatusBadRequest, Rule: "request", Message: "hopscope: " + err.Error()})
		return
	}
	if d := s.opts.Policy.Decide(target); !d.Allow {
		refuse(socks5.ReplyNotAllowed, target.Target(), denial(target.Kind, target.Target(), d))
		return
	}

	_ = conn.SetDeadline(time.Time{})
	client := conn
	if n := br.Buffered(); n > 0 {
		// Bytes a client sent right behind its request (optimistic data).
		peek, _ := br.Peek(n)
		client = &prefixConn{Conn: conn, prefix: append([]byte(nil), peek...)}
	}
	ctx, cancel := context.WithCancel(withExchange(context.Background(), &exchange{target: target}))
	defer cancel()
	s.openTunnel(ctx, client, target, info, socksFront{})
}

// methodSOCKS is the method of deny events for SOCKS5 requests.
const methodSOCKS = "SOCKS5"

// socksTarget turns a request into the policy's question. Names are
// normalised as CONNECT targets are (lower case, no trailing dot).
func socksTarget(req socks5.Request) (policy.Request, error) {
	host, port, err := policy.SplitHostPort(net.JoinHostPort(req.Host, strconv.Itoa(int(req.Port))))
	if err != nil {
		return policy.Request{}, fmt.Errorf("SOCKS5 request for %s port %d: %w", req.Host, req.Port, err)
	}
	return policy.Request{Kind: policy.Connect, Host: host, Port: port}, nil
}

func socksCommandName(c byte) string {
	switch c {
	case socks5.CommandBind:
		return "BIND"
	case socks5.CommandUDPAssociate:
		return "UDP ASSOCIATE"
	}
	return fmt.Sprintf("0x%02x", c)
}

// answerNotSOCKS tells a client that spoke something else to the SOCKS5
// port what it reached: SOCKS4 clients get SOCKS4's "rejected", HTTP
// clients a 400 that names the port's protocol.
func (s *Server) answerNotSOCKS(conn net.Conn, err error) {
	defer conn.Close()
	var ve *socks5.VersionError
	if !errors.As(err, &ve) {
		if !errors.Is(err, io.EOF) {
			s.socksDiagnostic(connInfo{client: conn.RemoteAddr().String()}, err)
		}
		return
	}
	switch {
	case ve.Got == 0x04:
		_, _ = conn.Write([]byte{0x00, 0x5b, 0, 0, 0, 0, 0, 0}) // SOCKS4: request rejected
	case ve.Got >= 'A' && ve.Got <= 'Z':
		const body = "This is hopscope's SOCKS5 port. Use it as socks5h://HOST:PORT (curl --socks5-hostname), or send HTTP proxy requests to hopscope's HTTP port (--listen).\n"
		_, _ = fmt.Fprintf(conn, "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
	}
	s.socksDiagnostic(connInfo{client: conn.RemoteAddr().String()}, err)
}

// socksDiagnostic logs a handshake that broke off, at debug level, as
// net/http logs malformed requests.
func (s *Server) socksDiagnostic(info connInfo, err error) {
	if ev := s.log.Debug(); ev != nil {
		ev.Str("event", "diagnostic").Str("client", info.client).AnErr("error", err).Msg("SOCKS5 handshake failed")
	}
}

// socksFront answers a SOCKS5 CONNECT once the destination has been
// dialed: success with the bound address, or the reply code that says
// why not.
type socksFront struct{}

func (socksFront) established(client, upstream net.Conn) error {
	var bound netip.AddrPort
	if tcp, ok := upstream.LocalAddr().(*net.TCPAddr); ok {
		bound = tcp.AddrPort()
	}
	return socks5.WriteReply(client, socks5.ReplySucceeded, bound)
}

func (socksFront) failed(client net.Conn, pe *proxyError) error {
	return socks5.WriteReply(client, socksReply(pe), netip.AddrPort{})
}

func (socksFront) via() string { return "socks5" }

// socksReply maps the proxy's answer for a failed tunnel to the SOCKS5
// reply that says the same. Timeouts are "TTL expired", as Tor answers
// them: RFC 1928 has no closer code.
func socksReply(pe *proxyError) socks5.Reply {
	if pe.Status == http.StatusForbidden {
		return socks5.ReplyNotAllowed
	}
	switch pe.ProxyStatus {
	case "connection_refused":
		return socks5.ReplyConnectionRefused
	case "destination_ip_unroutable":
		return socks5.ReplyNetworkUnreachable
	case "dns_error":
		return socks5.ReplyHostUnreachable
	case "connection_timeout", "dns_timeout":
		return socks5.ReplyTTLExpired
	}
	return socks5.ReplyGeneralFailure
}
