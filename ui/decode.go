package ui

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

// maxDecoded bounds what one body expands to for viewing: a kept body is
// at most the store's item cap, but a bomb expands that a thousandfold.
const maxDecoded = 32 << 20

// decodeBody undoes a Content-Encoding (a list, applied in order, so
// undone last first) for viewing. A body the store cut short decodes as
// far as it goes: complete is false then, and what came out is returned.
func decodeBody(data []byte, encoding string) (out []byte, complete bool, err error) {
	codings := strings.Split(encoding, ",")
	out, complete = data, true
	for i := len(codings) - 1; i >= 0; i-- {
		c := strings.ToLower(strings.TrimSpace(codings[i]))
		var r io.Reader
		src := bytes.NewReader(out)
		switch c {
		case "", "identity":
			continue
		case "gzip", "x-gzip":
			zr, err := gzip.NewReader(src)
			if err != nil {
				return nil, false, fmt.Errorf("gzip: %w", err)
			}
			r = zr
		case "deflate":
			// RFC 9110 says zlib, but servers send raw deflate too.
			if zr, err := zlib.NewReader(src); err == nil {
				r = zr
			} else {
				r = flate.NewReader(bytes.NewReader(out))
			}
		case "br":
			r = brotli.NewReader(src)
		case "zstd":
			zr, err := zstd.NewReader(src, zstd.WithDecoderMaxMemory(maxDecoded), zstd.WithDecoderConcurrency(1))
			if err != nil {
				return nil, false, fmt.Errorf("zstd: %w", err)
			}
			defer zr.Close()
			r = zr
		default:
			return nil, false, fmt.Errorf("content coding %q is not one hopscope decodes", c)
		}
		var buf bytes.Buffer
		_, err := io.Copy(&buf, io.LimitReader(r, maxDecoded+1))
		if buf.Len() > maxDecoded {
			return buf.Bytes()[:maxDecoded], false, nil
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || buf.Len() > 0 {
				// Cut short: show what there is.
				complete = false
			} else {
				return nil, false, fmt.Errorf("%s: %w", c, err)
			}
		}
		out = buf.Bytes()
	}
	return out, complete, nil
}
