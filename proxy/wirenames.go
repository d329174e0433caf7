package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Header names on the wire. net/http canonicalises every header name it
// reads (Sec-WebSocket-Key becomes Sec-Websocket-Key) and writes header
// fields sorted by name; squid and tinyproxy keep a client's names and
// their order, and some servers care. headTap keeps what net/http's
// parser throws away, and writeRequestHead puts it back on the way out.

// headTap watches the bytes net/http reads from a client connection and
// keeps the header names of each request head, with their case and
// order, for the handler to claim. It follows the framing (a body of
// Content-Length bytes is skipped) and gives up on a connection whose
// framing it cannot follow without parsing the body (chunked), or that
// leaves HTTP (CONNECT, Upgrade); requests after that are written the
// way net/http writes them.
type headTap struct {
	net.Conn
	limit int
	// badLine, when set, is the persona's answer to a first request line
	// net/http would refuse with its own bare 400; nil leaves it to
	// net/http.
	badLine func(local net.Addr) []byte
	// stripSpaces removes spaces inside a first request line's target,
	// as squid's relaxed parser does, instead of refusing it.
	stripSpaces bool
	seen        bool // a head was seen: later bad lines are net/http's
	// current are the names of the request being served: net/http
	// serves a connection's requests one after another, so the handler
	// finds them here without a context value (and the request copy that
	// adding one costs).
	current []string

	mu    sync.Mutex
	buf   []byte   // the start of a head not yet complete
	skip  int64    // body bytes still to pass before the next head
	lost  bool     // framing no longer followed
	heads []tapped // complete heads not yet claimed
}

// tapped is one request head as the client sent it.
type tapped struct {
	method, target string
	names          []string
	size           int // bytes of the head, request line included
}

func newHeadTap(c net.Conn, limit int) *headTap { return &headTap{Conn: c, limit: limit} }

func (t *headTap) Read(p []byte) (int, error) {
	n, err := t.Conn.Read(p)
	if n > 0 {
		if t.badLine != nil && !t.seen {
			var answered bool
			if n, answered = t.firstLine(p, n); answered {
				return 0, io.EOF
			}
		}
		t.feed(p[:n])
	}
	return n, err
}

// firstLine looks at the first request line of a connection when this
// read, p[:n], completes it. One net/http cannot parse gets the persona's
// 400 (squid and tinyproxy send pages of their own) and the connection is
// closed, so net/http sees its end; under squid, spaces inside the target
// are removed first, as squid does. Only the first request: nothing else
// is written on the connection yet. It returns the bytes now in p.
func (t *headTap) firstLine(p []byte, n int) (int, bool) {
	t.mu.Lock()
	pending := len(t.buf)
	data := append(t.buf[:pending:pending], p[:n]...)
	t.mu.Unlock()
	line, _, complete := bytes.Cut(data, []byte("\n"))
	if !complete {
		return n, false
	}
	t.seen = true
	text := strings.TrimSuffix(string(line), "\r")
	if parsableRequestLine(text) {
		return n, false
	}
	if fixed, ok := stripTargetSpaces(text); ok && t.stripSpaces && pending == 0 {
		// The whole line is in this read: rewrite it there, shorter.
		if strings.HasSuffix(string(line), "\r") {
			fixed += "\r"
		}
		rest := append([]byte(fixed), p[len(line):n]...)
		return copy(p, rest), false
	}
	_, _ = t.Conn.Write(t.badLine(t.Conn.LocalAddr()))
	closeWrite(t.Conn)
	return 0, true
}

// stripTargetSpaces joins a target that contains spaces: "GET /a b
// HTTP/1.1" becomes "GET /ab HTTP/1.1".
func stripTargetSpaces(line string) (string, bool) {
	fields := strings.Split(line, " ")
	if len(fields) < 4 {
		return "", false
	}
	fixed := fields[0] + " " + strings.Join(fields[1:len(fields)-1], "") + " " + fields[len(fields)-1]
	return fixed, parsableRequestLine(fixed)
}

// parsableRequestLine is net/http's test of a request line: method,
// target and an HTTP version, split by single spaces.
func parsableRequestLine(line string) bool {
	method, rest, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || method == "" || target == "" {
		return false
	}
	_, _, ok := http.ParseHTTPVersion(proto)
	return ok
}

// CloseWrite passes a half-close on, for tunnels on a hijacked connection.
func (t *headTap) CloseWrite() error {
	if cw, ok := t.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return t.Conn.Close()
}

func (t *headTap) feed(p []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for len(p) > 0 && !t.lost {
		if t.skip > 0 {
			k := min(int64(len(p)), t.skip)
			t.skip -= k
			p = p[k:]
			continue
		}
		t.buf = append(t.buf, p...)
		p = nil
		end := bytes.Index(t.buf, []byte("\r\n\r\n"))
		if end < 0 {
			if len(t.buf) > t.limit+4096 {
				t.giveUp()
			}
			return
		}
		h, bodyLen, follow := parseTappedHead(t.buf[:end+2])
		h.size = end + 4
		t.heads = append(t.heads, h)
		if !follow {
			t.giveUp()
			return
		}
		rest := t.buf[end+4:]
		t.skip = bodyLen
		if len(rest) > 0 {
			p = append([]byte(nil), rest...)
		}
		t.buf = t.buf[:0]
	}
}

func (t *headTap) giveUp() {
	t.lost = true
	t.buf = nil
}

// claim returns the names of the head net/http parsed as r, if the tap
// saw it; the request line must agree, so a tap that lost its way says
// nothing rather than something wrong.
func (t *headTap) claim(r *http.Request) tapped {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.current = nil
	if len(t.heads) == 0 {
		return tapped{}
	}
	h := t.heads[0]
	t.heads = t.heads[1:]
	if h.method != r.Method || h.target != r.RequestURI {
		t.giveUp()
		t.heads = nil
		return tapped{}
	}
	t.current = h.names
	return h
}

// parseTappedHead reads the names of a head (without its final CRLF) and
// the length of the body that follows; follow is false when the framing
// cannot be followed from the head alone.
func parseTappedHead(head []byte) (tapped, int64, bool) {
	var h tapped
	// One string for the whole head: the names are pieces of it.
	text := strings.TrimLeft(string(head), "\r\n")
	line, text, _ := strings.Cut(text, "\r\n")
	var rest string
	h.method, rest, _ = strings.Cut(line, " ")
	h.target, _, _ = strings.Cut(rest, " ")
	var bodyLen int64
	follow := h.method != http.MethodConnect
	h.names = make([]string, 0, 16)
	for text != "" {
		line, text, _ = strings.Cut(text, "\r\n")
		if line == "" || line[0] == ' ' || line[0] == '\t' {
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		h.names = append(h.names, name)
		switch {
		case strings.EqualFold(name, "Content-Length"):
			n, err := strconv.ParseInt(strings.TrimSpace(value), 10, 64)
			if err != nil || n < 0 {
				follow = false
			}
			bodyLen = n
		case strings.EqualFold(name, "Transfer-Encoding"), strings.EqualFold(name, "Upgrade"):
			follow = false
		}
	}
	return h, bodyLen, follow
}

// headTapListener wraps every accepted connection in a headTap.
type headTapListener struct {
	net.Listener
	limit       int
	badLine     func(local net.Addr) []byte
	stripSpaces bool
}

func (l headTapListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	t := newHeadTap(c, l.limit)
	t.badLine, t.stripSpaces = l.badLine, l.stripSpaces
	return t, nil
}

// wireNamesFrom returns the client's header names of the request ctx
// belongs to, nil when they are not known.
func wireNamesFrom(ctx context.Context) []string {
	t, ok := ctx.Value(headTapKey{}).(*headTap)
	if !ok {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.current
}

// headOrder is where a product puts the header fields of a request it
// forwards: first (after Host, unless Host is in last), the client's in
// their order and case, then last.
type headOrder struct {
	first []string
	last  []string
	// lastWithoutHost replaces last when the client sent no Host (an
	// HTTP/1.0 client): squid then adds Host after its own fields.
	lastWithoutHost []string
	// clientVersion writes the client's HTTP version in the request
	// line, as tinyproxy does; otherwise HTTP/1.1.
	clientVersion bool
}

// The products' orders, as measured: squid writes the client's fields
// and then Host, Via, X-Forwarded-For, Cache-Control and Connection;
// tinyproxy writes Host, Connection and Via before the client's fields.
var (
	defaultOrder = headOrder{}
	squidOrder   = headOrder{
		last:            []string{"Host", "Via", "X-Forwarded-For", "Cache-Control", "Connection"},
		lastWithoutHost: []string{"Via", "X-Forwarded-For", "Host", "Cache-Control", "Connection"},
	}
	tinyproxyOrder = headOrder{first: []string{"Connection", "Via"}, clientVersion: true}
)

func (s *Server) headOrder() headOrder {
	switch {
	case s.opts.Persona.Squid:
		return squidOrder
	case s.opts.Persona.Tinyproxy:
		return tinyproxyOrder
	}
	return defaultOrder
}

// writeRequestHead writes req's request line and header fields (not the
// body) in the order o gives, with the client's names as it wrote them.
// What req.Write would add on its own is added the same way: Host,
// Connection: close for req.Close, Content-Length: 0 for a bodiless
// request that needs one.
func writeRequestHead(w *bufio.Writer, req *http.Request, names []string, o headOrder) {
	h := req.Header
	if o.lastWithoutHost != nil && names != nil && !slices.ContainsFunc(names, func(n string) bool { return strings.EqualFold(n, "Host") }) {
		o.last = o.lastWithoutHost
	}
	var doneBuf [24]string
	done := doneBuf[:0] // canonical keys written; a few, so a slice beats a map
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	uri := req.URL.RequestURI()
	version := "HTTP/1.1"
	if major, minor := clientProto(req); o.clientVersion && major == 1 && minor == 0 {
		version = "HTTP/1.0"
	}
	for _, part := range [...]string{req.Method, " ", uri, " ", version, "\r\n"} {
		w.WriteString(part)
	}
	write := func(name string) {
		key := textproto.CanonicalMIMEHeaderKey(name)
		if slices.Contains(done, key) {
			return
		}
		done = append(done, key)
		switch key {
		case "Host":
			w.WriteString("Host: ")
			w.WriteString(host)
			w.WriteString("\r\n")
			return
		case "Connection":
			if _, ok := h[key]; !ok && req.Close {
				w.WriteString("Connection: close\r\n")
				return
			}
		case "Content-Length":
			// The body's length as it will be sent, not the header's.
			switch {
			case req.ContentLength > 0:
				w.WriteString(name + ": " + strconv.FormatInt(req.ContentLength, 10) + "\r\n")
			case req.Method == http.MethodPost || req.Method == http.MethodPut || req.Method == http.MethodPatch:
				w.WriteString(name + ": 0\r\n")
			}
			return
		case "User-Agent":
			if h.Get(key) == "" {
				return // absent at the client; the empty value keeps Go's out
			}
		case "Transfer-Encoding", "Trailer":
			return // the body's framing, not the bodiless head's
		}
		for _, v := range h[key] {
			if strings.ContainsAny(v, "\r\n") {
				// net/http refuses these on the way in; never let one split a head.
				v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
			}
			w.WriteString(name)
			w.WriteString(": ")
			w.WriteString(v)
			w.WriteString("\r\n")
		}
	}
	inLast := func(key string) bool {
		for _, l := range o.last {
			if l == key {
				return true
			}
		}
		return false
	}
	if !inLast("Host") {
		write("Host")
	}
	for _, name := range o.first {
		write(name)
	}
	for _, name := range names {
		if !inLast(textproto.CanonicalMIMEHeaderKey(name)) {
			write(name)
		}
	}
	var restBuf [16]string
	rest := restBuf[:0]
	for key := range h {
		if !slices.Contains(done, key) && !inLast(key) {
			rest = append(rest, key)
		}
	}
	sort.Strings(rest)
	for _, key := range rest {
		write(key)
	}
	for _, name := range o.last {
		write(name)
	}
	write("Connection")
	write("Content-Length")
	w.WriteString("\r\n")
}

// wireNameMap maps the canonical form of each header name in a raw
// response head to the name as the destination wrote it, for the names
// whose case differs.
func wireNameMap(head []byte) map[string]string {
	// Interim answers (100 Continue) come first: the names are the final
	// answer's.
	for bytes.HasPrefix(head, []byte("HTTP/1.1 1")) || bytes.HasPrefix(head, []byte("HTTP/1.0 1")) {
		end := bytes.Index(head, []byte("\r\n\r\n"))
		if end < 0 || bytes.HasPrefix(head, []byte("HTTP/1.1 101")) {
			break
		}
		head = head[end+4:]
	}
	var m map[string]string
	lines := bytes.Split(head, []byte("\n"))
	for _, line := range lines[1:] {
		line = bytes.TrimRight(line, "\r")
		if len(line) == 0 {
			break
		}
		name, _, ok := bytes.Cut(line, []byte(":"))
		if !ok || len(name) == 0 || name[0] == ' ' || name[0] == '\t' {
			continue
		}
		raw := string(name)
		if key := textproto.CanonicalMIMEHeaderKey(raw); key != raw {
			if m == nil {
				m = map[string]string{}
			}
			m[key] = raw
		}
	}
	return m
}

// restoreWireNames renames the fields of an answer about to be written to
// the case the destination used. net/http's server reads the fields that
// frame the answer (Content-Length, Transfer-Encoding, Connection, Date,
// Content-Type) by their canonical names, so those stay canonical.
func restoreWireNames(h http.Header, names map[string]string) {
	for key, raw := range names {
		switch key {
		case "Content-Length", "Transfer-Encoding", "Connection", "Date", "Content-Type", "Trailer":
			continue
		}
		if v, ok := h[key]; ok {
			delete(h, key)
			h[raw] = v
		}
	}
}

type headTapKey struct{}

// withHeadTap keeps the connection's tap, if it has one, for the handler.
func withHeadTap(ctx context.Context, c net.Conn) context.Context {
	if t, ok := c.(*headTap); ok {
		return context.WithValue(ctx, headTapKey{}, t)
	}
	return ctx
}

// clientHead attaches the client's header names to r, for the next hop,
// and returns the size of its head (0 when the tap did not see it).
func (s *Server) clientHead(r *http.Request) (*http.Request, int) {
	t, ok := r.Context().Value(headTapKey{}).(*headTap)
	if !ok {
		return r, 0
	}
	return r, t.claim(r).size
}

// headRoom is how much larger than --max-header-bytes a head net/http
// reads before it answers 431 itself: heads in between are refused by
// hopscope, with a page that says why (and the persona's page), instead of
// net/http's bare text.
func headRoom(maxHeaderBytes int) int { return 2 * maxHeaderBytes }

// refuseLargeHead answers 431 for a head over --max-header-bytes; it
// reports whether it did.
func (s *Server) refuseLargeHead(w http.ResponseWriter, r *http.Request, info connInfo, size int) bool {
	if size <= s.opts.MaxHeaderBytes {
		return false
	}
	w.Header().Set("Connection", "close")
	s.refuse(w, r, info, &proxyError{Status: http.StatusRequestHeaderFieldsTooLarge, ProxyStatus: "http_request_error", Rule: "max-header-bytes",
		Message: fmt.Sprintf("hopscope refuses a request head of %d bytes: the limit is %d (--max-header-bytes)", size, s.opts.MaxHeaderBytes)})
	return true
}
