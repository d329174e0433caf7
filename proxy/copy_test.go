package proxy

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server := <-accepted
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// copyConn moves every byte, in order, over sockets (the poller path) and
// over connections without a file descriptor (the buffered path).
func TestCopyConnMovesEveryByte(t *testing.T) {
	payload := make([]byte, 3*copyBufferSize+123)
	_, _ = rand.Read(payload)
	pairs := map[string]func(*testing.T) (net.Conn, net.Conn){
		"tcp":  tcpPair,
		"pipe": func(*testing.T) (net.Conn, net.Conn) { a, b := net.Pipe(); return a, b },
	}
	for name, pair := range pairs {
		t.Run(name, func(t *testing.T) {
			writer, src := pair(t)
			go func() {
				_, _ = writer.Write(payload)
				writer.Close()
			}()
			var got bytes.Buffer
			n, err := copyConn(&got, src, newBufferPool(), nil)
			if err != nil || n != int64(len(payload)) || !bytes.Equal(got.Bytes(), payload) {
				t.Fatalf("copied %d bytes, err %v; equal %v", n, err, bytes.Equal(got.Bytes(), payload))
			}
		})
	}
}

// A read deadline on the source still ends the copy, so idle limits work.
func TestCopyConnHonoursDeadline(t *testing.T) {
	_, src := tcpPair(t)
	_ = src.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err := copyConn(io.Discard, src, newBufferPool(), nil)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("err = %v, want a deadline error", err)
	}
}

// A failing writer stops the copy with its error.
func TestCopyConnWriteError(t *testing.T) {
	writer, src := tcpPair(t)
	go func() { _, _ = writer.Write([]byte("data")) }()
	boom := errors.New("boom")
	_, err := copyConn(failingWriter{boom}, src, newBufferPool(), nil)
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
}

type failingWriter struct{ err error }

func (w failingWriter) Write([]byte) (int, error) { return 0, w.err }
