package main

import (
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
)

// gcPercent is keyway's default GOGC. A proxy's live heap is small (about
// 15 MiB under load) and nearly all of its garbage is per-request: at 200
// the collector runs half as often for a heap goal that is still small,
// and scripts/bench-proxy.sh measured 6-12 % more requests a second on an
// api_key route (CPU 45 against 51 us a request). docs/performance.md.
const gcPercent = 200

// runtimeSettings is what tuneRuntime chose, for the start-up log.
type runtimeSettings struct {
	GOGC       string
	MemLimit   string
	GOMAXPROCS int
}

// tuneRuntime sets keyway's garbage-collector defaults where the
// environment does not: GOGC, and a soft memory limit of 90 % of the
// cgroup's memory.max (a container's limit), so that a lazier collector
// never walks the process into the OOM killer. GOGC and GOMEMLIMIT, when
// set, win: the runtime has already read them.
func tuneRuntime(getenv func(string) string, memoryMax string) runtimeSettings {
	s := runtimeSettings{GOGC: getenv("GOGC"), MemLimit: getenv("GOMEMLIMIT"), GOMAXPROCS: runtime.GOMAXPROCS(0)}
	if s.GOGC == "" {
		debug.SetGCPercent(gcPercent)
		s.GOGC = strconv.Itoa(gcPercent) + " (keyway's default)"
	}
	if s.MemLimit == "" {
		if limit, ok := cgroupLimit(memoryMax); ok {
			debug.SetMemoryLimit(limit / 10 * 9)
			s.MemLimit = strconv.FormatInt(limit/10*9>>20, 10) + " MiB (90% of the cgroup's memory.max)"
		} else {
			s.MemLimit = "none"
		}
	}
	return s
}

// cgroupLimit reads a cgroup v2 memory.max file: a byte count, or "max"
// (no limit).
func cgroupLimit(path string) (int64, bool) {
	b, err := os.ReadFile(path) //nolint:gosec // a fixed path under /sys, or a test's file
	if err != nil {
		return 0, false
	}
	v := strings.TrimSpace(string(b))
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 || n == math.MaxInt64 {
		return 0, false
	}
	return n, true
}
