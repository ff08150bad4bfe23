// SPDX-License-Identifier: MIT
// switch: yield ping-pong, Go side of bench/switch_bench.cpp. Two goroutines
// each call runtime.Gosched() k times; one switch = one Gosched. Measured
// with GOMAXPROCS=1 (switch_w1) and GOMAXPROCS=2 (switch_w2), after a
// warm-up run of a tenth of the size.
// Output: one line per measurement, `name value unit`.
package main

import (
	"runtime"
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

func main() { perProcs("switch", "ns/switch", k, 2, pingPong) }
