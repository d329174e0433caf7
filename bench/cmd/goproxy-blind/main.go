// Command goproxy-blind is the yardstick `hopscope bench --compare` measures
// hopscope against: goproxy as its README sets it up, with nothing added.
// Plain, it forwards requests and splices every CONNECT without looking;
// with --mitm it bumps every CONNECT with goproxy's built-in CA and relays
// WebSockets as raw bytes. It is a benchmark helper, never part of the
// hopscope binary.
//
//	go run ./bench/cmd/goproxy-blind --listen 127.0.0.1:3128 &
//	go run ./bench/cmd/goproxy-blind --listen 127.0.0.1:3129 --mitm --insecure-upstream \
//	    --ca-out /tmp/goproxy-ca.pem &
//	go run ./cmd/hopscope bench --compare goproxy=127.0.0.1:3128 \
//	    --compare goproxy-mitm=127.0.0.1:3129 --compare-ca goproxy-mitm=/tmp/goproxy-ca.pem
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"

	"github.com/elazarl/goproxy"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:3128", "address to listen on (loopback)")
	mitm := flag.Bool("mitm", false, "bump every CONNECT with goproxy's built-in CA")
	caOut := flag.String("ca-out", "", "with --mitm: write goproxy's CA certificate (PEM) to this file, for --compare-ca")
	insecure := flag.Bool("insecure-upstream", false, "with --mitm: do not verify destinations' certificates (hopscope bench's origins use a private root made per run)")
	verbose := flag.Bool("verbose", false, "log what goproxy does to standard error")
	flag.Parse()

	px := goproxy.NewProxyHttpServer()
	px.Logger = log.New(io.Discard, "", 0)
	if *verbose {
		px.Verbose, px.Logger = true, log.New(os.Stderr, "goproxy: ", log.LstdFlags)
	}
	if *mitm {
		px.OnRequest().HandleConnect(goproxy.AlwaysMitm)
		if *insecure {
			px.Tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
		}
		if *caOut != "" {
			if err := os.WriteFile(*caOut, goproxy.CA_CERT, 0o644); err != nil {
				log.Fatalf("goproxy-blind: writing the CA: %v", err)
			}
		}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("goproxy-blind: %v", err)
	}
	fmt.Printf("goproxy-blind listening on %s (mitm %v)\n", ln.Addr(), *mitm)
	srv := &http.Server{Handler: px, ErrorLog: log.New(io.Discard, "", 0)}
	log.Fatal(srv.Serve(ln))
}
