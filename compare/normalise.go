package compare

import (
	"net"
	"regexp"
	"sort"
	"strings"
)

// Normaliser replaces what differs from one host or run to the next, so
// that two proxies compare on what they do, not on where they run.
type Normaliser struct {
	// Hosts are names that stand for the proxy's host (squid's
	// visible_hostname, a Via pseudonym); each becomes "<host>".
	Hosts []string
	// IgnoreVersions replaces product versions (squid/5.7,
	// tinyproxy/1.11.1) by "<version>", for comparing a profile with
	// another release of its product.
	IgnoreVersions bool
	// SortAnswerFields compares the answer's header fields by name, not
	// by their order on the wire. hopscope answers through net/http's
	// server, which writes fields sorted by name, so the order of an
	// answer's fields is the one thing it cannot reproduce; the order of
	// the fields the origin receives is compared either way.
	SortAnswerFields bool
	// Unresolvable replaces the probes' unresolvable host name (default
	// Unresolvable); either is shown as "<unresolvable>".
	Unresolvable string

	origin, proxy string // set by Run
}

// dateFields carry times, which differ on every run.
var dateFields = map[string]bool{"date": true, "expires": true, "last-modified": true}

var versionPattern = regexp.MustCompile(`(?i)\b(squid|tinyproxy)/[0-9][0-9a-z.\-]*`)

// text normalises one value.
func (n Normaliser) text(s string) string {
	s = strings.ReplaceAll(s, n.unresolvable(), "<unresolvable>")
	if n.origin != "" {
		host, port, _ := net.SplitHostPort(n.origin)
		s = strings.ReplaceAll(s, n.origin, "<origin>")
		s = strings.ReplaceAll(s, host+"%3A"+port, "<origin>")
		if port != "443" {
			// A port on its own: error pages and Host headers write it.
			s = strings.ReplaceAll(s, ":"+port, ":<origin-port>")
		}
	}
	if n.proxy != "" {
		_, port, _ := net.SplitHostPort(n.proxy)
		s = strings.ReplaceAll(s, n.proxy, "<proxy>")
		s = strings.ReplaceAll(s, ":"+port, ":<proxy-port>")
	}
	for _, h := range n.Hosts {
		if h != "" {
			s = strings.ReplaceAll(s, h, "<host>")
		}
	}
	if n.IgnoreVersions {
		s = versionPattern.ReplaceAllString(s, "$1/<version>")
	}
	return s
}

func (n Normaliser) fields(fs []Field, htmlBody bool) []Field {
	out := make([]Field, len(fs))
	for i, f := range fs {
		v := n.text(f.Value)
		switch lower := strings.ToLower(f.Name); {
		case dateFields[lower]:
			v = "<date>"
		case lower == "content-length" && htmlBody:
			// A page names hosts and ports, so its length is theirs too.
			v = "<length>"
		}
		out[i] = Field{Name: f.Name, Value: v}
	}
	return out
}

func (n Normaliser) result(r Result) Result {
	html := strings.Contains(r.Body, ", html ")
	r.Fields = n.fields(r.Fields, html)
	if n.SortAnswerFields {
		sort.SliceStable(r.Fields, func(i, j int) bool {
			return strings.ToLower(r.Fields[i].Name) < strings.ToLower(r.Fields[j].Name)
		})
	}
	r.Status = n.text(r.Status)
	r.Body = n.text(r.Body)
	if r.Tunnel != nil {
		t := n.result(*r.Tunnel)
		r.Tunnel = &t
	}
	if r.Origin != nil {
		v := *r.Origin
		v.RequestLine = n.text(v.RequestLine)
		v.Fields = n.fields(v.Fields, false)
		v.Trailers = n.fields(v.Trailers, false)
		r.Origin = &v
	}
	r.Err = n.text(r.Err)
	return r
}

func (n Normaliser) unresolvable() string {
	if n.Unresolvable != "" {
		return n.Unresolvable
	}
	return Unresolvable
}
