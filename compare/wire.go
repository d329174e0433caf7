package compare

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Field is one header line as it was on the wire: the name keeps its case,
// and a message's fields keep their order.
type Field struct {
	Name  string
	Value string
}

// maxHead bounds a message head read by the probes and the origin, so a
// misbehaving peer cannot make a probe hold unbounded memory.
const maxHead = 256 << 10

// maxBody bounds a body a probe keeps.
const maxBody = 1 << 20

// message is a parsed HTTP/1.x head: the start line and the fields.
type message struct {
	start  string
	fields []Field
}

// get returns the first value of the field named name, compared without
// case as HTTP field names are.
func (m message) get(name string) (string, bool) {
	for _, f := range m.fields {
		if strings.EqualFold(f.Name, name) {
			return f.Value, true
		}
	}
	return "", false
}

// has reports whether the comma-separated values of the field name contain
// token, compared without case.
func (m message) has(name, token string) bool {
	for _, f := range m.fields {
		if !strings.EqualFold(f.Name, name) {
			continue
		}
		for _, v := range strings.Split(f.Value, ",") {
			if strings.EqualFold(strings.TrimSpace(v), token) {
				return true
			}
		}
	}
	return false
}

var errHeadTooLarge = errors.New("message head larger than 256 KiB")

// readHead reads a start line and header fields up to the empty line,
// without canonicalising anything.
func readHead(br *bufio.Reader) (message, error) {
	var m message
	total := 0
	for first := true; ; first = false {
		line, err := br.ReadString('\n')
		total += len(line)
		if total > maxHead {
			return m, errHeadTooLarge
		}
		if err != nil {
			if first && line == "" {
				return m, err
			}
			return m, fmt.Errorf("reading a message head: %w", noEOF(err))
		}
		line = strings.TrimRight(line, "\r\n")
		if first {
			m.start = line
			continue
		}
		if line == "" {
			return m, nil
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			m.fields = append(m.fields, Field{Name: line})
			continue
		}
		m.fields = append(m.fields, Field{Name: name, Value: strings.TrimSpace(value)})
	}
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// body is a message body as it was framed.
type body struct {
	framing  string // "none", "length N", "chunked", "until close"
	data     []byte
	trailers []Field
}

// readBody reads a body framed as m says; untilClose says whether a body
// without framing runs to the end of the connection (answers) or is empty
// (requests).
func readBody(br *bufio.Reader, m message, untilClose bool) (body, error) {
	if m.has("Transfer-Encoding", "chunked") {
		return readChunked(br)
	}
	if v, ok := m.get("Content-Length"); ok {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || n < 0 || n > maxBody {
			return body{framing: "length " + v}, fmt.Errorf("unusable Content-Length %q", v)
		}
		data := make([]byte, n)
		_, err = io.ReadFull(br, data)
		return body{framing: "length " + strconv.FormatInt(n, 10), data: data}, noEOF(err)
	}
	if !untilClose {
		return body{framing: "none"}, nil
	}
	data, err := io.ReadAll(io.LimitReader(br, maxBody))
	return body{framing: "until close", data: data}, err
}

func readChunked(br *bufio.Reader) (body, error) {
	b := body{framing: "chunked"}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return b, noEOF(err)
		}
		sizeText, _, _ := strings.Cut(strings.TrimSpace(line), ";")
		size, err := strconv.ParseInt(sizeText, 16, 64)
		if err != nil || size < 0 || int64(len(b.data))+size > maxBody {
			return b, fmt.Errorf("bad chunk size %q", sizeText)
		}
		if size == 0 {
			break
		}
		chunk := make([]byte, size+2)
		if _, err := io.ReadFull(br, chunk); err != nil {
			return b, noEOF(err)
		}
		b.data = append(b.data, chunk[:size]...)
	}
	trailer, err := readFields(br)
	b.trailers = trailer
	return b, err
}

// readFields reads trailer fields up to the empty line.
func readFields(br *bufio.Reader) ([]Field, error) {
	var fields []Field
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return fields, noEOF(err)
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			return fields, nil
		}
		name, value, _ := strings.Cut(line, ":")
		fields = append(fields, Field{Name: name, Value: strings.TrimSpace(value)})
	}
}

// statusCode is the code of a status line, 0 when it has none.
func statusCode(start string) int {
	_, rest, _ := strings.Cut(start, " ")
	code, _ := strconv.Atoi(strings.TrimSpace(firstWord(rest)))
	return code
}

func firstWord(s string) string {
	w, _, _ := strings.Cut(strings.TrimSpace(s), " ")
	return w
}
