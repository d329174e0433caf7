package contentcoding

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"io"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
)

func encode(t *testing.T, coding string, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.WriteCloser
	switch coding {
	case "gzip":
		w = gzip.NewWriter(&buf)
	case "deflate":
		w = zlib.NewWriter(&buf)
	case "raw-deflate":
		w, _ = flate.NewWriter(&buf, flate.DefaultCompression)
	case "br":
		w = brotli.NewWriter(&buf)
	case "zstd":
		zw, err := zstd.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		w = zw
	}
	w.Write(data)
	w.Close()
	return buf.Bytes()
}

func TestDecode(t *testing.T) {
	text := []byte(strings.Repeat(`{"user":"ada","ok":true}`, 200))
	for _, tc := range []struct{ coding, header string }{
		{"gzip", "gzip"}, {"gzip", "X-Gzip"}, {"deflate", "deflate"}, {"raw-deflate", "deflate"}, {"br", "br"}, {"zstd", "zstd"},
	} {
		out, complete, err := Decode(encode(t, tc.coding, text), tc.header, 1<<20)
		if err != nil || !complete || !bytes.Equal(out, text) {
			t.Errorf("%s as %q: complete=%v err=%v, %d bytes", tc.coding, tc.header, complete, err, len(out))
		}
	}
	// A list is undone last first.
	both := encode(t, "br", encode(t, "gzip", text))
	if out, complete, err := Decode(both, "gzip, br", 1<<20); err != nil || !complete || !bytes.Equal(out, text) {
		t.Errorf("gzip, br: complete=%v err=%v", complete, err)
	}
	if out, complete, err := Decode(text, "identity", 10); err != nil || !complete || !bytes.Equal(out, text) {
		t.Errorf("identity changed the body: %v %v", complete, err)
	}
}

func TestDecodeCutBombAndUnknown(t *testing.T) {
	text := []byte(strings.Repeat("abcdefghij", 10_000))
	gz := encode(t, "gzip", text)
	out, complete, err := Decode(gz[:len(gz)/2], "gzip", 1<<20)
	if err != nil || complete || len(out) == 0 || !bytes.HasPrefix(text, out) {
		t.Errorf("cut body: %d bytes, complete=%v, err=%v", len(out), complete, err)
	}
	bomb := encode(t, "gzip", make([]byte, 10<<20))
	out, complete, err = Decode(bomb, "gzip", 4096)
	if err != nil || complete || len(out) != 4096 {
		t.Errorf("bomb: %d bytes, complete=%v, err=%v", len(out), complete, err)
	}
	if _, _, err := Decode(text, "compress", 100); err == nil || !strings.Contains(err.Error(), `"compress"`) {
		t.Errorf("unknown coding: %v", err)
	}
	if _, _, err := Decode([]byte("not gzip"), "gzip", 100); err == nil {
		t.Error("a body that is not gzip decoded")
	}
	if !Identity("") || !Identity("identity") || Identity("gzip") || Identity("identity, br") {
		t.Error("Identity")
	}
}
