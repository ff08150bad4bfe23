// SPDX-License-Identifier: MIT
// skynet: 1,000,000 leaves in a 10-ary tree (1,111,111 goroutines), Go side of
// bench/skynet_bench.cpp, with GOMAXPROCS as given (run_peers.sh: 2).
//
//	skynet     the classic form (github.com/atemerev/skynet): each node sends
//	           its sum to its parent over an unbuffered channel
//	           (goro: BM_skynet_chan).
//	skynet_wg  children write their slot of a parent-owned [10]int and call
//	           wg.Done(); the parent wg.Wait()s and adds the slots up
//	           (goro: BM_skynet).
//
// Each after a warm-up tree of 100,000 leaves. The sum must be 499999500000.
// Output: one line per measurement, `name value unit`.
package main

import (
	"fmt"
	"os"
	"sync"
	"time"
)

const (
	leaves   = 1_000_000
	expected = 499_999_500_000
)

func skynet(c chan int, num, size int) {
	if size == 1 {
		c <- num
		return
	}
	rc := make(chan int)
	child := size / 10
	for i := 0; i < 10; i++ {
		go skynet(rc, num+i*child, child)
	}
	sum := 0
	for i := 0; i < 10; i++ {
		sum += <-rc
	}
	c <- sum
}

func skynetWG(num, size int) int {
	if size == 1 {
		return num
	}
	var results [10]int
	var wg sync.WaitGroup
	wg.Add(10)
	child := size / 10
	for i := 0; i < 10; i++ {
		go func(i int) {
			results[i] = skynetWG(num+i*child, child)
			wg.Done()
		}(i)
	}
	wg.Wait()
	sum := 0
	for _, r := range results {
		sum += r
	}
	return sum
}

func runChan(size int) (int, time.Duration) {
	start := time.Now()
	c := make(chan int)
	go skynet(c, 0, size)
	r := <-c
	return r, time.Since(start)
}

func runWG(size int) (int, time.Duration) {
	start := time.Now()
	c := make(chan int)
	go func() { c <- skynetWG(0, size) }()
	r := <-c
	return r, time.Since(start)
}

func main() {
	for _, v := range []struct {
		name string
		run  func(int) (int, time.Duration)
	}{{"skynet", runChan}, {"skynet_wg", runWG}} {
		v.run(leaves / 10)
		resetPeakRSS()
		r, d := v.run(leaves)
		if r != expected {
			fmt.Fprintf(os.Stderr, "%s: wrong sum %d, want %d\n", v.name, r, expected)
			os.Exit(1)
		}
		fmt.Printf("%s %.2f ms\n", v.name, float64(d.Nanoseconds())/1e6)
		fmt.Printf("%s_peak_rss %.1f MiB\n", v.name, statusKiB("VmHWM")/1024)
	}
}
