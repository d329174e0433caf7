// Package store keeps the flows hopscope carries in memory, bounded, for
// the web UI and HAR export. A Store is a flow.Observer: attach it to the
// proxy's bus and it keeps what the records say, never touching the relay.
//
// # Bounds
//
// The store is a ring bounded twice: by count (Options.MaxFlows, default
// 10,000 flows) and by bytes (Options.MaxBytes, default 256 MiB), where
// bytes are the bodies, payloads and headers kept plus a fixed overhead per
// flow and per message. Each body and each WebSocket message payload is kept
// up to Options.ItemBytes (default 64 KiB): its first bytes, its full length
// and, when the store saw it whole, its SHA-256. So a 4 GiB download costs
// 64 KiB, and a chatty WebSocket that runs for hours costs at most the byte
// bound: its messages count against the bytes like flows do.
//
// When a bound is passed the oldest thing goes first: the oldest kept
// message, or the oldest finished flow (by when it finished), whichever is
// older. A flow still open (a live WebSocket, a tunnel) goes only when
// nothing else is left, so a long session loses its oldest messages, not
// itself. What went is said on the flow (Summary.EvictedMessages,
// Summary.EvictedBytes) and in Stats.
//
// # Filter language
//
// A filter is a list of terms separated by spaces; a flow matches when it
// matches every term. Text matching is case-insensitive (ASCII) substring
// matching. Double quotes group words ("hello world", host:"a b"); a
// backslash inside quotes escapes a quote or a backslash. A leading '-'
// negates a term.
//
//	word             URL, method, error, denial reason, request and response
//	                 bodies (as kept, and decoded from gzip, deflate, br or
//	                 zstd) and WebSocket messages (kept payloads,
//	                 replacements, close reasons)
//	host:example     the host
//	path:/api        the path and query
//	url:https://     the full URL
//	method:POST      the method, exactly (case-insensitive)
//	status:404       the status: a code, a class (4xx) or a range (400-499)
//	type:websocket   http, tunnel, bumped, websocket (or ws), denied, fault;
//	                 type:fault also matches flows a fault acted on and
//	                 type:bumped exchanges read inside a bumped tunnel
//	header:x-foo     a request or response header named x-foo
//	header:x-foo=bar ... whose value holds bar
//	body:text        a request or response body
//	msg:hello        a WebSocket message
//	error:refused    the error (or the protocol violation)
//	~dropped         a message was dropped by a rule or fault (also
//	                 ~rewritten, ~closed)
//	~fault ~denied ~error ~open ~truncated ~evicted ~bumped
//	                 a fault acted; refused; has an error; in progress; a
//	                 body or payload kept only in part; messages evicted;
//	                 bumped
//
// A word with a colon whose prefix is not a field (http://example.com) is a
// plain word. Examples:
//
//	host:example.com status:5xx
//	type:websocket msg:"user joined" -~open
//	method:POST header:content-type=json -path:/health
package store
