// SPDX-License-Identifier: MIT
// spawn: spawn + join of 1,000,000 trivial goroutines, Go side of
// bench/spawn_bench.cpp. wg.Add(n), n × `go func() { wg.Done() }()`,
// wg.Wait(). Measured with GOMAXPROCS=1 (spawn_w1) and GOMAXPROCS=2
// (spawn_w2), each after a warm-up run of a tenth of the size.
// Output: one line per measurement, `name value unit`.
package main

import (
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

func main() { perProcs("spawn", "ns/fiber", n, 1, spawnJoin) }
