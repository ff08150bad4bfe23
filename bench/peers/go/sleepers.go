// SPDX-License-Identifier: MIT
// sleepers: 100,000 goroutines each sleep a pseudo-random 1-100 ms
// (time.Sleep), then call wg.Done(); Go side of bench/sleepers_bench.cpp,
// with GOMAXPROCS as given (the runner: 2). The durations come from the same
// fixed-seed LCG as goro's, so both sleep the same multiset.
//
//	sleepers_total      from the first `go` until the last sleeper finished
//	sleepers_overshoot  total - the longest sleep
//	sleepers_spawn      the spawn loop alone
//
// Output: one line per measurement, `name value unit`.
package main

import (
	"fmt"
	"sync"
	"time"
)

const n = 100_000

// sleepMs: x = x*6364136223846793005 + 1442695040888963407 (mod 2^64),
// sleep = 1 + (x>>33)%100 ms, seed 42 (bench/sleepers_bench.cpp).
func sleepMs(count int) []int {
	out := make([]int, count)
	x := uint64(42)
	for i := range out {
		x = x*6364136223846793005 + 1442695040888963407
		out[i] = 1 + int((x>>33)%100)
	}
	return out
}

func main() {
	sleeps := sleepMs(n)
	longest := 0
	for _, ms := range sleeps {
		if ms > longest {
			longest = ms
		}
	}
	resetPeakRSS()
	var wg sync.WaitGroup
	wg.Add(n)
	start := time.Now()
	for _, ms := range sleeps {
		go func(d time.Duration) {
			time.Sleep(d)
			wg.Done()
		}(time.Duration(ms) * time.Millisecond)
	}
	spawn := time.Since(start)
	wg.Wait()
	total := time.Since(start)
	toMs := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }
	fmt.Printf("sleepers_total %.2f ms\n", toMs(total))
	fmt.Printf("sleepers_overshoot %.2f ms\n", toMs(total)-float64(longest))
	fmt.Printf("sleepers_spawn %.2f ms\n", toMs(spawn))
	fmt.Printf("sleepers_peak_rss %.1f MiB\n", statusKiB("VmHWM")/1024)
}
