package mitm

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
)

// UpstreamConfig returns the TLS configuration for connections to
// destinations: the system roots plus extraRootsPEM (PEM certificates,
// may be nil), verified unless insecure is set. insecure lets anyone on
// the path read and change the traffic; hopscope reports it at start.
func UpstreamConfig(extraRootsPEM []byte, insecure bool) (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: insecure}
	if len(extraRootsPEM) == 0 {
		return conf, nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(extraRootsPEM) {
		return nil, fmt.Errorf("no PEM certificate found among the extra roots")
	}
	conf.RootCAs = pool
	return conf, nil
}
