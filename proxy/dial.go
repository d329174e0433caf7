package proxy

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"syscall"
	"time"

	"github.com/hopscope/hopscope/policy"
)

// exchange is what the stages of one proxied request share through its
// context: the policy target, so the dialer can decide again on the
// address a name resolved to, and the client writer, for goproxy's hooks.
// One value and one request copy per exchange, not one per item.
type exchange struct {
	target policy.Request
	writer *clientWriter
	// wireNames are the answer's header names as the destination wrote
	// them, where their case differs from net/http's.
	wireNames map[string]string
	// answered is set when the interceptor answered the request itself:
	// there is no destination's answer to pause.
	answered bool
}

type exchangeKey struct{}

func withExchange(ctx context.Context, ex *exchange) context.Context {
	return context.WithValue(ctx, exchangeKey{}, ex)
}

func exchangeFrom(ctx context.Context) *exchange {
	ex, _ := ctx.Value(exchangeKey{}).(*exchange)
	return ex
}

func targetFrom(ctx context.Context) (policy.Request, bool) {
	if ex := exchangeFrom(ctx); ex != nil {
		return ex.target, true
	}
	return policy.Request{}, false
}

// dialer opens upstream connections. Host rules that name addresses are
// enforced here, on the address actually dialed, so that a name resolving
// into a denied range is refused (a DNS-rebinding-proof check, as
// smokescreen and caddy's forwardproxy do).
type dialer struct {
	policy *policy.Policy
	net    net.Dialer
	// parent, when set, is a parent proxy that all traffic goes through.
	// Destinations are then never resolved here, so only name rules apply.
	parent *url.URL
}

func newDialer(p *policy.Policy, timeout time.Duration, resolver *net.Resolver, parent *url.URL) *dialer {
	d := &dialer{policy: p, parent: parent}
	d.net = net.Dialer{
		Timeout:   timeout,
		KeepAlive: 30 * time.Second,
		Resolver:  resolver,
	}
	if parent == nil {
		d.net.ControlContext = d.checkAddress
	}
	return d
}

// checkAddress runs after name resolution, before each connect(2).
func (d *dialer) checkAddress(ctx context.Context, network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("dialing %s: unexpected address form: %w", address, err)
	}
	req, ok := targetFrom(ctx)
	if !ok {
		// Every dial the proxy makes carries its target; one that does not
		// is a bug, and refusing is the safe answer.
		req = policy.Request{Kind: policy.Forward, Host: ap.Addr().String(), Port: ap.Port()}
	}
	req.Addr = ap.Addr()
	if decision := d.policy.Decide(req); !decision.Allow {
		return &deniedError{Decision: decision, Target: req.Target()}
	}
	return nil
}

// DialContext is the transport's dialer for forwarded requests. A request
// from inside a tunnel first gets the connection the tunnel already opened.
func (d *dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if p := primedFrom(ctx); p != nil {
		if conn := p.takePlain(addr); conn != nil {
			return conn, nil
		}
	}
	return d.net.DialContext(ctx, network, addr)
}

// dialTunnel opens the upstream side of a CONNECT tunnel to target, through
// the parent proxy when there is one.
func (d *dialer) dialTunnel(ctx context.Context, target string) (net.Conn, error) {
	if d.parent == nil {
		return d.net.DialContext(ctx, "tcp", target)
	}
	return d.connectViaParent(ctx, target)
}

// connectViaParent asks the parent proxy for a tunnel, as squid does with a
// cache_peer parent.
func (d *dialer) connectViaParent(ctx context.Context, target string) (net.Conn, error) {
	parentAddr := parentAddr(d.parent)
	conn, err := d.net.DialContext(ctx, "tcp", parentAddr)
	if err != nil {
		return nil, fmt.Errorf("dialing parent proxy %s: %w", parentAddr, err)
	}
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	} else if d.net.Timeout > 0 {
		_ = conn.SetDeadline(time.Now().Add(d.net.Timeout))
	}
	req := &http.Request{
		Method: http.MethodConnect,
		URL:    &url.URL{Opaque: target},
		Host:   target,
		Header: http.Header{},
	}
	setParentAuth(req.Header, d.parent)
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, fmt.Errorf("sending CONNECT %s to parent proxy %s: %w", target, parentAddr, err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("reading parent proxy %s's answer to CONNECT %s: %w", parentAddr, target, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		conn.Close()
		return nil, &parentProxyError{Parent: parentAddr, Status: resp.Status}
	}
	_ = conn.SetDeadline(time.Time{})
	if br.Buffered() > 0 {
		// The destination already spoke (a server-first protocol); keep
		// what the reader holds.
		peek, _ := br.Peek(br.Buffered())
		return &prefixConn{Conn: conn, prefix: append([]byte(nil), peek...)}, nil
	}
	return conn, nil
}

// parentAddr is the parent proxy's host:port, 3128 (squid's) by default.
func parentAddr(u *url.URL) string {
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), "3128")
	}
	return u.Host
}

// setParentAuth sends the parent proxy the credentials in its URL.
func setParentAuth(h http.Header, parent *url.URL) {
	if u := parent.User; u != nil {
		pass, _ := u.Password()
		h.Set("Proxy-Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(u.Username()+":"+pass)))
	}
}
