// SPDX-License-Identifier: MIT
// spawn: spawn + join of 1,000,000 trivial goroutines, Go side of
// bench/spawn_bench.cpp. wg.Add(n), n × `go func() { wg.Done() }()`,
// wg.Wait(). Measured with GOMAXPROCS=1 (spawn_w1) and GOMAXPROCS=2
// (spawn_w2), each after a warm-up run of a tenth of the size.
// Output: one line per measurement, `name value unit`.
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

const n = 1_000_000 // goroutines per measurement

func spawnJoin(count int) time.Duration {
	var wg sync.WaitGroup
	wg.Add(count)
	start := time.Now()
	for i := 0; i < count; i++ {
		go func() { wg.Done() }()
	}
	wg.Wait()
	return time.Since(start)
}

func main() {
	for _, procs := range []int{1, 2} {
		runtime.GOMAXPROCS(procs)
		spawnJoin(n / 10)
		resetPeakRSS()
		d := spawnJoin(n)
		name := fmt.Sprintf("spawn_w%d", procs)
		fmt.Printf("%s %.2f ns/fiber\n", name, float64(d.Nanoseconds())/float64(n))
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
