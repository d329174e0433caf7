package reliability

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
)

// hopscopeBin is the command, built once for the tests that run it as a
// process of its own (signals, the soak's memory figures).
var hopscopeBin string

// TestMain builds the command and fails the package if any test leaves a
// goroutine behind.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hopscope-reliability")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	hopscopeBin = filepath.Join(dir, "hopscope")
	build := exec.Command("go", "build", "-o", hopscopeBin, "github.com/hopscope/hopscope/cmd/hopscope")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		fmt.Fprintln(os.Stderr, "reliability: building hopscope:", err)
		os.Exit(1)
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		os.RemoveAll(dir)
		os.Exit(code)
	}))
}
