// SPDX-License-Identifier: MIT
// Helpers every Go peer shares; bench/run.sh builds each peer as
// `go build <workload>.go peer_support.go` (package main).
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// perProcs measures run(size) with GOMAXPROCS=1 and then 2, each after a
// warm-up run of a tenth of the size, and prints `<prefix>_w<P> <ns per
// item> <unit>` (size * itemsPerRun items) and `<prefix>_w<P>_peak_rss`.
func perProcs(prefix, unit string, size, itemsPerRun int, run func(count int) time.Duration) {
	for _, procs := range []int{1, 2} {
		runtime.GOMAXPROCS(procs)
		run(size / 10)
		resetPeakRSS()
		d := run(size)
		name := fmt.Sprintf("%s_w%d", prefix, procs)
		fmt.Printf("%s %.2f %s\n", name, float64(d.Nanoseconds())/float64(size*itemsPerRun), unit)
		fmt.Printf("%s_peak_rss %.1f MiB\n", name, statusKiB("VmHWM")/1024)
	}
}

// statusKiB returns a line of /proc/self/status (VmRSS, VmHWM, ...) in KiB.
func statusKiB(key string) float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		if strings.HasPrefix(line, key+":") {
			fields := strings.Fields(line[len(key)+1:]) // "   1234 kB"
			if len(fields) > 0 {
				v, _ := strconv.ParseFloat(fields[0], 64)
				return v
			}
		}
	}
	return -1
}

// resetPeakRSS sets VmHWM back to the current RSS (Linux >= 4.0).
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }
