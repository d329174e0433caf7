package intercept

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/hopscope/hopscope/flow"
	"github.com/hopscope/hopscope/proxy"
)

// maxRequestBody bounds what the API reads from a request: an edit or an
// injected message.
const maxRequestBody = 16 << 20

// Handler is the engine's JSON API, with paths relative to where it is
// mounted (the UI mounts it at /api/intercept/ and strips that prefix):
//
//	GET    /status                    timeout, counts
//	GET    /paused                    paused messages, with their deadlines
//	POST   /paused/{id}               {"action":"forward"|"edit"|"drop"|"close", ...} (WebSocket)
//	                                  {"action":"forward"|"edit"|"respond", "status", "header", body} (HTTP)
//	GET    /breakpoints               the breakpoints in order
//	POST   /breakpoints               {"name":..., "match":{...}} adds or replaces one
//	DELETE /breakpoints/{name}        removes one
//	DELETE /breakpoints               removes all
//	GET    /http-breakpoints          the HTTP breakpoints
//	POST   /http-breakpoints          {"name":..., "stage":"request"|"response"|"both", "method":..., "url":...}
//	DELETE /http-breakpoints/{name}   removes one (without a name: all)
//	GET    /sessions                  live WebSocket sessions
//	POST   /sessions/{id}/inject      {"to":"server"|"client", "text"|"hex"|"base64": ...}
//	POST   /sessions/{id}/close       {"code":1000, "reason":"..."}
//
// Errors answer {"error": "..."} with 400 (a bad request), 404 (no such
// message or session) or 409 (refused: the stream was left as it was).
// Authentication is the mounting server's (the UI's token).
func (e *Engine) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", e.apiStatus)
	mux.HandleFunc("GET /paused", e.apiPaused)
	mux.HandleFunc("POST /paused/{id}", e.apiDecide)
	mux.HandleFunc("GET /breakpoints", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, e.Breakpoints()) })
	mux.HandleFunc("POST /breakpoints", e.apiSetBreakpoint)
	mux.HandleFunc("DELETE /breakpoints/{name}", e.apiClearBreakpoint)
	mux.HandleFunc("DELETE /breakpoints", e.apiClearBreakpoint)
	mux.HandleFunc("GET /http-breakpoints", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, e.HTTPBreakpoints()) })
	mux.HandleFunc("POST /http-breakpoints", e.apiSetHTTPBreakpoint)
	mux.HandleFunc("DELETE /http-breakpoints/{name}", e.apiClearHTTPBreakpoint)
	mux.HandleFunc("DELETE /http-breakpoints", e.apiClearHTTPBreakpoint)
	mux.HandleFunc("GET /sessions", e.apiSessions)
	mux.HandleFunc("POST /sessions/{id}/inject", e.apiInject)
	mux.HandleFunc("POST /sessions/{id}/close", e.apiClose)
	return mux
}

// pausedJSON is a paused message in the API.
type pausedJSON struct {
	ID uint64 `json:"id"`
	// Kind is websocket, request or response.
	Kind    string `json:"kind"`
	Session uint64 `json:"session,omitempty"`
	URL     string `json:"url"`
	From    string `json:"from,omitempty"`
	Type    string `json:"type,omitempty"`
	// For HTTP.
	Exchange   uint64      `json:"exchange,omitempty"`
	Method     string      `json:"method,omitempty"`
	Status     int         `json:"status,omitempty"`
	Header     http.Header `json:"header,omitempty"`
	Len        int64       `json:"len"`
	Truncated  bool        `json:"truncated,omitempty"`
	Breakpoint string      `json:"breakpoint"`
	// Text is the payload when it is valid UTF-8; Hex always.
	Text        *string `json:"text,omitempty"`
	Hex         string  `json:"hex"`
	Editable    bool    `json:"editable"`
	NotEditable string  `json:"not_editable,omitempty"`
	Since       string  `json:"since"`
	// Deadline is when the message is forwarded unchanged ("" never);
	// RemainingMS the time left then, for a countdown.
	Deadline    string `json:"deadline,omitempty"`
	RemainingMS int64  `json:"remaining_ms,omitempty"`
}

func (e *Engine) apiStatus(w http.ResponseWriter, _ *http.Request) {
	e.mu.Lock()
	st := map[string]any{
		"timeout_ms":       e.timeout.Milliseconds(),
		"breakpoints":      len(e.breakpoints),
		"http_breakpoints": len(e.httpBreakpoints),
		"paused":           len(e.paused),
		"sessions":         len(e.sessions),
	}
	e.mu.Unlock()
	writeJSON(w, http.StatusOK, st)
}

func (e *Engine) apiPaused(w http.ResponseWriter, _ *http.Request) {
	now := time.Now()
	out := []pausedJSON{}
	for _, p := range e.PausedMessages() {
		j := pausedJSON{ID: p.ID, Kind: p.Kind, Session: uint64(p.Session), URL: p.URL,
			Exchange: uint64(p.Exchange), Method: p.Method, Status: p.Status, Header: p.Header, Len: p.Len, Truncated: p.Truncated, Breakpoint: p.Breakpoint, Hex: hex.EncodeToString(p.Payload),
			Editable: p.Editable, NotEditable: p.NotEditable, Since: p.Since.UTC().Format(time.RFC3339Nano)}
		if p.Kind == kindWebSocket {
			j.From, j.Type = p.From.String(), p.Op.String()
		}
		if utf8.Valid(p.Payload) {
			text := string(p.Payload)
			j.Text = &text
		}
		if !p.Deadline.IsZero() {
			j.Deadline = p.Deadline.UTC().Format(time.RFC3339Nano)
			j.RemainingMS = max(p.Deadline.Sub(now).Milliseconds(), 0)
		}
		out = append(out, j)
	}
	writeJSON(w, http.StatusOK, out)
}

func (e *Engine) apiDecide(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, "paused message id: want a number")
		return
	}
	var d Decision
	if !readJSON(w, r, &d) {
		return
	}
	switch err := e.Decide(id, d); {
	case err == nil:
		writeJSON(w, http.StatusOK, map[string]any{"id": id, "action": d.Action})
	case errors.Is(err, ErrNotPaused):
		writeError(w, http.StatusNotFound, err.Error())
	default:
		writeError(w, http.StatusConflict, err.Error())
	}
}

func (e *Engine) apiSetBreakpoint(w http.ResponseWriter, r *http.Request) {
	var spec BreakpointSpec
	if !readJSON(w, r, &spec) {
		return
	}
	set, err := e.SetBreakpoint(spec)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, set)
}

func (e *Engine) apiClearBreakpoint(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !e.ClearBreakpoint(name) && name != "" {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no breakpoint %q", name))
		return
	}
	writeJSON(w, http.StatusOK, e.Breakpoints())
}

func (e *Engine) apiSetHTTPBreakpoint(w http.ResponseWriter, r *http.Request) {
	var spec HTTPBreakpointSpec
	if !readJSON(w, r, &spec) {
		return
	}
	set, err := e.SetHTTPBreakpoint(spec)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, set)
}

func (e *Engine) apiClearHTTPBreakpoint(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !e.ClearHTTPBreakpoint(name) && name != "" {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no HTTP breakpoint %q", name))
		return
	}
	writeJSON(w, http.StatusOK, e.HTTPBreakpoints())
}

// sessionJSON is a live session in the API.
type sessionJSON struct {
	ID         uint64 `json:"id"`
	URL        string `json:"url"`
	Path       string `json:"path"`
	Extensions string `json:"extensions,omitempty"`
	Start      string `json:"start"`
}

func (e *Engine) apiSessions(w http.ResponseWriter, _ *http.Request) {
	out := []sessionJSON{}
	for _, s := range e.Sessions() {
		out = append(out, sessionJSON{ID: uint64(s.ID), URL: s.URL, Path: s.Path, Extensions: s.Extensions,
			Start: s.Start.UTC().Format(time.RFC3339Nano)})
	}
	writeJSON(w, http.StatusOK, out)
}

// injectJSON asks for a message to be injected.
type injectJSON struct {
	// To is "server" or "client".
	To string `json:"to"`
	// Exactly one of: Text (a text message), Hex or Base64 (a binary
	// message).
	Text   *string `json:"text"`
	Hex    *string `json:"hex"`
	Base64 *string `json:"base64"`
}

func (e *Engine) apiInject(w http.ResponseWriter, r *http.Request) {
	id, ok := sessionID(w, r)
	if !ok {
		return
	}
	var in injectJSON
	if !readJSON(w, r, &in) {
		return
	}
	var to flow.Side
	switch in.To {
	case "server":
		to = flow.FromServer
	case "client":
		to = flow.FromClient
	default:
		writeError(w, http.StatusBadRequest, `to: use "server" or "client"`)
		return
	}
	var payload []byte
	op := flow.OpBinary
	var err error
	switch {
	case in.Text != nil && in.Hex == nil && in.Base64 == nil:
		payload, op = []byte(*in.Text), flow.OpText
	case in.Hex != nil && in.Text == nil && in.Base64 == nil:
		payload, err = hex.DecodeString(*in.Hex)
	case in.Base64 != nil && in.Text == nil && in.Hex == nil:
		payload, err = base64.StdEncoding.DecodeString(*in.Base64)
	default:
		err = errors.New("give exactly one of text, hex or base64")
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "message: "+err.Error())
		return
	}
	res, err := e.Inject(id, to, op, payload)
	var refused *proxy.InjectError
	switch {
	case errors.As(err, &refused):
		writeError(w, http.StatusConflict, refused.Error())
	case err != nil:
		writeError(w, http.StatusBadGateway, err.Error())
	default:
		writeJSON(w, http.StatusOK, map[string]any{"seq": res.Seq, "note": res.Note})
	}
}

func (e *Engine) apiClose(w http.ResponseWriter, r *http.Request) {
	id, ok := sessionID(w, r)
	if !ok {
		return
	}
	var in struct {
		Code   uint16 `json:"code"`
		Reason string `json:"reason"`
	}
	if !readJSON(w, r, &in) {
		return
	}
	if in.Code == 0 {
		in.Code = 1000
	}
	if err := e.CloseSession(id, in.Code, in.Reason); err != nil {
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"session": id, "code": in.Code})
}

func sessionID(w http.ResponseWriter, r *http.Request) (flow.ID, bool) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, "session id: want a number")
		return 0, false
	}
	return flow.ID(id), true
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "request body: "+err.Error())
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
