package socks5

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"testing"
)

// requestCases are wire bytes and what they mean, shared by the reader
// and writer tests.
var requestCases = []struct {
	name string
	wire []byte
	want Request
}{
	{"ipv4", []byte{5, 1, 0, 1, 127, 0, 0, 1, 0x01, 0xbb},
		Request{Command: CommandConnect, AddrType: AddrIPv4, Host: "127.0.0.1", Port: 443}},
	{"ipv6", append(append([]byte{5, 1, 0, 4}, netip.MustParseAddr("2001:db8::7").AsSlice()...), 0x1f, 0x90),
		Request{Command: CommandConnect, AddrType: AddrIPv6, Host: "2001:db8::7", Port: 8080}},
	{"domain", append(append([]byte{5, 1, 0, 3, 11}, "example.com"...), 0, 80),
		Request{Command: CommandConnect, AddrType: AddrDomain, Host: "example.com", Port: 80}},
	{"bind", []byte{5, 2, 0, 1, 10, 0, 0, 1, 0, 21},
		Request{Command: CommandBind, AddrType: AddrIPv4, Host: "10.0.0.1", Port: 21}},
}

func TestReadRequest(t *testing.T) {
	for _, tc := range requestCases {
		t.Run(tc.name, func(t *testing.T) {
			r := bytes.NewReader(append(tc.wire, "rest"...))
			got, err := ReadRequest(r)
			if err != nil || got != tc.want {
				t.Fatalf("ReadRequest = %+v, %v; want %+v", got, err, tc.want)
			}
			if rest, _ := io.ReadAll(r); string(rest) != "rest" {
				t.Errorf("read past the request: %q left", rest)
			}
			if enc := AppendRequest(nil, tc.want); !bytes.Equal(enc, tc.wire) {
				t.Errorf("AppendRequest = % x, want % x", enc, tc.wire)
			}
		})
	}
}

func TestReadRequestRefusals(t *testing.T) {
	mapped := append(append([]byte{5, 1, 0, 4}, netip.MustParseAddr("::ffff:10.1.2.3").AsSlice()...), 0, 80)
	if req, err := ReadRequest(bytes.NewReader(mapped)); err != nil || req.Host != "10.1.2.3" {
		t.Errorf("IPv4-mapped address read as %q, %v; want 10.1.2.3 so IPv4 rules apply", req.Host, err)
	}
	for _, tc := range []struct {
		name  string
		wire  []byte
		reply Reply // 0: not a RequestError
	}{
		{"unknown address type", []byte{5, 1, 0, 9, 1, 2, 3, 4, 0, 80}, ReplyAddressNotSupported},
		{"wrong version", []byte{4, 1, 0, 1, 1, 2, 3, 4, 0, 80}, ReplyGeneralFailure},
		{"name with colon", append(append([]byte{5, 1, 0, 3, 6}, "a:b:cd"...), 0, 80), ReplyGeneralFailure},
		{"name with space", append(append([]byte{5, 1, 0, 3, 3}, "a b"...), 0, 80), ReplyGeneralFailure},
		{"empty name", []byte{5, 1, 0, 3, 0, 0, 80}, ReplyGeneralFailure},
		{"cut in address", []byte{5, 1, 0, 1, 127, 0}, 0},
		{"cut in port", []byte{5, 1, 0, 1, 127, 0, 0, 1, 0}, 0},
		{"cut in name", []byte{5, 1, 0, 3, 10, 'a'}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadRequest(bytes.NewReader(tc.wire))
			var re *RequestError
			switch {
			case err == nil:
				t.Fatal("accepted")
			case tc.reply != 0 && (!errors.As(err, &re) || re.Reply != tc.reply):
				t.Fatalf("error %v, want a RequestError with %v", err, tc.reply)
			case tc.reply == 0 && !errors.Is(err, io.ErrUnexpectedEOF):
				t.Fatalf("error %v, want an unexpected EOF", err)
			}
		})
	}
}

func TestReadGreeting(t *testing.T) {
	methods, err := ReadGreeting(bytes.NewReader([]byte{5, 2, MethodNoAuth, MethodUserPass}))
	if err != nil || !bytes.Equal(methods, []byte{MethodNoAuth, MethodUserPass}) {
		t.Fatalf("methods % x, %v", methods, err)
	}
	var ve *VersionError
	if _, err := ReadGreeting(bytes.NewReader([]byte("GET / HTTP/1.1\r\n"))); !errors.As(err, &ve) || ve.Got != 'G' {
		t.Errorf("HTTP on the SOCKS port: %v", err)
	}
	if _, err := ReadGreeting(bytes.NewReader([]byte{5, 0})); !errors.Is(err, ErrNoMethods) {
		t.Errorf("no methods: %v", err)
	}
	if _, err := ReadGreeting(bytes.NewReader([]byte{5, 3, 0})); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("cut greeting: %v", err)
	}
	if _, err := ReadGreeting(bytes.NewReader(nil)); !errors.Is(err, io.EOF) {
		t.Errorf("nothing sent: %v, want io.EOF (a client that went away, not a broken one)", err)
	}
}

func TestUserPass(t *testing.T) {
	wire := append(append(append([]byte{1, 5}, "alice"...), 6), "s3cret"...)
	user, pass, err := ReadUserPass(bytes.NewReader(wire))
	if err != nil || user != "alice" || pass != "s3cret" {
		t.Fatalf("ReadUserPass = %q %q %v", user, pass, err)
	}
	if _, _, err := ReadUserPass(bytes.NewReader([]byte{5, 1, 'a', 0})); err == nil {
		t.Error("wrong sub-negotiation version accepted")
	}
	var out bytes.Buffer
	_ = WriteUserPassStatus(&out, true)
	_ = WriteUserPassStatus(&out, false)
	if !bytes.Equal(out.Bytes(), []byte{1, 0, 1, 1}) {
		t.Errorf("status bytes % x", out.Bytes())
	}
}

func TestAppendReply(t *testing.T) {
	for _, tc := range []struct {
		rep   Reply
		bound netip.AddrPort
		want  []byte
	}{
		{ReplySucceeded, netip.MustParseAddrPort("127.0.0.1:40000"), []byte{5, 0, 0, 1, 127, 0, 0, 1, 0x9c, 0x40}},
		{ReplySucceeded, netip.MustParseAddrPort("[::ffff:127.0.0.1]:1"), []byte{5, 0, 0, 1, 127, 0, 0, 1, 0, 1}},
		{ReplySucceeded, netip.MustParseAddrPort("[::1]:2"), append(append([]byte{5, 0, 0, 4}, netip.IPv6Loopback().AsSlice()...), 0, 2)},
		{ReplyNotAllowed, netip.AddrPort{}, []byte{5, 2, 0, 1, 0, 0, 0, 0, 0, 0}},
	} {
		if got := AppendReply(nil, tc.rep, tc.bound); !bytes.Equal(got, tc.want) {
			t.Errorf("%v %v: % x, want % x", tc.rep, tc.bound, got, tc.want)
		}
	}
	if ReplyTTLExpired.String() != "TTL expired" || Reply(0x42).String() != "reply 0x42" {
		t.Error("reply names")
	}
}

// FuzzHandshake feeds arbitrary bytes through the whole server-side
// sequence. Nothing may panic, nothing may be read past the request, and a
// request read must encode back to the bytes it came from (for a name, up
// to the address type for names and IPv4-mapped addresses).
func FuzzHandshake(f *testing.F) {
	for _, tc := range requestCases {
		f.Add(append([]byte{5, 1, 0}, tc.wire...))
	}
	f.Add(append([]byte{5, 1, 2, 1, 1, 'u', 1, 'p'}, requestCases[0].wire...))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		methods, err := ReadGreeting(r)
		if err != nil {
			return
		}
		if bytes.IndexByte(methods, MethodUserPass) >= 0 && bytes.IndexByte(methods, MethodNoAuth) < 0 {
			if _, _, err := ReadUserPass(r); err != nil {
				return
			}
		}
		start := len(data) - r.Len()
		req, err := ReadRequest(r)
		if err != nil {
			return
		}
		used := data[start : len(data)-r.Len()]
		enc := AppendRequest(nil, req)
		used = append([]byte(nil), used...)
		used[2] = 0 // RSV: ignored as read, written as 0
		mapped := req.AddrType == AddrIPv6 && netip.MustParseAddr(req.Host).Is4()
		if req.AddrType != AddrDomain && !mapped && !bytes.Equal(enc, used) {
			t.Fatalf("request % x read as %+v, encodes back as % x", used, req, enc)
		}
		if req.AddrType == AddrDomain {
			if checkName(req.Host) != "" {
				t.Fatalf("name %q accepted", req.Host)
			}
			if again, err := ReadRequest(bytes.NewReader(enc)); err != nil || again.Host != req.Host || again.Port != req.Port {
				t.Fatalf("request %+v encodes as % x, reads back as %+v, %v", req, enc, again, err)
			}
		}
	})
}
