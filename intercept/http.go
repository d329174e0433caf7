package intercept

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hopscope/hopscope/flow"
	"github.com/hopscope/hopscope/policy"
	"github.com/hopscope/hopscope/proxy"
)

// httpBodyLimit is how much of an HTTP body a breakpoint holds to show and
// edit; a longer body can be forwarded or answered for, not edited.
const httpBodyLimit = 1 << 20

// HTTPBreakpointSpec selects HTTP exchanges to pause.
type HTTPBreakpointSpec struct {
	// Name identifies the breakpoint (default "http[N]").
	Name string `yaml:"name" json:"name"`
	// Stage is "request" (before it goes upstream; default), "response"
	// (before the answer goes to the client) or "both".
	Stage string `yaml:"stage" json:"stage,omitempty"`
	// Method matches the request's method exactly ("" any).
	Method string `yaml:"method" json:"method,omitempty"`
	// URL is a glob over the full URL (* any run, ? one character; ""
	// any).
	URL string `yaml:"url" json:"url,omitempty"`
}

var _ proxy.HTTPInterceptor = (*Engine)(nil)

// SetHTTPBreakpoint adds an HTTP breakpoint, or replaces the one with the
// same name.
func (e *Engine) SetHTTPBreakpoint(spec HTTPBreakpointSpec) (HTTPBreakpointSpec, error) {
	switch spec.Stage {
	case "":
		spec.Stage = "request"
	case "request", "response", "both":
	default:
		return spec, fmt.Errorf("stage %q: use request, response or both", spec.Stage)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if spec.Name == "" {
		spec.Name = fmt.Sprintf("http[%d]", e.nextBreak)
	}
	e.nextBreak++
	for i := range e.httpBreakpoints {
		if e.httpBreakpoints[i].Name == spec.Name {
			e.httpBreakpoints[i] = spec
			return spec, nil
		}
	}
	e.httpBreakpoints = append(e.httpBreakpoints, spec)
	e.httpArmed.Store(true)
	return spec, nil
}

// ClearHTTPBreakpoint removes the named HTTP breakpoint ("" all).
func (e *Engine) ClearHTTPBreakpoint(name string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	found := false
	kept := e.httpBreakpoints[:0]
	for _, bp := range e.httpBreakpoints {
		if name == "" || bp.Name == name {
			found = true
			continue
		}
		kept = append(kept, bp)
	}
	clear(e.httpBreakpoints[len(kept):])
	e.httpBreakpoints = kept
	e.httpArmed.Store(len(kept) > 0)
	return found
}

// HTTPBreakpoints lists the HTTP breakpoints in order.
func (e *Engine) HTTPBreakpoints() []HTTPBreakpointSpec {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]HTTPBreakpointSpec{}, e.httpBreakpoints...)
}

func (e *Engine) matchHTTP(stage, method, url string) string {
	if !e.httpArmed.Load() {
		return ""
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, bp := range e.httpBreakpoints {
		if (bp.Stage == stage || bp.Stage == "both") && (bp.Method == "" || bp.Method == method) &&
			(bp.URL == "" || policy.MatchGlob(bp.URL, url)) {
			return bp.Name
		}
	}
	return ""
}

// InterceptRequest implements proxy.HTTPInterceptor.
func (e *Engine) InterceptRequest(id flow.ID, req *http.Request) (*http.Response, *flow.Intercept) {
	name := e.matchHTTP("request", req.Method, req.URL.String())
	if name == "" {
		return nil, nil
	}
	body, whole := holdBody(&req.Body)
	p := &Paused{ID: e.nextID.Add(1), Kind: "request", Exchange: id, URL: req.URL.String(), Method: req.Method,
		Header: req.Header.Clone(), Payload: body, Len: int64(len(body)), Truncated: !whole, Breakpoint: name, Editable: whole}
	if !whole {
		p.NotEditable = fmt.Sprintf("the body is longer than %d bytes", httpBodyLimit)
	}
	dec, actor := e.wait(p, nil, req.Context().Done())
	rec := &flow.Intercept{Stage: "request", Breakpoint: name, Actor: actor, Action: dec.Action}
	before := &flow.HTTPMessage{Header: p.Header, Body: body}
	switch {
	case actor != "person" || dec.Action == "forward":
		rec.Action, rec.Note = "forward", forwardNote(actor, e.timeout)
	case dec.Action == "edit":
		if dec.Header != nil {
			req.Header = dec.Header.Clone()
		}
		if dec.body {
			setRequestBody(req, dec.payload)
		}
		rec.Before, rec.After = before, &flow.HTTPMessage{Header: req.Header.Clone(), Body: pick(dec.body, dec.payload, body)}
		rec.Note = "request edited by a person"
	case dec.Action == "respond":
		resp := localAnswer(dec)
		rec.Before, rec.After = before, &flow.HTTPMessage{Status: resp.StatusCode, Header: resp.Header.Clone(), Body: dec.payload}
		rec.Note = fmt.Sprintf("answered %d by a person; the request did not go upstream", resp.StatusCode)
		return resp, rec
	}
	return nil, rec
}

// InterceptResponse implements proxy.HTTPInterceptor.
func (e *Engine) InterceptResponse(id flow.ID, req *http.Request, resp *http.Response) *flow.Intercept {
	name := e.matchHTTP("response", req.Method, req.URL.String())
	if name == "" {
		return nil
	}
	body, whole := holdBody(&resp.Body)
	p := &Paused{ID: e.nextID.Add(1), Kind: "response", Exchange: id, URL: req.URL.String(), Method: req.Method,
		Status: resp.StatusCode, Header: resp.Header.Clone(), Payload: body, Len: int64(len(body)), Truncated: !whole,
		Breakpoint: name, Editable: whole}
	if !whole {
		p.NotEditable = fmt.Sprintf("the body is longer than %d bytes", httpBodyLimit)
	}
	dec, actor := e.wait(p, nil, req.Context().Done())
	rec := &flow.Intercept{Stage: "response", Breakpoint: name, Actor: actor, Action: dec.Action}
	before := &flow.HTTPMessage{Status: resp.StatusCode, Header: p.Header, Body: body}
	switch {
	case actor != "person" || dec.Action == "forward":
		rec.Action, rec.Note = "forward", forwardNote(actor, e.timeout)
		return rec
	case dec.Action == "respond":
		resp.Body.Close()
		local := localAnswer(dec)
		resp.StatusCode, resp.Status, resp.Header, resp.Body, resp.ContentLength = local.StatusCode, local.Status, local.Header, local.Body, local.ContentLength
		rec.Note = fmt.Sprintf("the destination's answer was replaced by a person's %d", resp.StatusCode)
	default: // edit
		if dec.Status != 0 {
			resp.StatusCode, resp.Status = dec.Status, fmt.Sprintf("%d %s", dec.Status, http.StatusText(dec.Status))
		}
		if dec.Header != nil {
			resp.Header = dec.Header.Clone()
		}
		if dec.body {
			resp.Body.Close()
			resp.Body, resp.ContentLength = io.NopCloser(bytes.NewReader(dec.payload)), int64(len(dec.payload))
			resp.TransferEncoding = nil
			resp.Header.Set("Content-Length", strconv.Itoa(len(dec.payload)))
		}
		rec.Note = "answer edited by a person"
	}
	rec.Before, rec.After = before, &flow.HTTPMessage{Status: resp.StatusCode, Header: resp.Header.Clone(), Body: pick(dec.body, dec.payload, body)}
	return rec
}

func forwardNote(actor string, timeout time.Duration) string {
	switch actor {
	case "person":
		return "forwarded unchanged by a person"
	case "timeout":
		return fmt.Sprintf("forwarded unchanged after the %s timeout", timeout)
	}
	return "forwarded: the client went away"
}

func pick(given bool, payload, old []byte) []byte {
	if given {
		return payload
	}
	return old
}

// holdBody reads up to httpBodyLimit bytes of *body and puts back a body
// that gives the same bytes. whole says it read all of it.
func holdBody(body *io.ReadCloser) ([]byte, bool) {
	if *body == nil || *body == http.NoBody {
		return nil, true
	}
	buf, err := io.ReadAll(io.LimitReader(*body, httpBodyLimit+1))
	whole := err == nil && len(buf) <= httpBodyLimit
	orig := *body
	if whole {
		orig.Close()
		*body = io.NopCloser(bytes.NewReader(buf))
		return buf, true
	}
	*body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(buf), orig), orig}
	return buf[:min(len(buf), httpBodyLimit)], false
}

func setRequestBody(req *http.Request, b []byte) {
	req.Body = io.NopCloser(bytes.NewReader(b))
	req.ContentLength = int64(len(b))
	req.TransferEncoding = nil
	req.Header.Del("Content-Length")
	if len(b) == 0 {
		req.Body = http.NoBody
	}
}

// localAnswer builds the answer a person gave.
func localAnswer(d Decision) *http.Response {
	status := d.Status
	if status == 0 {
		status = http.StatusOK
	}
	h := d.Header.Clone()
	if h == nil {
		h = http.Header{}
	}
	h.Set("Content-Length", strconv.Itoa(len(d.payload)))
	h.Set("X-Hopscope-Intercept", "answered by a person")
	return &http.Response{StatusCode: status, Status: fmt.Sprintf("%d %s", status, http.StatusText(status)),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: h,
		Body: io.NopCloser(bytes.NewReader(d.payload)), ContentLength: int64(len(d.payload))}
}

// checkHTTP validates a decision on a paused request or answer.
func (p *Paused) checkHTTP(d *Decision) error {
	switch d.Action {
	case "forward":
		return nil
	case "edit", "respond":
	default:
		return &DecisionError{Reason: fmt.Sprintf("action %q: use forward, edit or respond", d.Action)}
	}
	if d.Action == "respond" && p.Kind == "request" && d.Status == 0 {
		d.Status = http.StatusOK
	}
	if d.Status != 0 && (d.Status < 200 || d.Status > 599) {
		return &DecisionError{Reason: fmt.Sprintf("status %d: use 200-599", d.Status)}
	}
	if d.Status != 0 && d.Action == "edit" && p.Kind == "request" {
		return &DecisionError{Reason: "a request has no status: respond to answer it"}
	}
	for name := range d.Header {
		if !validHeaderName(name) {
			return &DecisionError{Reason: fmt.Sprintf("header name %q is not a token", name)}
		}
		for _, v := range d.Header[name] {
			if strings.ContainsAny(v, "\r\n\x00") {
				return &DecisionError{Reason: fmt.Sprintf("header %s: a value may not hold CR, LF or NUL", name)}
			}
		}
	}
	given := 0
	for _, set := range []bool{d.Text != nil, d.JSON != nil, d.Hex != nil} {
		if set {
			given++
		}
	}
	if given > 1 {
		return &DecisionError{Reason: "give at most one of text, json or hex for the body"}
	}
	if given == 1 && d.Action == "edit" && !p.Editable {
		return &DecisionError{Reason: "cannot edit the body: " + p.NotEditable}
	}
	d.body = given == 1 || d.Action == "respond"
	switch {
	case d.Text != nil:
		d.payload = []byte(*d.Text)
	case d.JSON != nil:
		var v any
		if err := json.Unmarshal([]byte(*d.JSON), &v); err != nil {
			return &DecisionError{Reason: "json is not valid JSON: " + err.Error()}
		}
		d.payload = []byte(*d.JSON)
	case d.Hex != nil:
		b, err := hex.DecodeString(*d.Hex)
		if err != nil {
			return &DecisionError{Reason: "hex: " + err.Error()}
		}
		d.payload = b
	}
	return nil
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}
