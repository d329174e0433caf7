// Package socks5 reads and writes the server side of the SOCKS5 wire
// protocol: the method negotiation and CONNECT request of RFC 1928 and the
// username/password sub-negotiation of RFC 1929. It does no I/O of its own
// beyond the reader and writer it is given and makes no decisions: which
// method to pick, whether credentials are good and where a request may go
// are the caller's (package proxy).
//
// Every length on the wire is one byte, so no message is longer than
// 1 + 1 + 255 bytes per field; nothing here reads more than a message.
package socks5

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
)

// Version is the protocol version byte of RFC 1928.
const Version = 0x05

// Authentication methods (RFC 1928 §3).
const (
	MethodNoAuth       = 0x00
	MethodUserPass     = 0x02 // RFC 1929
	MethodNoAcceptable = 0xFF
)

// Commands (RFC 1928 §4).
const (
	CommandConnect      = 0x01
	CommandBind         = 0x02
	CommandUDPAssociate = 0x03
)

// Address types (RFC 1928 §5).
const (
	AddrIPv4   = 0x01
	AddrDomain = 0x03
	AddrIPv6   = 0x04
)

// Reply is the REP field of a server's reply (RFC 1928 §6).
type Reply byte

// The replies RFC 1928 defines.
const (
	ReplySucceeded           Reply = 0x00
	ReplyGeneralFailure      Reply = 0x01
	ReplyNotAllowed          Reply = 0x02 // connection not allowed by ruleset
	ReplyNetworkUnreachable  Reply = 0x03
	ReplyHostUnreachable     Reply = 0x04
	ReplyConnectionRefused   Reply = 0x05
	ReplyTTLExpired          Reply = 0x06
	ReplyCommandNotSupported Reply = 0x07
	ReplyAddressNotSupported Reply = 0x08
)

var replyNames = [...]string{
	"succeeded", "general SOCKS server failure", "connection not allowed by ruleset",
	"network unreachable", "host unreachable", "connection refused", "TTL expired",
	"command not supported", "address type not supported",
}

func (r Reply) String() string {
	if int(r) < len(replyNames) {
		return replyNames[r]
	}
	return fmt.Sprintf("reply 0x%02x", byte(r))
}

// VersionError is returned when a client's first byte is not 5: it speaks
// another protocol (SOCKS4, HTTP) to a SOCKS5 port.
type VersionError struct{ Got byte }

func (e *VersionError) Error() string {
	return fmt.Sprintf("not SOCKS5: the client's first byte is 0x%02x, not 0x05", e.Got)
}

// RequestError is a request that cannot be served as written; Reply is
// what the client should be told.
type RequestError struct {
	Reply Reply
	Msg   string
}

func (e *RequestError) Error() string { return e.Msg }

// ErrNoMethods is a greeting that offers no authentication method at all.
var ErrNoMethods = errors.New("SOCKS5 greeting offers no authentication method")

// ReadGreeting reads a client's version identifier/method selection
// message and returns the methods it offers.
func ReadGreeting(r io.Reader) ([]byte, error) {
	var head [2]byte
	if _, err := io.ReadFull(r, head[:1]); err != nil {
		return nil, fmt.Errorf("reading the SOCKS5 greeting: %w", err)
	}
	if head[0] != Version {
		return nil, &VersionError{Got: head[0]}
	}
	if _, err := io.ReadFull(r, head[1:]); err != nil {
		return nil, fmt.Errorf("reading the SOCKS5 greeting: %w", unexpected(err))
	}
	if head[1] == 0 {
		return nil, ErrNoMethods
	}
	methods := make([]byte, head[1])
	if _, err := io.ReadFull(r, methods); err != nil {
		return nil, fmt.Errorf("reading the SOCKS5 greeting's methods: %w", unexpected(err))
	}
	return methods, nil
}

// WriteMethod answers a greeting with the chosen method, or
// MethodNoAcceptable.
func WriteMethod(w io.Writer, method byte) error {
	_, err := w.Write([]byte{Version, method})
	return err
}

// userPassVersion is the sub-negotiation's own version byte (RFC 1929 §2).
const userPassVersion = 0x01

// ReadUserPass reads an RFC 1929 username/password request.
func ReadUserPass(r io.Reader) (user, pass string, err error) {
	var head [2]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return "", "", fmt.Errorf("reading SOCKS5 credentials: %w", unexpected(err))
	}
	if head[0] != userPassVersion {
		return "", "", fmt.Errorf("SOCKS5 credentials: sub-negotiation version 0x%02x, want 0x01 (RFC 1929)", head[0])
	}
	user, err = readString(r, int(head[1]))
	if err != nil {
		return "", "", fmt.Errorf("reading the SOCKS5 user name: %w", err)
	}
	var n [1]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return "", "", fmt.Errorf("reading SOCKS5 credentials: %w", unexpected(err))
	}
	pass, err = readString(r, int(n[0]))
	if err != nil {
		return "", "", fmt.Errorf("reading the SOCKS5 password: %w", err)
	}
	return user, pass, nil
}

// WriteUserPassStatus answers the sub-negotiation: ok or not. After a
// failure the server must close the connection.
func WriteUserPassStatus(w io.Writer, ok bool) error {
	status := byte(0x01)
	if ok {
		status = 0x00
	}
	_, err := w.Write([]byte{userPassVersion, status})
	return err
}

// Request is a client's request. Host is an IP literal (without brackets)
// for AddrIPv4 and AddrIPv6, the name as sent for AddrDomain, which the
// server resolves (socks5h:// clients send names).
type Request struct {
	Command  byte
	AddrType byte
	Host     string
	Port     uint16
}

// ReadRequest reads a request. An address type it cannot parse is a
// *RequestError with ReplyAddressNotSupported; a domain name that could
// not be a host name is one with ReplyGeneralFailure. The command is not
// checked: that is the caller's choice.
func ReadRequest(r io.Reader) (Request, error) {
	var head [4]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return Request{}, fmt.Errorf("reading the SOCKS5 request: %w", unexpected(err))
	}
	if head[0] != Version {
		return Request{}, &RequestError{Reply: ReplyGeneralFailure, Msg: fmt.Sprintf("SOCKS5 request with version 0x%02x", head[0])}
	}
	req := Request{Command: head[1], AddrType: head[3]}
	switch req.AddrType {
	case AddrIPv4, AddrIPv6:
		size := 4
		if req.AddrType == AddrIPv6 {
			size = 16
		}
		var raw [16]byte
		if _, err := io.ReadFull(r, raw[:size]); err != nil {
			return Request{}, fmt.Errorf("reading the SOCKS5 request's address: %w", unexpected(err))
		}
		addr, _ := netip.AddrFromSlice(raw[:size])
		// An IPv4-mapped IPv6 address is the IPv4 one, so that rules on
		// IPv4 ranges see it as such.
		req.Host = addr.Unmap().String()
	case AddrDomain:
		var n [1]byte
		if _, err := io.ReadFull(r, n[:]); err != nil {
			return Request{}, fmt.Errorf("reading the SOCKS5 request's name: %w", unexpected(err))
		}
		name, err := readString(r, int(n[0]))
		if err != nil {
			return Request{}, fmt.Errorf("reading the SOCKS5 request's name: %w", err)
		}
		if msg := checkName(name); msg != "" {
			return Request{}, &RequestError{Reply: ReplyGeneralFailure, Msg: fmt.Sprintf("SOCKS5 request for %q: %s", name, msg)}
		}
		req.Host = name
	default:
		return Request{}, &RequestError{Reply: ReplyAddressNotSupported, Msg: fmt.Sprintf("SOCKS5 address type 0x%02x is not defined by RFC 1928", req.AddrType)}
	}
	var port [2]byte
	if _, err := io.ReadFull(r, port[:]); err != nil {
		return Request{}, fmt.Errorf("reading the SOCKS5 request's port: %w", unexpected(err))
	}
	req.Port = binary.BigEndian.Uint16(port[:])
	return req, nil
}

// checkName says what is wrong with a domain name, "" if nothing: it must
// be printable ASCII without the characters that would let it pass for
// something else once written as host:port (a colon, brackets) or in a URL.
func checkName(name string) string {
	if name == "" {
		return "empty name"
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c <= ' ' || c >= 0x7f:
			return "the name has a control, space or non-ASCII byte (send IDNs as punycode)"
		case c == ':' || c == '[' || c == ']' || c == '/' || c == '@' || c == '%' || c == '\\':
			return fmt.Sprintf("the name has %q, which no host name has", c)
		}
	}
	return ""
}

// WriteReply sends a reply with the server's bound address (the local end
// of its connection to the destination; the zero value sends 0.0.0.0:0).
func WriteReply(w io.Writer, rep Reply, bound netip.AddrPort) error {
	_, err := w.Write(AppendReply(make([]byte, 0, 22), rep, bound))
	return err
}

// AppendReply appends a reply to b.
func AppendReply(b []byte, rep Reply, bound netip.AddrPort) []byte {
	addr := bound.Addr().Unmap()
	b = append(b, Version, byte(rep), 0x00)
	switch {
	case addr.Is6():
		a := addr.As16()
		b = append(b, AddrIPv6)
		b = append(b, a[:]...)
	case addr.Is4():
		a := addr.As4()
		b = append(b, AddrIPv4)
		b = append(b, a[:]...)
	default:
		b = append(b, AddrIPv4, 0, 0, 0, 0)
	}
	return binary.BigEndian.AppendUint16(b, bound.Port())
}

// AppendRequest appends a client's request to b, the inverse of
// ReadRequest (for tests and clients). Host is written as an address when
// it parses as one, else as a name.
func AppendRequest(b []byte, req Request) []byte {
	b = append(b, Version, req.Command, 0x00)
	if addr, err := netip.ParseAddr(req.Host); err == nil && req.AddrType != AddrDomain {
		if addr.Is4() {
			a := addr.As4()
			b = append(b, AddrIPv4)
			b = append(b, a[:]...)
		} else {
			a := addr.As16()
			b = append(b, AddrIPv6)
			b = append(b, a[:]...)
		}
	} else {
		b = append(b, AddrDomain, byte(len(req.Host)))
		b = append(b, req.Host...)
	}
	return binary.BigEndian.AppendUint16(b, req.Port)
}

func readString(r io.Reader, n int) (string, error) {
	if n == 0 {
		return "", nil
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return "", unexpected(err)
	}
	return string(buf), nil
}

// unexpected turns an EOF in the middle of a message into
// io.ErrUnexpectedEOF: the client stopped halfway.
func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
