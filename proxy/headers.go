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
		for _, name := range strings.Split(value, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopHeaders {
		h.Del(name)
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

// addVia appends this proxy to the Via header (RFC 9110 section 7.6.3),
// naming the protocol version it received the message with.
func addVia(h http.Header, major, minor int, pseudonym string) {
	version := strconv.Itoa(major) + "." + strconv.Itoa(minor)
	if major == 0 {
		version = "1.1"
	}
	h.Add("Via", version+" "+pseudonym)
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
