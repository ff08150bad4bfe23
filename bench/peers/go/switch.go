// SPDX-License-Identifier: MIT
// switch: yield ping-pong, Go side of bench/switch_bench.cpp. Two goroutines
// each call runtime.Gosched() k times; one switch = one Gosched. Measured
// with GOMAXPROCS=1 (switch_w1) and GOMAXPROCS=2 (switch_w2), after a
// warm-up run of a tenth of the size.
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

const k = 1_000_000 // Gosched calls per goroutine

func pingPong(n int) time.Duration {
	var wg sync.WaitGroup
	wg.Add(2)
	start := time.Now()
	for f := 0; f < 2; f++ {
		go func() {
			for i := 0; i < n; i++ {
				runtime.Gosched()
			}
			wg.Done()
		}()
	}
	wg.Wait()
	return time.Since(start)
}

func main() {
	for _, procs := range []int{1, 2} {
		runtime.GOMAXPROCS(procs)
		pingPong(k / 10)
		resetPeakRSS()
		d := pingPong(k)
		name := fmt.Sprintf("switch_w%d", procs)
		fmt.Printf("%s %.2f ns/switch\n", name, float64(d.Nanoseconds())/float64(2*k))
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
