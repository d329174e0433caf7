// Package reliability holds hopscope's hostile-input suite: tests that
// start a real hopscope (through proxy/proxytest, or the built command for
// signals) and attack it over loopback sockets, class by class, the way a
// broken client, a hostile peer or a failing destination would:
// smuggling and framing, oversized and malformed heads, slowloris heads and
// bodies, CONNECT abuse, WebSocket violations on each of the three paths
// (asserting what the far peer received byte for byte), upstream faults
// (reset mid-body, silence, empty replies) and SIGTERM with requests in
// flight. Each test asserts a clear error to the party at fault and that
// no goroutine or file descriptor outlives it.
//
// It runs with the rest: go test ./reliability. A soak test is behind a
// build tag:
//
//	go test -tags soak -run TestSoak -timeout 30m ./reliability -args -soak.conns 500 -soak.duration 5m
//
// It holds N WebSockets through a started hopscope for the duration,
// sending sequence-numbered messages that must come back in order, and
// prints the proxy's resident memory and descriptor count over time as a
// table.
package reliability
