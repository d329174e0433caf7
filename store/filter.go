package store

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// Filter is a parsed filter expression (see the package documentation for
// the language). A nil *Filter matches every flow.
type Filter struct {
	terms []term
}

type term struct {
	neg   bool
	field string // "" for a plain word, "~" for a marker, else a field name
	raw   string // the value as written (canonical form)
	text  string // the value lowercased, for text fields
	// status ranges
	lo, hi int
	// header:name[=value]
	hname, hvalue string
}

// fieldNames are the field prefixes the language knows, in help order.
var fieldNames = []string{"host", "path", "url", "method", "status", "type", "header", "body", "msg", "error"}

// markerNames are the ~markers the language knows.
var markerNames = []string{"dropped", "rewritten", "closed", "fault", "denied", "error", "open", "truncated", "evicted", "bumped"}

func known(names []string, s string) bool {
	for _, n := range names {
		if n == s {
			return true
		}
	}
	return false
}

// ParseFilter parses a filter expression. An empty expression gives a
// filter that matches everything. Errors say which term is wrong and why.
func ParseFilter(src string) (*Filter, error) {
	toks, err := tokenize(src)
	if err != nil {
		return nil, err
	}
	f := &Filter{}
	for _, tk := range toks {
		t, err := parseTerm(tk)
		if err != nil {
			return nil, err
		}
		f.terms = append(f.terms, t)
	}
	return f, nil
}

// token is one whitespace-separated piece of a filter, quotes removed.
type token struct {
	neg  bool
	text string
	// plain is how many leading bytes of text were not quoted: a field
	// prefix or a marker counts only there.
	plain int
}

func tokenize(src string) ([]token, error) {
	var toks []token
	i := 0
	for {
		for i < len(src) && isSpace(src[i]) {
			i++
		}
		if i == len(src) {
			return toks, nil
		}
		tk := token{plain: -1}
		if src[i] == '-' && i+1 < len(src) && !isSpace(src[i+1]) {
			tk.neg = true
			i++
		}
		var b strings.Builder
		for i < len(src) && !isSpace(src[i]) {
			if src[i] != '"' {
				b.WriteByte(src[i])
				i++
				continue
			}
			if tk.plain < 0 {
				tk.plain = b.Len()
			}
			start := i
			i++
			for {
				if i == len(src) {
					return nil, fmt.Errorf("filter: quote at byte %d is not closed", start)
				}
				c := src[i]
				if c == '"' {
					i++
					break
				}
				if c == '\\' && i+1 < len(src) {
					i++
					c = src[i]
				}
				b.WriteByte(c)
				i++
			}
		}
		tk.text = b.String()
		if tk.plain < 0 {
			tk.plain = len(tk.text)
		}
		toks = append(toks, tk)
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func parseTerm(tk token) (term, error) {
	t := term{neg: tk.neg}
	if tk.plain > 0 && tk.text[0] == '~' {
		name := strings.ToLower(tk.text[1:])
		if !known(markerNames, name) {
			return t, fmt.Errorf("filter: unknown marker ~%s (known: ~%s)", tk.text[1:], strings.Join(markerNames, " ~"))
		}
		t.field, t.raw = "~", name
		return t, nil
	}
	if i := strings.IndexByte(tk.text, ':'); i > 0 && i < tk.plain {
		if name := strings.ToLower(tk.text[:i]); known(fieldNames, name) {
			t.field, t.raw = name, tk.text[i+1:]
			if t.raw == "" {
				return t, fmt.Errorf("filter: %s: needs a value", name)
			}
			return t, t.parseValue()
		}
		// Not a field (http://..., a time): the whole token is a word.
	}
	t.raw = tk.text
	t.text = strings.ToLower(tk.text)
	return t, nil
}

func (t *term) parseValue() error {
	t.text = strings.ToLower(t.raw)
	switch t.field {
	case "status":
		lo, hi, err := parseStatus(t.text)
		if err != nil {
			return fmt.Errorf("filter: status:%s: %w", t.raw, err)
		}
		t.lo, t.hi = lo, hi
	case "type":
		if t.text == "ws" {
			t.text = string(TypeWebSocket)
		}
		for _, ty := range Types() {
			if string(ty) == t.text {
				return nil
			}
		}
		return fmt.Errorf("filter: type:%s: not a type (known: %s)", t.raw, typeList())
	case "header":
		name, value, _ := strings.Cut(t.raw, "=")
		if name == "" {
			return fmt.Errorf("filter: header:%s: needs a header name", t.raw)
		}
		t.hname, t.hvalue = http.CanonicalHeaderKey(name), strings.ToLower(value)
	}
	return nil
}

func typeList() string {
	types := Types()
	s := make([]string, len(types))
	for i, t := range types {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}

// parseStatus reads 404, 4xx or 400-499.
func parseStatus(s string) (lo, hi int, err error) {
	if len(s) == 3 && s[1] == 'x' && s[2] == 'x' && s[0] >= '1' && s[0] <= '5' {
		lo = int(s[0]-'0') * 100
		return lo, lo + 99, nil
	}
	if a, b, ok := strings.Cut(s, "-"); ok {
		lo, err1 := strconv.Atoi(a)
		hi, err2 := strconv.Atoi(b)
		if err1 != nil || err2 != nil || lo > hi || lo < 0 || hi > 999 {
			return 0, 0, fmt.Errorf("want a code (404), a class (4xx) or a range (400-499)")
		}
		return lo, hi, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 999 {
		return 0, 0, fmt.Errorf("want a code (404), a class (4xx) or a range (400-499)")
	}
	return n, n, nil
}

// String gives the filter in canonical form; ParseFilter reads it back
// to the same filter.
func (f *Filter) String() string {
	if f == nil {
		return ""
	}
	parts := make([]string, len(f.terms))
	for i, t := range f.terms {
		var b strings.Builder
		if t.neg {
			b.WriteByte('-')
		}
		switch t.field {
		case "":
			quoted := t.raw == "" || t.raw[0] == '-' || t.raw[0] == '~' || strings.ContainsAny(t.raw, ":\" \t\r\n\\")
			b.WriteString(quote(t.raw, quoted))
		case "~":
			b.WriteString("~" + t.raw)
		default:
			b.WriteString(t.field + ":" + quote(t.raw, strings.ContainsAny(t.raw, "\" \t\r\n\\")))
		}
		parts[i] = b.String()
	}
	return strings.Join(parts, " ")
}

func quote(s string, needed bool) string {
	if !needed {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}

// Empty reports whether the filter matches everything.
func (f *Filter) Empty() bool { return f == nil || len(f.terms) == 0 }

// match reports whether e passes every term. Callers hold the store's
// lock.
func (f *Filter) match(e *entry) bool {
	if f.Empty() {
		return true
	}
	sm := e.summary()
	for i := range f.terms {
		t := &f.terms[i]
		if t.match(e, &sm) == t.neg {
			return false
		}
	}
	return true
}

func (t *term) match(e *entry, sm *Summary) bool {
	switch t.field {
	case "":
		return containsFoldString(sm.URL, t.text) || containsFoldString(sm.Method, t.text) ||
			containsFoldString(sm.Error, t.text) || containsFoldString(sm.Reason, t.text) ||
			bodyContains(e, t.text) || messagesContain(e, t.text)
	case "~":
		return marker(e, sm, t.raw)
	case "host":
		return containsFoldString(sm.Host, t.text)
	case "path":
		return containsFoldString(sm.Path, t.text)
	case "url":
		return containsFoldString(sm.URL, t.text)
	case "method":
		return strings.EqualFold(sm.Method, t.text)
	case "status":
		return sm.Status != 0 && sm.Status >= t.lo && sm.Status <= t.hi
	case "type":
		switch Type(t.text) {
		case TypeFault:
			return sm.Type == TypeFault || sm.Faults > 0
		case TypeBumped:
			return sm.Type == TypeBumped || sm.Bumped
		}
		return sm.Type == Type(t.text)
	case "header":
		return e.ex != nil && (headerMatch(e.ex.RequestHeader, t.hname, t.hvalue) || headerMatch(e.ex.ResponseHeader, t.hname, t.hvalue))
	case "body":
		return bodyContains(e, t.text)
	case "msg":
		return messagesContain(e, t.text)
	case "error":
		return containsFoldString(sm.Error, t.text) || (sm.Violation != "" && containsFoldString(sm.Violation, t.text))
	}
	return false
}

func marker(e *entry, sm *Summary, name string) bool {
	switch name {
	case "dropped":
		return sm.Dropped > 0
	case "rewritten":
		return sm.Rewritten > 0
	case "closed":
		return sm.Closed > 0
	case "fault":
		return sm.Faults > 0
	case "denied":
		return e.den != nil
	case "error":
		return sm.Error != "" || sm.Violation != ""
	case "open":
		return sm.Open
	case "truncated":
		return sm.Truncated
	case "evicted":
		return sm.EvictedMessages > 0
	case "bumped":
		return sm.Bumped
	}
	return false
}

func headerMatch(h http.Header, name, value string) bool {
	vs, ok := h[name]
	if !ok {
		return false
	}
	if value == "" {
		return true
	}
	for _, v := range vs {
		if containsFoldString(v, value) {
			return true
		}
	}
	return false
}

func bodyContains(e *entry, text string) bool {
	return e.ex != nil && (containsFold(e.ex.RequestBody.Data, text) || containsFold(e.ex.ResponseBody.Data, text) ||
		containsFold(e.reqPlain, text) || containsFold(e.respPlain, text))
}

func messagesContain(e *entry, text string) bool {
	for _, m := range e.msgs.kept() {
		if m.contains(text) {
			return true
		}
	}
	return false
}

// contains reports whether the message's kept payload, replacement or
// close reason holds text (lowercase).
func (m *Message) contains(text string) bool {
	return containsFold(m.Payload, text) || containsFold(m.Replacement, text) || containsFoldString(m.CloseReason, text)
}

func containsFoldString(h, lower string) bool {
	if lower == "" {
		return true
	}
	if len(h) < len(lower) {
		return false
	}
	return strings.Contains(strings.ToLower(h), lower)
}

// containsFold reports whether h holds needle (already lowercase),
// folding ASCII case, without allocating: bodies and payloads are
// searched often and may be large.
func containsFold(h []byte, needle string) bool {
	n := len(needle)
	if n == 0 {
		return true
	}
	c0 := needle[0]
	up := c0
	if c0 >= 'a' && c0 <= 'z' {
		up = c0 - 'a' + 'A'
	}
	for len(h) >= n {
		i := bytes.IndexByte(h[:len(h)-n+1], c0)
		if up != c0 {
			if j := bytes.IndexByte(h[:len(h)-n+1], up); j >= 0 && (i < 0 || j < i) {
				i = j
			}
		}
		if i < 0 {
			return false
		}
		if equalFold(h[i:i+n], needle) {
			return true
		}
		h = h[i+1:]
	}
	return false
}

func equalFold(b []byte, lower string) bool {
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
