// SPDX-License-Identifier: MIT
// mpmc: a buffered channel (capacity 1024) shared by 4 producers and 4
// consumers, 10,000,000 ints in all, Go side of bench/mpmc_bench.cpp, with
// GOMAXPROCS as given (the runner: 2). The channel is closed once every
// producer is done; consumers range over it and the total is checked. After
// a warm-up run of a tenth of the size.
// Output: one line per measurement, `name value unit` (mpmc in Mops/s).
package main

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

const (
	items     = 10_000_000
	producers = 4
	consumers = 4
	capacity  = 1024
)

func mpmc(n int64) (int64, time.Duration) {
	c := make(chan int64, capacity)
	var prod, cons sync.WaitGroup
	var total int64
	per := n / producers
	prod.Add(producers)
	cons.Add(consumers)
	start := time.Now()
	for p := int64(0); p < producers; p++ {
		go func(first int64) {
			for i := first; i < first+per; i++ {
				c <- i
			}
			prod.Done()
		}(p * per)
	}
	for q := 0; q < consumers; q++ {
		go func() {
			var sum int64
			for v := range c {
				sum += v
			}
			atomic.AddInt64(&total, sum)
			cons.Done()
		}()
	}
	prod.Wait()
	close(c)
	cons.Wait()
	return atomic.LoadInt64(&total), time.Since(start)
}

func main() {
	mpmc(items / 10)
	resetPeakRSS()
	sum, d := mpmc(items)
	if sum != items*(items-1)/2 {
		fmt.Fprintf(os.Stderr, "mpmc: wrong sum %d\n", sum)
		os.Exit(1)
	}
	fmt.Printf("mpmc %.3f Mops/s\n", float64(items)/d.Seconds()/1e6)
	fmt.Printf("mpmc_ms %.2f ms\n", float64(d.Nanoseconds())/1e6)
	fmt.Printf("mpmc_peak_rss %.1f MiB\n", statusKiB("VmHWM")/1024)
}
