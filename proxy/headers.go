package proxy

import (
	"net/http"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// hopHeaders are the hop-by-hop headers of RFC 9110 section 7.6.1, plus the
// de-facto ones the field still sends (Proxy-Connection, Keep-Alive). They
// describe one connection and must not be passed on to the next.
var hopHeaders = [...]string{
	"Connection",
	"Proxy-Connection",
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

// removeHopByHopHeaders deletes the hop-by-hop headers from h, and first
// every header that Connection names, as httputil.ReverseProxy does. The
// Connection header must be read before it is deleted: it is the list.
func removeHopByHopHeaders(h http.Header) {
	for _, value := range h["Connection"] {
		for value != "" {
			var name string
			name, value, _ = strings.Cut(value, ",")
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopHeaders {
		delete(h, name) // already canonical: no need for Del's canonicalizing
	}
}

// cleanRequestHeaders prepares a client's request header for the next hop.
// TE is hop-by-hop, but "TE: trailers" tells the next hop that the client
// can take trailers; that meaning must survive, so it is set again.
func cleanRequestHeaders(h http.Header) {
	wantsTrailers := httpguts.HeaderValuesContainsToken(h["Te"], "trailers")
	removeHopByHopHeaders(h)
	if wantsTrailers {
		h.Set("Te", "trailers")
	}
}

// viaEntry is this proxy's entry in Via (RFC 9110 section 7.6.3), naming
// the protocol version it received the message with.
func viaEntry(major, minor int, name string) string {
	if major == 0 {
		major, minor = 1, 1
	}
	if major >= 2 {
		// RFC 9110 section 7.6.3: HTTP/2 and HTTP/3 have no minor version.
		return strconv.Itoa(major) + " " + name
	}
	return strconv.Itoa(major) + "." + strconv.Itoa(minor) + " " + name
}

// viaCache holds the Via entries of the common versions, so a request
// does not build the same string again.
type viaCache struct{ v11, v10, name string }

func newViaCache(name string) viaCache {
	return viaCache{v11: viaEntry(1, 1, name), v10: viaEntry(1, 0, name), name: name}
}

func (c viaCache) add(h http.Header, major, minor int) {
	v := c.v11
	switch {
	case major == 1 && minor == 0:
		v = c.v10
	case major > 1 || (major == 1 && minor > 1):
		v = viaEntry(major, minor, c.name)
	}
	h["Via"] = append(h["Via"], v)
}

// viaContains reports whether any Via entry was received by pseudonym, which
// means the request has passed through this proxy before: a loop.
func viaContains(h http.Header, pseudonym string) bool {
	for _, value := range h["Via"] {
		for _, entry := range strings.Split(value, ",") {
			fields := strings.Fields(entry)
			if len(fields) >= 2 && strings.EqualFold(fields[1], pseudonym) {
				return true
			}
		}
	}
	return false
}
