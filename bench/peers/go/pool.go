// SPDX-License-Identifier: MIT
// pool: 1,000,000 tasks through 1,000 worker goroutines reading a channel of
// capacity 2,000, Go side of bench/pool_bench.cpp, with GOMAXPROCS as given
// (the runner: 2). Each task adds its number to a shared atomic sum (checked).
// The time covers starting the workers, sending every task, closing the
// channel and waiting for the workers. After a warm-up run of a tenth of the
// size.
// Output: one line per measurement, `name value unit`.
package main

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

const (
	tasks   = 1_000_000
	workers = 1_000
	queue   = 2_000
)

func pool(n int64) (int64, time.Duration) {
	var sum int64
	start := time.Now()
	q := make(chan int64, queue)
	var wg sync.WaitGroup
	wg.Add(workers)
	for w := 0; w < workers; w++ {
		go func() {
			for v := range q {
				atomic.AddInt64(&sum, v)
			}
			wg.Done()
		}()
	}
	for i := int64(0); i < n; i++ {
		q <- i
	}
	close(q)
	wg.Wait()
	return atomic.LoadInt64(&sum), time.Since(start)
}

func main() {
	pool(tasks / 10)
	resetPeakRSS()
	sum, d := pool(tasks)
	if sum != tasks*(tasks-1)/2 {
		fmt.Fprintf(os.Stderr, "pool: wrong sum %d\n", sum)
		os.Exit(1)
	}
	fmt.Printf("pool %.2f ns/task\n", float64(d.Nanoseconds())/tasks)
	fmt.Printf("pool_ms %.2f ms\n", float64(d.Nanoseconds())/1e6)
	fmt.Printf("pool_peak_rss %.1f MiB\n", statusKiB("VmHWM")/1024)
}
