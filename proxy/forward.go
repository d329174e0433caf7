package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/elazarl/goproxy"

	"github.com/hopscope/hopscope/flow"
	"github.com/hopscope/hopscope/policy"
)

// forward sends an absolute-form request through goproxy's forward path and
// publishes the exchange when the answer is complete.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, info connInfo) {
	x := s.startExchange(r, info, r.URL.Redacted())
	body := &countingBody{ReadCloser: r.Body, flow: x}
	if r.Body != nil && r.Body != http.NoBody {
		if s.opts.IdleTimeout > 0 {
			// Only a body is read under the idle limit: a request without
			// one needs no controller (an allocation per request).
			body.idle, body.rc = s.opts.IdleTimeout, http.NewResponseController(w)
		}
		r.Body = body
	}
	cw := &clientWriter{ResponseWriter: w, pool: s.buffers, flow: x, body: body}
	cw.closeAfter = faultyFraming(r)
	if ex := exchangeFrom(r.Context()); ex != nil {
		ex.writer = cw
	}
	// One record per exchange, also when it is aborted (see watchedBody):
	// the panic then goes on to net/http, which closes the connection.
	defer func() {
		p := recover()
		by := answeredByDestination
		if cw.byProxy {
			by = answeredByProxy
		}
		x.finish(exchangeEnd{status: cw.status, header: cw.Header(), reqBytes: body.n.Load(), respBytes: cw.n,
			answeredBy: by, err: cw.upstreamErr, complete: p == nil && cw.upstreamErr == nil})
		if p != nil {
			panic(p)
		}
	}()
	// tinyproxy ends the client connection after an answer whose length
	// it knew, without a Connection header saying so, which net/http
	// would write: such answers are written raw (see clientWriter).
	cw.rawClose = s.opts.Persona.Tinyproxy && r.Method != http.MethodHead && info.tunnel == 0
	defer cw.endRaw()
	s.goproxy.ServeHTTP(cw, r)
}

// prepareForward is goproxy's request hook: it makes the client's request
// fit for the next hop.
func (s *Server) prepareForward(r *http.Request, ctx *goproxy.ProxyCtx) (*http.Request, *http.Response) {
	if s.upstreamRT != nil {
		ctx.RoundTripper = s.upstreamRT
	}
	r.RequestURI = "" // a server request turned client request must not carry it
	proxyAuth := r.Header["Proxy-Authorization"]
	cleanRequestHeaders(r.Header)
	if s.opts.Persona.Tinyproxy && proxyAuth != nil && s.opts.Credentials.Empty() {
		// tinyproxy passes on credentials it did not ask for.
		r.Header["Proxy-Authorization"] = proxyAuth
	}
	if _, ok := r.Header["User-Agent"]; !ok {
		// An empty value stops net/http from adding its own User-Agent to
		// a request that had none.
		r.Header.Set("User-Agent", "")
	}
	// The client's Connection: close is about its connection to us; the
	// upstream connection stays reusable.
	r.Close = false
	if connInfoFrom(r.Context()).tunnel == 0 {
		s.upstreamConnection(r)
	}
	major, minor := clientProto(r)
	s.markRequest(r.Header, major, minor, clientIP(r))
	if s.opts.Interceptor != nil {
		if answer := s.interceptRequest(r); answer != nil {
			return r, answer
		}
	}
	return r, nil
}

// finishForward is goproxy's response hook: it turns a failed round trip
// into a clear error answer and cleans the destination's response headers.
func (s *Server) finishForward(resp *http.Response, ctx *goproxy.ProxyCtx) *http.Response {
	ex := exchangeFrom(ctx.Req.Context())
	var w *clientWriter // nil: not an exchange forward serves
	if ex != nil {
		w = ex.writer
	}
	if resp == nil {
		return s.failedForward(ctx, ex, w)
	}
	removeHopByHopHeaders(resp.Header)
	s.markResponse(resp.Header, resp.ProtoMajor, resp.ProtoMinor, ctx.Req)
	if s.opts.Interceptor != nil && (ex == nil || !ex.answered) {
		s.interceptResponse(ctx.Req, resp)
	}
	if w != nil {
		// goproxy deletes Content-Length when the body is replaced; the
		// writer puts the destination's own value back.
		w.contentLength = resp.Header.Get("Content-Length")
		w.wireNames = ex.wireNames
		resp.Body = &watchedBody{ReadCloser: resp.Body, writer: w, req: ctx.Req}
	}
	return resp
}

// failedForward answers for a round trip that brought no answer: the
// destination's failure, or the client's own when its body broke.
func (s *Server) failedForward(ctx *goproxy.ProxyCtx, ex *exchange, w *clientWriter) *http.Response {
	var req policy.Request
	if ex != nil {
		req = ex.target
	}
	target := req.Target()
	pe := classifyUpstreamError(ctx.Error, target)
	var id flow.ID
	if w != nil {
		if err := w.body.failure(); err != nil {
			// The client's body broke, not the destination: the
			// transport dropped its half-written request with the
			// connection, and the client's connection cannot go on.
			pe = s.bodyFailure(err, target)
			// On HTTP/2 the stream ends alone; Connection: close would
			// shut the client's whole connection down.
			w.closeAfter = ctx.Req.ProtoMajor == 1
		}
		w.upstreamErr, w.byProxy = pe, true
		id = w.flow.id()
	}
	if pe.Status == http.StatusForbidden {
		s.deny(connInfoFrom(ctx.Req.Context()), id, ctx.Req.Method, ctx.Req.URL.Redacted(), pe)
	}
	if a, ok := s.personaPage(ctx.Req, pe); ok {
		if w != nil {
			w.contentLength = a.header.Get("Content-Length")
		}
		return s.personaResponse(a, ctx.Req)
	}
	return pe.response(ctx.Req, s.opts.Pseudonym)
}

// bodyFailure is the answer to a client whose request body could not be
// read to its end: a 400 for a malformed body, a 408 for one that stalled
// past --idle-timeout.
func (s *Server) bodyFailure(err error, target string) *proxyError {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return &proxyError{Status: http.StatusRequestTimeout, ProxyStatus: "http_request_error", Rule: "idle-timeout",
			Message: fmt.Sprintf("hopscope: the client sent no request body bytes for %s (--idle-timeout); the request was not completed to %s", s.opts.IdleTimeout, target), Err: err}
	}
	return &proxyError{Status: http.StatusBadRequest, ProxyStatus: "http_request_error", Rule: "request-body",
		Message: fmt.Sprintf("hopscope: the request body is malformed (%v); the request was not completed to %s", err, target), Err: err}
}

// watchedBody notices a destination that fails in the middle of its body.
// Passing on what arrived and then ending the answer normally would hand
// the client a truncated body that looks complete (a chunked answer ends
// cleanly; goproxy would drop the error), so the exchange is aborted, as
// httputil.ReverseProxy does: net/http closes the client connection and
// the client sees the answer cut short.
type watchedBody struct {
	io.ReadCloser
	writer *clientWriter
	req    *http.Request
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		if b.req.Context().Err() != nil {
			// The client left; the upstream read was stopped for it.
			b.writer.upstreamErr = fmt.Errorf("the client went away after %d bytes of the answer", b.writer.n)
		} else {
			b.writer.upstreamErr = fmt.Errorf("the answer was cut short after %d bytes: %w", b.writer.n+int64(n), err)
		}
		if n > 0 {
			_, _ = b.writer.Write(p[:n])
		}
		// What arrived goes out first, so the client sees the status and
		// the bytes before the connection ends.
		if b.writer.status == 0 {
			b.writer.WriteHeader(http.StatusOK)
		}
		b.writer.Flush()
		panic(http.ErrAbortHandler)
	}
	return n, err
}

// clientWriter is the ResponseWriter goproxy writes the answer to. It counts
// bytes, remembers the status, and flushes every write of an answer whose
// length is unknown (chunked, SSE, NDJSON, long polling) so that each chunk
// reaches the client as it arrives; goproxy does not, because net/http has
// already removed the Transfer-Encoding header it looks for.
type clientWriter struct {
	http.ResponseWriter
	pool        *bufferPool
	flow        *exchangeFlow // nil: not observed
	status      int
	n           int64
	stream      bool
	upstreamErr error
	// byProxy is set when hopscope answered for the destination.
	byProxy bool
	body    *countingBody
	// closeAfter ends the client connection after this answer.
	closeAfter bool
	// contentLength is the destination's Content-Length, restored after
	// goproxy deleted it; empty when there was none.
	contentLength string
	// wireNames are the destination's header names, restored (see
	// restoreWireNames).
	wireNames map[string]string
	// hijacked is set when a persona's answer was written raw on the
	// connection; what goproxy writes after goes nowhere.
	hijacked bool
	// rawClose writes an answer of known length raw on the hijacked
	// connection and closes it after; raw is that connection.
	rawClose bool
	raw      net.Conn
	rawW     *bufio.Writer
}

// startRaw writes the answer's head on the hijacked connection; false if
// the connection cannot be hijacked.
func (w *clientWriter) startRaw(code int) bool {
	conn, buf, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return false
	}
	w.raw, w.rawW = conn, buf.Writer
	h := w.Header()
	if _, ok := h["Date"]; !ok {
		h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	}
	_, _ = w.rawW.WriteString("HTTP/1.1 " + strconv.Itoa(code) + " " + http.StatusText(code) + "\r\n")
	_ = h.Write(w.rawW)
	_, _ = w.rawW.WriteString("\r\n")
	return true
}

// endRaw ends an answer written raw: what is buffered goes out, then the
// connection is closed.
func (w *clientWriter) endRaw() {
	if w.raw != nil {
		_ = w.rawW.Flush()
		closeWrite(w.raw)
		w.raw = nil
	}
}

// ReadFrom copies an answer body with a pooled buffer: without it,
// goproxy's io.Copy allocates (and zeroes) 32 KiB for every response.
func (w *clientWriter) ReadFrom(r io.Reader) (int64, error) {
	buf := w.pool.get()
	defer w.pool.put(buf)
	return io.CopyBuffer(struct{ io.Writer }{w}, r, *buf)
}

func (w *clientWriter) WriteHeader(code int) {
	if w.hijacked {
		return
	}
	if w.status == 0 {
		w.status = code
		w.flow.responseHead()
		if w.contentLength != "" && w.Header().Get("Content-Length") == "" {
			w.Header().Set("Content-Length", w.contentLength)
		}
		if w.wireNames != nil {
			restoreWireNames(w.Header(), w.wireNames)
		}
		if _, ok := w.Header()["Content-Type"]; !ok {
			// net/http would sniff one and add it: not the origin's.
			w.Header()["Content-Type"] = nil
		}
		w.stream = w.Header().Get("Content-Length") == ""
		if w.closeAfter {
			w.Header().Set("Connection", "close")
		}
		if w.rawClose && !w.stream && code >= 200 && w.startRaw(code) {
			return
		}
	}
	if w.raw != nil {
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *clientWriter) Write(p []byte) (int, error) {
	if w.hijacked {
		return len(p), nil
	}
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.raw != nil {
		n, err := w.rawW.Write(p)
		w.n += int64(n)
		w.flow.responseBody(p[:n])
		return n, err
	}
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	w.flow.responseBody(p[:n])
	if w.stream && err == nil {
		err = http.NewResponseController(w.ResponseWriter).Flush()
	}
	return n, err
}

// Flush lets goproxy's own flushing writer reach the client.
func (w *clientWriter) Flush() {
	if w.raw != nil {
		_ = w.rawW.Flush()
		return
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *clientWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// countingBody counts the request body bytes read from the client. The
// transport's write loop may still be reading when the answer is complete
// (an origin may answer before reading the whole body), so the count is
// atomic.
// It also keeps the first error reading the body, which is the client's
// doing (a malformed chunked body, a connection that ended early).
//
// A client that stops sending in the middle of its body (slowloris) is cut
// off after idle without a byte, rather than holding an upstream request
// open for as long as the destination waits.
type countingBody struct {
	io.ReadCloser
	n    atomic.Int64
	flow *exchangeFlow // nil: not observed
	err  atomic.Pointer[error]
	idle time.Duration
	rc   *http.ResponseController
}

func (b *countingBody) Read(p []byte) (int, error) {
	if b.idle > 0 {
		_ = b.rc.SetReadDeadline(time.Now().Add(b.idle))
	}
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && b.idle > 0 {
		// net/http's read for a client that goes away comes next: it must
		// not time out.
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	b.n.Add(int64(n))
	b.flow.requestBody(p[:n], err == io.EOF)
	if err != nil && err != io.EOF {
		// A copy declared here escapes here, on the error path: taking
		// err's own address would move it to the heap on every read.
		failure := err
		b.err.CompareAndSwap(nil, &failure)
	}
	return n, err
}

// failure is the first error reading the body, nil if none.
func (b *countingBody) failure() error {
	if e := b.err.Load(); e != nil {
		return *e
	}
	return nil
}

// faultyFraming reports whether the bytes after r's body cannot be trusted
// to begin the client's next request, so that the client connection must
// end after the answer (RFC 9112 sections 6.1 and 6.3). A chunked request
// may have come with a Content-Length that net/http dropped before
// hopscope could see it, the smuggling pair. An HTTP/1.0 request may name
// Transfer-Encoding, which net/http ignores (and removes) for 1.0: the
// body the client framed by it would be read as requests of their own;
// only the client's head, as the tap kept it, still shows the field.
// Whatever the client meant by those bytes, they are never served.
func faultyFraming(r *http.Request) bool {
	if r.ProtoMajor != 1 {
		return false
	}
	if te := r.TransferEncoding; len(te) > 0 && te[len(te)-1] == "chunked" {
		return true
	}
	if _, minor := clientProto(r); minor == 0 {
		for _, name := range wireNamesFrom(r.Context()) {
			if strings.EqualFold(strings.TrimSpace(name), "Transfer-Encoding") {
				return true
			}
		}
	}
	return false
}
