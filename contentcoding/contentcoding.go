// Package contentcoding undoes HTTP content codings (RFC 9110 §8.4) for
// inspection: gzip, deflate, br and zstd. hopscope never changes a body on
// the wire; this is for the people and tools looking at one (search in the
// flow store, HAR content.text, the web UI).
package contentcoding

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
)

// Identity reports whether encoding (a Content-Encoding value) leaves the
// body as it is.
func Identity(encoding string) bool {
	for _, c := range strings.Split(encoding, ",") {
		if c := strings.ToLower(strings.TrimSpace(c)); c != "" && c != "identity" {
			return false
		}
	}
	return true
}

// Decode undoes encoding, a Content-Encoding value: a list of codings
// applied in order, so undone last first. It never returns more than limit
// bytes (a bomb expands a small body a thousandfold). A body cut short (a
// store keeps only its start) decodes as far as it goes: complete is false
// then, and what came out is returned with a nil error. An unknown coding
// or a body that is not what its coding says is an error.
func Decode(data []byte, encoding string, limit int) (out []byte, complete bool, err error) {
	codings := strings.Split(encoding, ",")
	out, complete = data, true
	for i := len(codings) - 1; i >= 0; i-- {
		c := strings.ToLower(strings.TrimSpace(codings[i]))
		if c == "" || c == "identity" {
			continue
		}
		r, closeFn, err := reader(c, out)
		if err != nil {
			return nil, false, err
		}
		var buf bytes.Buffer
		_, err = io.Copy(&buf, io.LimitReader(r, int64(limit)+1))
		closeFn()
		switch {
		case buf.Len() > limit:
			return buf.Bytes()[:limit], false, nil
		case err != nil && (errors.Is(err, io.ErrUnexpectedEOF) || buf.Len() > 0):
			complete = false // cut short: what there is
		case err != nil:
			return nil, false, fmt.Errorf("decoding %s: %w", c, err)
		}
		out = buf.Bytes()
	}
	return out, complete, nil
}

func reader(coding string, data []byte) (io.Reader, func(), error) {
	src := bytes.NewReader(data)
	switch coding {
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(src)
		if err != nil {
			return nil, nil, fmt.Errorf("decoding gzip: %w", err)
		}
		return zr, func() {}, nil
	case "deflate":
		// RFC 9110 says zlib-wrapped; servers send raw deflate too.
		if zr, err := zlib.NewReader(src); err == nil {
			return zr, func() {}, nil
		}
		return flate.NewReader(bytes.NewReader(data)), func() {}, nil
	case "br":
		return brotli.NewReader(src), func() {}, nil
	case "zstd":
		zr, err := zstd.NewReader(src, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(64<<20))
		if err != nil {
			return nil, nil, fmt.Errorf("decoding zstd: %w", err)
		}
		return zr, zr.Close, nil
	}
	return nil, nil, fmt.Errorf("content coding %q is not one hopscope decodes (gzip, deflate, br, zstd)", coding)
}
