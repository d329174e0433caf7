package proxy

import (
	"bufio"
	"context"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/hopscope/hopscope/flow"
	"github.com/hopscope/hopscope/policy"
)

// isWebSocketUpgrade reports whether r asks to switch to the WebSocket
// protocol (RFC 6455 section 4.1: a GET with Upgrade: websocket and a
// Connection header naming upgrade).
func isWebSocketUpgrade(r *http.Request) bool {
	return r.Method == http.MethodGet &&
		httpguts.HeaderValuesContainsToken(r.Header["Connection"], "upgrade") &&
		httpguts.HeaderValuesContainsToken(r.Header["Upgrade"], "websocket")
}

// wsPath says which way a WebSocket reached the proxy, for ws_open.
func wsPath(info connInfo, scheme string) string {
	switch {
	case info.tunnel == 0:
		return "forward"
	case scheme == "https":
		return "bump"
	default:
		return "tunnel"
	}
}

// serveWebSocket owns the upgrade path: goproxy would copy raw bytes (and
// leak the client connection when the server closes). It forwards the
// handshake with hop-by-hop headers cleaned and the upgrade asked for
// again, answers a non-101 as an ordinary response, and on 101 relays the
// connection frame by frame.
func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request, info connInfo) {
	target, _ := targetFrom(r.Context())
	x := s.startExchange(r, info, r.URL.Redacted())
	end := exchangeEnd{answeredBy: answeredByDestination}
	published := false
	publish := func() {
		if !published {
			published = true
			x.finish(end)
		}
	}
	defer publish()
	fail := func(pe *proxyError) {
		x.responseHead()
		pe.writeTo(w, s.opts.Pseudonym)
		end = exchangeEnd{status: pe.Status, header: w.Header(), respBytes: int64(len(pe.body())),
			answeredBy: answeredByProxy, err: pe, complete: true}
	}

	out := s.upgradeRequest(r)
	upstream, br, err := s.dialWebSocket(r.Context(), r.URL, target, out)
	if err != nil {
		pe := classifyUpstreamError(err, target.Target())
		if pe.Status == http.StatusForbidden {
			s.deny(info, x.id(), r.Method, r.URL.Redacted(), pe)
		}
		fail(pe)
		return
	}
	// The head's names as the server wrote them (Sec-WebSocket-Accept),
	// from what the first read brought: http.ReadResponse canonicalises.
	var wireNames map[string]string
	if _, err := br.Peek(1); err == nil {
		head, _ := br.Peek(br.Buffered())
		wireNames = wireNameMap(head)
	}
	resp, err := http.ReadResponse(br, out)
	if err != nil {
		upstream.Close()
		fail(classifyUpstreamError(err, target.Target()))
		return
	}
	x.responseHead()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer upstream.Close()
		end.status, end.respBytes, end.err = s.passResponse(w, resp, x)
		end.header, end.complete = w.Header(), end.err == nil
		return
	}
	if !httpguts.HeaderValuesContainsToken(resp.Header["Upgrade"], "websocket") ||
		!httpguts.HeaderValuesContainsToken(resp.Header["Connection"], "upgrade") {
		upstream.Close()
		fail(&proxyError{Status: http.StatusBadGateway, ProxyStatus: "http_protocol_error",
			Message: fmt.Sprintf("%s answered 101 without Upgrade: websocket and Connection: Upgrade", target.Target())})
		return
	}

	neg := parseExtensions(resp.Header.Values("Sec-WebSocket-Extensions"))
	hdr := resp.Header.Clone()
	removeHopByHopHeaders(hdr)
	hdr.Set("Connection", "Upgrade")
	hdr.Set("Upgrade", "websocket")
	s.markResponse(hdr, resp.ProtoMajor, resp.ProtoMinor, r)
	if s.opts.WebFilter {
		// A filter that does not know WebSockets rewrites the hop-by-hop
		// Connection header like any other; strict clients then reject
		// the handshake.
		hdr.Set("Connection", "keep-alive")
	}
	if s.holdsMessages() && neg.deflate && !neg.clientNoContextTakeover {
		// Messages the client sends may be dropped or rewritten: it must
		// compress each on its own, or the server would lose track of the
		// history (RFC 7692 section 7.1.1.2).
		neg.clientNoContextTakeover = true
		hdr.Set("Sec-WebSocket-Extensions", neg.raw+"; client_no_context_takeover")
	}

	client, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		upstream.Close()
		fail(&proxyError{Status: http.StatusInternalServerError, ProxyStatus: "proxy_internal_error",
			Message: "hopscope could not take over the client connection for the WebSocket"})
		return
	}
	end.header = hdr.Clone() // records keep canonical names, for Get
	restoreWireNames(hdr, wireNames)
	if err := writeSwitchingProtocols(brw.Writer, hdr); err != nil {
		client.Close()
		upstream.Close()
		end.status, end.err = http.StatusSwitchingProtocols, fmt.Errorf("writing the 101 to the client: %w", err)
		return
	}
	// The session's ID is taken even when nobody observes (an atomic add),
	// so that its messages always name it.
	id := s.flows.NextID()
	end.status, end.complete, end.webSocket = http.StatusSwitchingProtocols, true, id
	publish()
	_ = upstream.SetDeadline(time.Time{}) // the handshake's deadline ends with it

	wsURL := websocketURL(r.URL)
	sess := &wsSession{
		srv:      s,
		id:       id,
		info:     info,
		url:      wsURL,
		path:     wsPath(info, r.URL.Scheme),
		neg:      neg,
		start:    time.Now(),
		client:   &wsPeer{conn: client},
		upstream: &wsPeer{conn: upstream},
		idle:     newIdleClock(s.opts.TunnelIdleTimeout),
		faults:   s.newConnFaults(info, id, wsURL, resetBoth(client, upstream)),
		// The web filter holds the client's bytes after the upgrade.
		swallowClient: s.opts.WebFilter,
	}
	sess.opened = flow.WSSession{
		ID: id, Client: info.flowClient(), Exchange: x.id(), Tunnel: info.tunnelFlow,
		URL: wsURL, Path: sess.path, Start: sess.start,
		Subprotocol:    resp.Header.Get("Sec-WebSocket-Protocol"),
		Extensions:     hdr.Get("Sec-WebSocket-Extensions"),
		AcceptMismatch: resp.Header.Get("Sec-WebSocket-Accept") != acceptKey(r.Header.Get("Sec-WebSocket-Key")),
	}
	if s.flows.Active() {
		open := sess.opened
		s.flows.Publish(flow.Record{Kind: flow.KindWSOpen, Session: &open})
	}
	if !s.hijacked.add(client, upstream) {
		client.Close()
		upstream.Close()
		return
	}
	if s.opts.Interceptor != nil {
		sess.live = &WSLive{sess: sess, done: make(chan struct{})}
		sess.intercept = s.opts.Interceptor.WebSocketOpened(sess.live)
	}
	clientEarly, upstreamEarly := buffered(brw.Reader), buffered(br)
	// The relay runs on goroutines of its own and this handler returns, so
	// that net/http lets go of the connection's buffers (8 KiB and more)
	// instead of keeping them for the WebSocket's whole life.
	sess.relay(s.poller, clientEarly, upstreamEarly, func() { s.hijacked.remove(client, upstream) })
}

// passResponse relays a non-101 answer to an upgrade request as an
// ordinary response.
func (s *Server) passResponse(w http.ResponseWriter, resp *http.Response, x *exchangeFlow) (int, int64, error) {
	defer resp.Body.Close()
	removeHopByHopHeaders(resp.Header)
	s.markResponse(resp.Header, resp.ProtoMajor, resp.ProtoMinor, resp.Request)
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	var body io.Reader = resp.Body
	if x != nil && x.respTap != nil {
		body = io.TeeReader(resp.Body, x.respTap)
	}
	n, err := io.Copy(w, body)
	return resp.StatusCode, n, err
}

// upgradeRequest builds the handshake for the next hop: the client's
// end-to-end headers, hop-by-hop ones removed and the upgrade asked for
// again (as httputil.ReverseProxy does).
func (s *Server) upgradeRequest(r *http.Request) *http.Request {
	hdr := r.Header.Clone()
	cleanRequestHeaders(hdr)
	hdr.Set("Connection", "Upgrade")
	hdr.Set("Upgrade", "websocket")
	if _, ok := hdr["User-Agent"]; !ok {
		hdr.Set("User-Agent", "") // keep net/http from adding its own
	}
	s.markRequest(hdr, r.ProtoMajor, r.ProtoMinor, clientIP(r))
	if s.holdsMessages() {
		// Ask the server to compress each message on its own, so that a
		// message hopscope drops or rewrites cannot break the client's
		// decompression of the next ones.
		if offers := hdr.Values("Sec-WebSocket-Extensions"); len(offers) > 0 {
			hdr["Sec-WebSocket-Extensions"] = addServerNoContextTakeover(offers)
		}
	}
	u := &url.URL{Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	if u.Path == "" {
		u.Path = "/"
	}
	out := &http.Request{
		Method:     http.MethodGet,
		URL:        u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     hdr,
		Host:       r.Host,
	}
	return out.WithContext(r.Context())
}

// dialWebSocket connects to the destination (through the parent proxy when
// there is one), speaks TLS for wss, and sends the handshake.
func (s *Server) dialWebSocket(ctx context.Context, u *url.URL, target policy.Request, req *http.Request) (net.Conn, *bufio.Reader, error) {
	dialCtx, cancel := context.WithTimeout(ctx, s.opts.DialTimeout)
	defer cancel()
	hostport := target.Target()
	secure := u.Scheme == "https"
	var conn net.Conn
	var err error
	viaParent := s.opts.UpstreamProxy != nil && !secure
	var primedTLS *tls.Conn
	if p := primedFrom(ctx); p != nil && secure && s.opts.UpstreamProxy == nil {
		primedTLS = p.takeTLS(hostport) // opened by the bump for its leaf
	}
	switch {
	case primedTLS != nil:
		conn = primedTLS
	case s.opts.UpstreamProxy == nil:
		conn, err = s.dialer.DialContext(dialCtx, "tcp", hostport)
	case secure:
		conn, err = s.dialer.connectViaParent(dialCtx, hostport)
	default:
		conn, err = s.dialer.net.DialContext(dialCtx, "tcp", parentAddr(s.opts.UpstreamProxy))
	}
	if err != nil {
		return nil, nil, err
	}
	if secure && primedTLS == nil {
		conf := s.opts.UpstreamTLS.Clone()
		conf.NextProtos = []string{"http/1.1"}
		// For an IP, Go verifies the IP SANs and sends no SNI.
		conf.ServerName = target.Host
		tc := tls.Client(conn, conf)
		if err := tc.HandshakeContext(dialCtx); err != nil {
			conn.Close()
			return nil, nil, fmt.Errorf("TLS handshake with %s: %w", hostport, err)
		}
		conn = tc
	}
	_ = conn.SetDeadline(time.Now().Add(s.opts.ResponseHeaderTimeout + s.opts.DialTimeout))
	if viaParent {
		req.URL = &url.URL{Scheme: "http", Host: hostport, Path: req.URL.Path, RawPath: req.URL.RawPath, RawQuery: req.URL.RawQuery}
		setParentAuth(req.Header, s.opts.UpstreamProxy)
		err = req.WriteProxy(conn)
	} else {
		// The client's names and order, as for forwarded requests.
		bw := bufio.NewWriter(conn)
		writeRequestHead(bw, req, wireNamesFrom(req.Context()), s.headOrder())
		err = bw.Flush()
	}
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("sending the WebSocket handshake to %s: %w", hostport, err)
	}
	// The answer is read under the same deadline; serveWebSocket clears
	// it once the handshake is done.
	return conn, bufio.NewReaderSize(conn, 4<<10), nil
}

// writeSwitchingProtocols writes the 101 answer on the hijacked client
// connection.
func writeSwitchingProtocols(w *bufio.Writer, hdr http.Header) error {
	if _, err := io.WriteString(w, "HTTP/1.1 101 Switching Protocols\r\n"); err != nil {
		return err
	}
	if err := hdr.Write(w); err != nil {
		return err
	}
	if _, err := io.WriteString(w, "\r\n"); err != nil {
		return err
	}
	return w.Flush()
}

// buffered returns the bytes a reader holds beyond what was parsed: the
// first frames may already be in it.
func buffered(br *bufio.Reader) []byte {
	n := br.Buffered()
	if n == 0 {
		return nil
	}
	b, _ := br.Peek(n)
	return append([]byte(nil), b...)
}

// acceptKey is the Sec-WebSocket-Accept a server must answer key with.
func acceptKey(key string) string {
	h := sha1.New()
	h.Write([]byte(key))
	h.Write([]byte("258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// websocketURL writes u with a ws or wss scheme, for events and rules.
func websocketURL(u *url.URL) string {
	c := *u
	c.Scheme = "ws"
	if u.Scheme == "https" {
		c.Scheme = "wss"
	}
	return c.Redacted()
}

// negotiation is what the server's Sec-WebSocket-Extensions accepted.
type negotiation struct {
	raw                     string
	deflate                 bool
	serverNoContextTakeover bool
	clientNoContextTakeover bool
	// unknown is set for any extension hopscope does not understand.
	unknown bool
}

// parseExtensions reads an extension list: "name; param; param=value,
// name2". Only permessage-deflate is understood.
func parseExtensions(values []string) negotiation {
	n := negotiation{raw: strings.Join(values, ", ")}
	for _, value := range values {
		for _, ext := range strings.Split(value, ",") {
			params := strings.Split(ext, ";")
			name := strings.ToLower(strings.TrimSpace(params[0]))
			switch name {
			case "":
			case "permessage-deflate":
				n.deflate = true
				for _, p := range params[1:] {
					key, _, _ := strings.Cut(strings.TrimSpace(p), "=")
					switch strings.ToLower(strings.TrimSpace(key)) {
					case "server_no_context_takeover":
						n.serverNoContextTakeover = true
					case "client_no_context_takeover":
						n.clientNoContextTakeover = true
					}
				}
			default:
				n.unknown = true
			}
		}
	}
	return n
}

// addServerNoContextTakeover adds server_no_context_takeover to every
// permessage-deflate offer that lacks it.
func addServerNoContextTakeover(values []string) []string {
	var offers []string
	for _, value := range values {
		for _, ext := range strings.Split(value, ",") {
			ext = strings.TrimSpace(ext)
			if ext == "" {
				continue
			}
			name, _, _ := strings.Cut(ext, ";")
			if strings.EqualFold(strings.TrimSpace(name), "permessage-deflate") &&
				!strings.Contains(strings.ToLower(ext), "server_no_context_takeover") {
				ext += "; server_no_context_takeover"
			}
			offers = append(offers, ext)
		}
	}
	return []string{strings.Join(offers, ", ")}
}
