// SPDX-License-Identifier: MIT
// pingpong: unbuffered channel ping-pong, Go side of
// bench/pingpong_bench.cpp. One goroutine sends i on ping and waits for it
// back on pong; the other receives on ping and sends it back on pong.
// 1,000,000 round trips, measured with GOMAXPROCS=1 (pingpong_w1) and
// GOMAXPROCS=2 (pingpong_w2), each after a warm-up run of a tenth of the size.
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

const n = 1_000_000 // round trips per measurement

func roundTrips(count int) time.Duration {
	ping, pong := make(chan int), make(chan int)
	var wg sync.WaitGroup
	wg.Add(2)
	start := time.Now()
	go func() {
		for i := 0; i < count; i++ {
			ping <- i
			<-pong
		}
		wg.Done()
	}()
	go func() {
		for i := 0; i < count; i++ {
			pong <- <-ping
		}
		wg.Done()
	}()
	wg.Wait()
	return time.Since(start)
}

func main() {
	for _, procs := range []int{1, 2} {
		runtime.GOMAXPROCS(procs)
		roundTrips(n / 10)
		resetPeakRSS()
		d := roundTrips(n)
		name := fmt.Sprintf("pingpong_w%d", procs)
		fmt.Printf("%s %.2f ns/round_trip\n", name, float64(d.Nanoseconds())/float64(n))
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
