package proxy

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// answerMaxForwards applies RFC 9110 section 7.6.2: an OPTIONS or TRACE
// whose Max-Forwards is 0 is answered by the proxy as the final
// recipient, and a larger value is decremented on the way. It reports
// whether it answered.
func (s *Server) answerMaxForwards(w http.ResponseWriter, r *http.Request, info connInfo) bool {
	if r.Method != http.MethodOptions && r.Method != http.MethodTrace {
		if s.opts.Persona.Squid {
			r.Header.Del("Max-Forwards") // squid 5.7 drops it from other methods
		}
		return false
	}
	values := r.Header.Values("Max-Forwards")
	if len(values) != 1 {
		return false
	}
	n, err := strconv.Atoi(strings.TrimSpace(values[0]))
	if err != nil || n < 0 {
		return false // not a count: passed on as it came
	}
	if n > 0 {
		r.Header.Set("Max-Forwards", strconv.Itoa(n-1))
		return false
	}
	if r.Method == http.MethodOptions && s.opts.Persona.Squid {
		s.refuse(w, r, info, &proxyError{Status: http.StatusNotImplemented, ProxyStatus: "http_request_error", Rule: "max-forwards",
			Message: "squid 5.7 does not answer OPTIONS with Max-Forwards: 0 itself"})
		return true
	}
	x := s.startExchange(r, info, r.URL.Redacted())
	h := w.Header()
	var body []byte
	if r.Method == http.MethodTrace {
		// The request as it arrived, the way this proxy writes heads.
		var b bytes.Buffer
		bw := bufio.NewWriter(&b)
		echo := r.Clone(context.Background())
		echo.Header.Del("Proxy-Authorization") // credentials for this hop only
		writeRequestHead(bw, echo, wireNamesFrom(r.Context()), s.headOrder())
		_ = bw.Flush()
		body = b.Bytes()
		h.Set("Content-Type", "message/http")
	} else {
		h.Set("Allow", "OPTIONS, GET, HEAD, POST, PUT, PATCH, DELETE, TRACE, CONNECT")
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	switch {
	case s.opts.Persona.Squid:
		h.Set("Server", s.opts.Persona.product())
		h.Set("Mime-Version", "1.0")
		h.Set("Expires", time.Now().UTC().Format(http.TimeFormat))
		s.squidMarks(h, "NONE", r)
		h.Set("Via", "1.1 "+s.opts.Persona.Host+" ("+s.opts.Persona.product()+")")
	default:
		s.via.add(h, 1, 1)
	}
	w.WriteHeader(http.StatusOK)
	x.responseHead()
	_, _ = w.Write(body)
	x.finish(exchangeEnd{status: http.StatusOK, header: h, respBytes: int64(len(body)), answeredBy: answeredByProxy, complete: true})
	return true
}

// clientProtoKey keeps an HTTP/1.0 client's version when the squid
// persona answers it with HTTP/1.1 status lines, as squid does; Via
// still names the version the client spoke.
type clientProtoKey struct{}

// productStatusLine makes net/http write HTTP/1.1 status lines to an
// HTTP/1.0 client, as squid and tinyproxy do. It must change the server's
// own request (net/http writes the status line from it), so it runs
// first.
func (s *Server) productStatusLine(r *http.Request) *http.Request {
	if !s.opts.Persona.any() || r.ProtoMajor != 1 || r.ProtoMinor != 0 {
		return r
	}
	r.ProtoMinor, r.Proto = 1, "HTTP/1.1"
	return r.WithContext(context.WithValue(r.Context(), clientProtoKey{}, [2]int{1, 0}))
}

// clientProto is the version the client spoke.
func clientProto(r *http.Request) (major, minor int) {
	if v, ok := r.Context().Value(clientProtoKey{}).([2]int); ok {
		return v[0], v[1]
	}
	return r.ProtoMajor, r.ProtoMinor
}
