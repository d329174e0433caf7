package compare

import (
	"encoding/base64"
	"strings"
)

// get is an ordinary absolute-form request head to the origin, without the
// final empty line.
const get = "GET http://{origin}/p HTTP/1.1\r\nHost: {origin}\r\nUser-Agent: probe/1\r\nAccept: */*\r\n"

// Unresolvable is the probes' default host name that cannot be
// resolved: a label longer than DNS allows (63 bytes), so that the lookup
// fails on this machine, before any query leaves it. A proxy that sends
// such a name to its name server anyway (squid) is probed with a plain
// .invalid name and a name server of the test's (Normaliser.Unresolvable).
var Unresolvable = strings.Repeat("x", 64) + ".invalid"

const wsHandshake = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

// Probes returns the probes every profile is compared on: forwarding,
// header handling, framing, errors, WebSockets and CONNECT.
func Probes() []Probe {
	return []Probe{
		{Name: "get", Send: get + "\r\n"},
		{Name: "header-case-and-order", Send: "GET http://{origin}/p HTTP/1.1\r\nhost: {origin}\r\nx-lower: a\r\nX-UPPER: b\r\nX-MiXeD-CaSe: c\r\nSec-WebSocket-Key: d\r\nAccept: */*\r\n\r\n"},
		{Name: "head", Send: "HEAD http://{origin}/p HTTP/1.1\r\nHost: {origin}\r\n\r\n"},
		{Name: "http10-client", Send: "GET http://{origin}/p HTTP/1.0\r\nUser-Agent: probe/1\r\n\r\n"},
		{Name: "http10-keepalive", Send: "GET http://{origin}/p HTTP/1.0\r\nHost: {origin}\r\nConnection: keep-alive\r\n\r\n"},
		{Name: "client-connection-close", Send: get + "Connection: close\r\n\r\n"},
		{Name: "hop-by-hop-named", Send: get + "Connection: X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 300\r\nProxy-Connection: keep-alive\r\n\r\n"},
		{Name: "te-trailers", Send: get + "TE: trailers\r\n\r\n"},
		{Name: "via-existing", Send: get + "Via: 1.1 a\r\n\r\n"},
		{Name: "x-forwarded-for-existing", Send: get + "X-Forwarded-For: 192.0.2.1\r\n\r\n"},
		{Name: "max-forwards-options-0", Send: "OPTIONS http://{origin}/p HTTP/1.1\r\nHost: {origin}\r\nMax-Forwards: 0\r\n\r\n"},
		{Name: "max-forwards-trace-0", Send: "TRACE http://{origin}/p HTTP/1.1\r\nHost: {origin}\r\nMax-Forwards: 0\r\n\r\n"},
		{Name: "max-forwards-options-3", Send: "OPTIONS http://{origin}/p HTTP/1.1\r\nHost: {origin}\r\nMax-Forwards: 3\r\n\r\n"},
		{Name: "max-forwards-get-0", Send: get + "Max-Forwards: 0\r\n\r\n"},
		{Name: "post-content-length", Send: "POST http://{origin}/p HTTP/1.1\r\nHost: {origin}\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"},
		{Name: "post-chunked", Send: "POST http://{origin}/p HTTP/1.1\r\nHost: {origin}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
		{Name: "post-expect-continue", Send: "POST http://{origin}/p HTTP/1.1\r\nHost: {origin}\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello"},
		{Name: "proxy-authorization-unused", Send: get + "Proxy-Authorization: Basic YWxpY2U6czNjcmV0\r\n\r\n"},
		{Name: "trailer-header", Send: "POST http://{origin}/p HTTP/1.1\r\nHost: {origin}\r\nTrailer: X-T\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"},
		{Name: "origin-chunked", Send: get + "\r\n", Origin: OriginChunked},
		{Name: "origin-connection-close", Send: get + "\r\n", Origin: OriginClose},
		{Name: "origin-big-header", Send: get + "\r\n", Origin: OriginBigHeader},
		{Name: "origin-empty-reply", Send: get + "\r\n", Origin: OriginEmpty},
		{Name: "origin-refused", Send: get + "\r\n", Origin: OriginRefused},
		{Name: "unresolvable-host", Send: "GET http://{unresolvable}/p HTTP/1.1\r\nHost: {unresolvable}\r\n\r\n"},
		{Name: "bad-request-line", Send: "GARBAGE\r\n\r\n"},
		{Name: "oversized-header", Send: get + "X-Big: " + strings.Repeat("a", 70<<10) + "\r\n\r\n"},
		{Name: "origin-form", Send: "GET /p HTTP/1.1\r\nHost: {origin}\r\n\r\n"},
		{Name: "url-with-space", Send: "GET http://{origin}/a b HTTP/1.1\r\nHost: {origin}\r\n\r\n"},
		{Name: "websocket-forward", Send: "GET http://{origin}/ws HTTP/1.1\r\nHost: {origin}\r\n" + wsHandshake, Origin: OriginWebSocket},
		{Name: "websocket-forward-lowercase", Send: "GET http://{origin}/ws HTTP/1.1\r\nHost: {origin}\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n", Origin: OriginWebSocket},
		{Name: "connect-other-port", Send: "CONNECT {origin} HTTP/1.1\r\nHost: {origin}\r\n\r\n", Tunnel: "GET /t HTTP/1.1\r\nHost: {origin}\r\n\r\n"},
		{Name: "connect-443", Send: "CONNECT {origin} HTTP/1.1\r\nHost: {origin}\r\n\r\n", Tunnel: "GET /t HTTP/1.1\r\nHost: {origin}\r\nx-inner: Case\r\n\r\n", OriginAddr: "443"},
		{Name: "connect-443-websocket", Send: "CONNECT {origin} HTTP/1.1\r\nHost: {origin}\r\n\r\n", Tunnel: "GET /ws HTTP/1.1\r\nHost: {origin}\r\n" + wsHandshake, Origin: OriginWebSocket, OriginAddr: "443"},
		{Name: "connect-443-http10", Send: "CONNECT {origin} HTTP/1.0\r\n\r\n", Tunnel: "GET /t HTTP/1.1\r\nHost: {origin}\r\n\r\n", OriginAddr: "443"},
		{Name: "connect-443-refused", Send: "CONNECT {origin} HTTP/1.1\r\nHost: {origin}\r\n\r\n", Origin: OriginRefused, OriginAddr: "443"},
		{Name: "connect-unresolvable", Send: "CONNECT {unresolvable}:443 HTTP/1.1\r\nHost: {unresolvable}:443\r\n\r\n"},
	}
}

// AuthProbes are compared on a proxy that requires the Basic credentials
// user:pass.
func AuthProbes(user, pass string) []Probe {
	good := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	bad := base64.StdEncoding.EncodeToString([]byte(user + ":wrong" + pass))
	return []Probe{
		{Name: "auth-missing", Send: get + "\r\n"},
		{Name: "auth-wrong", Send: get + "Proxy-Authorization: Basic " + bad + "\r\n\r\n"},
		{Name: "auth-ok", Send: get + "Proxy-Authorization: Basic " + good + "\r\n\r\n"},
		{Name: "auth-connect-missing", Send: "CONNECT {origin} HTTP/1.1\r\nHost: {origin}\r\n\r\n", OriginAddr: "443"},
	}
}
