// Package compare sends the same raw requests to two HTTP proxies and shows
// where what a client and an origin see differs: the machinery behind
// hopscope's differential test against real squid and tinyproxy, and behind
// `hopscope compare`.
//
// A probe is raw bytes written to a proxy over TCP, with an origin on
// loopback that the probe starts and that records what it received. The
// result is what a client can tell about the proxy (status line, header
// names with their case and order, the body's shape, whether the
// connection stays open) and what the origin saw, with the parts that
// differ from host to host (dates, host names, ports) normalised.
package compare

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"time"
)

// probeTimeout bounds each step of a probe: dialing, an answer, the
// origin's wait for a request.
const probeTimeout = 5 * time.Second

// Probe is one raw exchange with a proxy.
type Probe struct {
	// Name identifies the probe in tables and diffs.
	Name string
	// Send is written to the proxy as it is, after these replacements:
	// {origin} the origin's host:port, {port} its port, {unresolvable} a
	// host name that cannot be resolved.
	Send string
	// Tunnel, for a CONNECT probe, is written into the tunnel after a 2xx
	// answer, with the same replacements; empty: the tunnel is not used.
	Tunnel string
	// Origin is what the origin does.
	Origin Behaviour
	// OriginAddr is where the origin listens: "" for 127.0.0.1 on a free
	// port; "443" for port 443 on a loopback address of its own, which
	// needs the right to bind it (root).
	OriginAddr string
	// NoReuse skips the check of whether the connection stays open.
	NoReuse bool
}

// Result is what one probe saw through one proxy.
type Result struct {
	// Interim are 1xx status lines before the answer.
	Interim []string
	// Status is the answer's status line; empty when none came.
	Status string
	// Fields are the answer's header fields, in order, names as sent.
	Fields []Field
	// Body is the body's shape (see bodyShape).
	Body string
	// Conn is what became of the client connection after the answer:
	// "open", "closed", "upgraded".
	Conn string
	// Tunnel is the answer read inside a CONNECT tunnel.
	Tunnel *Result
	// Origin is what the origin received; nil when nothing reached it.
	Origin *OriginView
	// Skipped says why the probe could not run here.
	Skipped string
	// Err is a failure of the probe machinery itself, not of the proxy.
	Err string
}

// Run sends p to the proxy at proxyAddr and returns what happened,
// normalised by n.
func Run(ctx context.Context, proxyAddr string, p Probe, n Normaliser) Result {
	o, err := startProbeOrigin(p)
	if err != nil {
		return Result{Skipped: err.Error()}
	}
	defer o.close()
	n.origin = o.addr
	n.proxy = proxyAddr
	res := exchange(ctx, proxyAddr, p, o.addr, n.unresolvable())
	o.close() // its goroutines are done: what it saw is complete
	if v, ok := o.first(); ok {
		res.Origin = &v
	}
	return n.result(res)
}

func startProbeOrigin(p Probe) (*origin, error) {
	addr := "127.0.0.1:0"
	if p.OriginAddr == "443" {
		// A loopback address of its own, so probes and other programs
		// on this machine do not compete for one port 443.
		var lastErr error
		for i := 0; i < 8; i++ {
			a := fmt.Sprintf("127.%d.%d.%d:443", 1+rand.IntN(250), rand.IntN(250), 2+rand.IntN(250))
			o, err := startOrigin(a, p.Origin)
			if err == nil {
				return o, nil
			}
			lastErr = err
		}
		return nil, fmt.Errorf("needs port 443 on loopback: %w", lastErr)
	}
	return startOrigin(addr, p.Origin)
}

func expand(s, originAddr, unresolvable string) string {
	_, port, _ := net.SplitHostPort(originAddr)
	return strings.NewReplacer("{origin}", originAddr, "{port}", port, "{unresolvable}", unresolvable).Replace(s)
}

func exchange(ctx context.Context, proxyAddr string, p Probe, originAddr, unresolvable string) Result {
	d := net.Dialer{Timeout: probeTimeout}
	c, err := d.DialContext(ctx, "tcp", proxyAddr)
	if err != nil {
		return Result{Err: fmt.Sprintf("dialing the proxy: %v", err)}
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	send := expand(p.Send, originAddr, unresolvable)
	method := firstWord(send)
	if _, err := io.WriteString(c, send); err != nil {
		return Result{Err: fmt.Sprintf("sending the probe: %v", err)}
	}
	br := bufio.NewReader(c)
	res, open := readAnswer(c, br, method)
	if open && method == "CONNECT" && statusCode(res.Status)/100 == 2 && p.Tunnel != "" {
		inner := expand(p.Tunnel, originAddr, unresolvable)
		if _, err := io.WriteString(c, inner); err != nil {
			res.Err = fmt.Sprintf("writing into the tunnel: %v", err)
			return res
		}
		t, innerOpen := readAnswer(c, br, firstWord(inner))
		res.Tunnel = &t
		if innerOpen && !p.NoReuse {
			t.Conn = reuse(c, br, "GET / HTTP/1.1\r\nHost: "+originAddr+"\r\n\r\n")
			res.Tunnel = &t
		}
		return res
	}
	if open && !p.NoReuse && res.Conn == "" {
		res.Conn = reuse(c, br, "GET http://"+originAddr+"/again HTTP/1.1\r\nHost: "+originAddr+"\r\n\r\n")
	}
	if res.Conn == "" {
		res.Conn = "open"
	}
	return res
}

// readAnswer reads interim answers and the final answer to a request of
// method, and reports whether the connection can still carry a request.
func readAnswer(c net.Conn, br *bufio.Reader, method string) (Result, bool) {
	var res Result
	_ = c.SetReadDeadline(time.Now().Add(probeTimeout))
	defer c.SetReadDeadline(time.Time{})
	for {
		m, err := readHead(br)
		if err != nil {
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
				res.Conn = "no answer within " + probeTimeout.String()
			case errors.Is(err, io.EOF) || isReset(err):
				res.Conn = "closed"
			default:
				res.Err = fmt.Sprintf("reading the answer: %v", err)
				res.Conn = "closed"
			}
			return res, false
		}
		code := statusCode(m.start)
		if code >= 100 && code < 200 && code != 101 {
			res.Interim = append(res.Interim, m.start)
			continue
		}
		res.Status, res.Fields = m.start, m.fields
		switch {
		case code == 101:
			res.Conn = "upgraded"
			return res, false
		case method == "CONNECT" && code/100 == 2:
			return res, true
		case method == "HEAD" || code == 204 || code == 304:
			res.Body = "empty"
			return res, !closes(m)
		}
		b, err := readBody(br, m, true)
		res.Body = bodyShape(b)
		if err != nil && !isReset(err) {
			res.Body += " (cut: " + err.Error() + ")"
			res.Conn = "closed"
			return res, false
		}
		if b.framing == "until close" || err != nil {
			res.Conn = "closed"
			return res, false
		}
		return res, true
	}
}

// closes reports whether an answer announces the end of its connection.
func closes(m message) bool {
	return m.has("Connection", "close") || m.has("Proxy-Connection", "close")
}

// reuse sends another request on the connection and says whether an
// answer comes: a proxy that closed after the first answer gives none.
// Asking is exact where waiting for the close would be a guess.
func reuse(c net.Conn, br *bufio.Reader, request string) string {
	if _, err := io.WriteString(c, request); err != nil {
		return "closed"
	}
	_ = c.SetReadDeadline(time.Now().Add(probeTimeout))
	defer c.SetReadDeadline(time.Time{})
	if _, err := br.Peek(1); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return "open, no second answer"
		}
		return "closed"
	}
	return "open"
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe") || errors.Is(err, io.ErrUnexpectedEOF))
}

// bodyShape describes a body so that two proxies' pages compare by kind,
// not by the bytes that name hosts and times: small bodies as they are,
// HTML pages by title and error id, anything else by length and first
// line.
func bodyShape(b body) string {
	framing := b.framing
	if strings.HasPrefix(framing, "length ") {
		framing = "length"
	}
	data := string(b.data)
	switch {
	case len(data) == 0:
		return framing + ", empty"
	case strings.Contains(strings.ToLower(data), "<html"):
		return framing + ", html " + htmlShape(data)
	case len(data) <= 120:
		return fmt.Sprintf("%s, %q", framing, data)
	}
	line, _, _ := strings.Cut(data, "\n")
	if len(line) > 60 {
		line = line[:60] + "..."
	}
	return fmt.Sprintf("%s, %d bytes, %q...", framing, len(data), line)
}

// htmlShape names an error page by its title and by the error id squid
// writes in the body tag and tinyproxy in the first heading.
func htmlShape(page string) string {
	shape := "title=" + quotedBetween(page, "<title>", "</title>")
	if id := quotedBetween(page, `<body id=`, `>`); id != `""` {
		// squid writes the id unquoted; compare it either way.
		shape += " id=" + strings.ReplaceAll(id, `\"`, "")
	}
	if h1 := quotedBetween(page, "<h1>", "</h1>"); h1 != `""` {
		shape += " h1=" + h1
	}
	return shape
}

func quotedBetween(s, from, to string) string {
	i := strings.Index(s, from)
	if i < 0 {
		return `""`
	}
	rest := s[i+len(from):]
	j := strings.Index(rest, to)
	if j < 0 {
		return `""`
	}
	return fmt.Sprintf("%q", strings.TrimSpace(rest[:j]))
}
