package proxy_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: every
// relay, tunnel and connection must end with the exchange it served.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
