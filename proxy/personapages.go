package proxy

import (
	"context"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The answers squid and tinyproxy give instead of the destination's, as
// measured on squid 5.7 and tinyproxy 1.11.1: status, headers and page.
// Each page keeps hopscope's own reason in a comment (squid) or in the
// Proxy-Status-free page detail, so a person reading the bytes still
// learns what happened.

// personaAnswer is the product's own answer for pe, raw: status line,
// header fields and body. ok is false when hopscope plays no product, or
// the product has no page of its own for pe.
type personaAnswer struct {
	status int
	// reason is the status line's phrase, which net/http cannot write
	// when it is not the standard one (tinyproxy's "Unable to connect").
	reason string
	// proto is the status line's version.
	proto  string
	header http.Header
	body   string
	// close ends the connection after the answer.
	close bool
	// raw writes the answer on the hijacked connection even when net/http
	// could write it: tinyproxy's pages have no Date or Content-Length.
	raw bool
	// silent closes the connection without an answer.
	silent bool
}

// squidErrors maps hopscope's failures to squid's: the status and the
// X-Squid-Error value.
func squidError(r *http.Request, pe *proxyError) (int, string, bool) {
	connect := r.Method == http.MethodConnect
	switch {
	case pe.Status == http.StatusForbidden:
		return http.StatusForbidden, "ERR_ACCESS_DENIED 0", true
	case pe.Status == http.StatusProxyAuthRequired:
		return http.StatusProxyAuthRequired, "ERR_CACHE_ACCESS_DENIED 0", true
	case pe.Rule == "origin-form":
		return http.StatusBadRequest, "ERR_INVALID_URL 0", true
	case pe.Rule == "request-line":
		return http.StatusBadRequest, "ERR_PROTOCOL_UNKNOWN 0", true
	case pe.Rule == "max-forwards":
		return http.StatusNotImplemented, "ERR_UNSUP_REQ 0", true
	case pe.Rule == "max-header-bytes":
		return http.StatusRequestHeaderFieldsTooLarge, "ERR_TOO_BIG 0", true
	case pe.ProxyStatus == "connection_refused":
		return http.StatusServiceUnavailable, "ERR_CONNECT_FAIL 111", true
	case pe.ProxyStatus == "dns_error" && connect:
		return http.StatusInternalServerError, "ERR_CANNOT_FORWARD 0", true
	case pe.ProxyStatus == "dns_error":
		// As measured where squid's resolver reaches no name server (CI);
		// a resolver that answers NXDOMAIN gives 503 ERR_DNS_FAIL.
		return http.StatusBadGateway, "ERR_READ_ERROR 0", true
	case pe.ProxyStatus == "connection_terminated":
		return http.StatusBadGateway, "ERR_ZERO_SIZE_OBJECT 0", true
	case pe.ProxyStatus == "http_response_header_section_size":
		return http.StatusBadGateway, "ERR_TOO_BIG 0", true
	}
	return 0, "", false
}

// squidTitles are the page titles that are not squid's usual one.
var squidTitles = map[string]string{"ERR_CACHE_ACCESS_DENIED": "ERROR: Cache Access Denied"}

// squidRealm is squid's default Basic realm.
const squidRealm = "Squid proxy-caching web server"

func (s *Server) squidAnswer(r *http.Request, pe *proxyError) (personaAnswer, bool) {
	status, squidErr, ok := squidError(r, pe)
	if !ok {
		return personaAnswer{}, false
	}
	name, _, _ := strings.Cut(squidErr, " ")
	host := s.opts.Persona.Host
	h := http.Header{}
	h.Set("Server", s.opts.Persona.product())
	h.Set("Mime-Version", "1.0")
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	h.Set("Content-Type", "text/html;charset=utf-8")
	h.Set("X-Squid-Error", squidErr)
	h.Set("Vary", "Accept-Language")
	h.Set("Content-Language", "en")
	a := personaAnswer{status: status, reason: http.StatusText(status), proto: "HTTP/1.1", header: h}
	if status == http.StatusProxyAuthRequired {
		h.Set("Proxy-Authenticate", `Basic realm="`+squidRealm+`"`)
	}
	target := r.URL.String()
	switch {
	case r.Method == http.MethodConnect && status != http.StatusProxyAuthRequired && status != http.StatusForbidden:
		// A failed tunnel is answered bare and closed.
		target = r.URL.Host
		a.close = true
	default:
		lookup := "MISS"
		refusedRequest := status == http.StatusBadRequest || status == http.StatusNotImplemented || status == http.StatusRequestHeaderFieldsTooLarge
		if refusedRequest || status == http.StatusForbidden || status == http.StatusProxyAuthRequired {
			lookup = "NONE" // answered before any cache lookup
		}
		if r.Method == http.MethodConnect {
			target = r.URL.Host
		}
		s.squidMarks(h, lookup, r)
		h.Set("Via", "1.1 "+host+" ("+s.opts.Persona.product()+")")
		if refusedRequest {
			h.Set("Connection", "close")
			a.close = true
		}
	}
	title := squidTitles[name]
	if title == "" {
		title = "ERROR: The requested URL could not be retrieved"
	}
	a.body = fmt.Sprintf(squidPage, html.EscapeString(target), html.EscapeString(host), html.EscapeString(pe.Message), name, title, s.opts.Persona.product())
	h.Set("Content-Length", strconv.Itoa(len(a.body)))
	return a, true
}

// squidPage is squid 5.7's error page, shortened; the comment carries
// hopscope's own reason for the person reading the source.
const squidPage = `<!DOCTYPE html PUBLIC "-//W3C//DTD HTML 4.01//EN" "http://www.w3.org/TR/html4/strict.dtd">
<html><head>
<meta type="copyright" content="Copyright (C) 1996-2022 The Squid Software Foundation and contributors">
<meta http-equiv="Content-Type" content="text/html; charset=utf-8">
<title>%[5]s</title>
</head><body id=%[4]s>
<div id="titles">
<h1>ERROR</h1>
<h2>The requested URL could not be retrieved</h2>
</div>
<hr>
<div id="content">
<p>The following error was encountered while trying to retrieve the URL: <a href="%[1]s">%[1]s</a></p>
<blockquote id="error">
<p><b>%[4]s</b></p>
</blockquote>
<p>Your cache administrator is <a href="mailto:webmaster">webmaster</a>.</p>
<br>
</div>
<hr>
<div id="footer">
<p>Generated by %[2]s (%[6]s)</p>
<!-- %[4]s -->
<!-- hopscope squid profile: %[3]s -->
</div>
</body></html>
`

// tinyproxyAnswer is tinyproxy's page for pe: every failure to reach a
// destination is "500 Unable to connect".
func (s *Server) tinyproxyAnswer(r *http.Request, pe *proxyError) (personaAnswer, bool) {
	a := personaAnswer{proto: "HTTP/1.1", header: http.Header{}, close: true, raw: true}
	cause, detail := "", ""
	switch {
	case pe.ProxyStatus == "connection_terminated" && r.Method != http.MethodConnect:
		// An origin that closes without answering: tinyproxy closes too.
		a.silent = true
		return a, true
	case pe.Status == http.StatusProxyAuthRequired && r.Header.Get("Proxy-Authorization") != "" && r.Method != http.MethodConnect:
		// Wrong credentials: tinyproxy 1.11.1 answers 401 with
		// WWW-Authenticate, as if it were the origin.
		a.status, a.proto = http.StatusUnauthorized, "HTTP/1.0"
		cause, detail = "Unauthorized", "The administrator of this proxy requires authentication."
	case pe.Status == http.StatusProxyAuthRequired:
		a.status, a.proto = http.StatusProxyAuthRequired, "HTTP/1.0"
		cause, detail = "Proxy Authentication Required", "This proxy requires authentication."
	case pe.Rule == "origin-form":
		a.status, cause, detail = http.StatusBadRequest, "Bad Request", "Unknown URL type"
	case pe.Rule == "request-line":
		a.status, a.proto, cause, detail = http.StatusBadRequest, "HTTP/1.0", "Bad Request", "Request has an invalid format"
	case pe.Status == http.StatusForbidden:
		a.status, cause, detail = http.StatusForbidden, "Access denied", "The administrator of this proxy has not configured it to service requests from your host."
	case pe.Status == http.StatusBadGateway || pe.Status == http.StatusGatewayTimeout:
		a.status, cause, detail = http.StatusInternalServerError, "Unable to connect", "Tinyproxy was unable to connect to the remote web server."
	default:
		return personaAnswer{}, false
	}
	a.reason = cause
	if a.status == http.StatusProxyAuthRequired {
		a.reason = http.StatusText(a.status)
	}
	h := a.header
	h.Set("Server", s.opts.Persona.product())
	h.Set("Content-Type", "text/html")
	switch a.status {
	case http.StatusProxyAuthRequired:
		h.Set("Proxy-Authenticate", `Basic realm="Tinyproxy"`)
	case http.StatusUnauthorized:
		h["WWW-Authenticate"] = []string{`Basic realm="Tinyproxy"`} // as written, not canonical
	}
	h.Set("Connection", "close")
	a.body = fmt.Sprintf(tinyproxyPage, a.status, cause, detail, html.EscapeString(pe.Message), html.EscapeString(s.opts.Persona.release()))
	return a, true
}

// tinyproxyPage is tinyproxy 1.11.1's default.html filled in.
const tinyproxyPage = `<?xml version="1.0" encoding="UTF-8" ?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.1//EN" "http://www.w3.org/TR/xhtml11/DTD/xhtml11.dtd">

<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en">

<head>
<title>%[1]d %[2]s</title>
<meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
</head>

<body>

<h1>%[2]s</h1>

<p>%[3]s</p>

<hr />

<p><em>Generated by <a href="https://tinyproxy.github.io/">tinyproxy</a> version %[5]s.</em></p>
<!-- hopscope tinyproxy profile: %[4]s -->

</body>

</html>
`

// personaPage returns the product's answer for pe, if hopscope plays one
// that has a page for it.
func (s *Server) personaPage(r *http.Request, pe *proxyError) (personaAnswer, bool) {
	switch {
	case s.opts.Persona.Squid:
		return s.squidAnswer(r, pe)
	case s.opts.Persona.Tinyproxy:
		return s.tinyproxyAnswer(r, pe)
	}
	return personaAnswer{}, false
}

// bytes renders the answer for a raw connection. A page without a
// Content-Length (tinyproxy's) ends with the connection.
func (a personaAnswer) bytes() []byte {
	if a.silent {
		return nil
	}
	var b strings.Builder
	b.WriteString(a.proto + " " + strconv.Itoa(a.status) + " " + a.reason + "\r\n")
	_ = a.header.Write(&b)
	b.WriteString("\r\n")
	b.WriteString(a.body)
	return []byte(b.String())
}

// writeTo answers on w: through net/http when it can write the status
// line, else raw on the hijacked connection, which is then closed.
func (a personaAnswer) writeTo(w http.ResponseWriter) {
	if !a.needsRaw() {
		for k, v := range a.header {
			w.Header()[k] = v
		}
		w.WriteHeader(a.status)
		_, _ = w.Write([]byte(a.body))
		return
	}
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Not hijackable (HTTP/2): the standard phrase will do.
		for k, v := range a.header {
			w.Header()[k] = v
		}
		w.WriteHeader(a.status)
		_, _ = w.Write([]byte(a.body))
		return
	}
	_, _ = buf.Write(a.bytes())
	_ = buf.Flush()
	closeWrite(conn)
}

// closeWrite ends a connection after an answer that runs to its end:
// the write side first, so the client reads everything before the close.
func closeWrite(conn net.Conn) {
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = conn.Close()
}

// personaResponse is a as an answer for goproxy's response hook. An answer net/http
// cannot write (a phrase of its own, HTTP/1.0, no length) is written raw
// on the hijacked client connection here, and goproxy gets an empty
// answer to write into the void.
func (s *Server) personaResponse(a personaAnswer, req *http.Request) *http.Response {
	resp := &http.Response{
		Status: strconv.Itoa(a.status) + " " + a.reason, StatusCode: a.status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: a.header, Body: io.NopCloser(strings.NewReader(a.body)), ContentLength: int64(len(a.body)),
		Request: req, Close: a.close,
	}
	if !a.needsRaw() {
		return resp
	}
	if ex := exchangeFrom(req.Context()); ex != nil && ex.writer != nil {
		if conn, buf, err := http.NewResponseController(ex.writer.ResponseWriter).Hijack(); err == nil {
			_, _ = buf.Write(a.bytes())
			_ = buf.Flush()
			closeWrite(conn)
			ex.writer.status, ex.writer.n = a.status, int64(len(a.body))
			ex.writer.hijacked = true
			resp.Header, resp.Body, resp.ContentLength = http.Header{}, http.NoBody, 0
		}
	}
	return resp
}

// needsRaw reports whether net/http cannot write the answer as it is.
func (a personaAnswer) needsRaw() bool {
	return a.raw || a.silent || a.reason != http.StatusText(a.status) || a.proto != "HTTP/1.1"
}

// badLineAnswer is the persona's answer to a request line net/http cannot
// parse, or nil to leave it to net/http's own 400.
func (s *Server) badLineAnswer() func(local net.Addr) []byte {
	if !s.opts.Persona.any() {
		return nil
	}
	return func(local net.Addr) []byte {
		r := (&http.Request{Method: "GET", URL: &url.URL{Scheme: "error", Opaque: "invalid-request"}, Header: http.Header{}}).
			WithContext(context.WithValue(context.Background(), http.LocalAddrContextKey, local))
		a, ok := s.personaPage(r, &proxyError{Status: http.StatusBadRequest, ProxyStatus: "http_request_error", Rule: "request-line",
			Message: "the request line is not METHOD TARGET HTTP/1.x"})
		if !ok {
			return []byte("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
		}
		return a.bytes()
	}
}
