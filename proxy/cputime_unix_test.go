//go:build unix

package proxy

import (
	"syscall"
	"time"
)

// cpuTime is the CPU time the process has used, all threads together, so
// a benchmark can count work done on other goroutines (an observer's) and
// not count time the machine gave to other processes.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
