// SPDX-License-Identifier: MIT
// select: one consumer selects over 4 buffered channels (capacity 64), each
// fed by its own producer with 1,000,000 ints; 4,000,000 messages, each
// received through a 4-case select statement. Go side of
// bench/select_bench.cpp, with GOMAXPROCS as given (the runner: 2). After a
// warm-up run of a tenth of the size. The sum is checked.
// Output: one line per measurement, `name value unit`.
package main

import (
	"fmt"
	"os"
	"time"
)

const (
	messages = 4_000_000
	channels = 4
	capacity = 64
)

func selectRun(n int64) (int64, time.Duration) {
	var cs [channels]chan int64
	for k := range cs {
		cs[k] = make(chan int64, capacity)
	}
	per := n / channels
	start := time.Now()
	for k := range cs {
		go func(c chan int64) {
			for i := int64(0); i < per; i++ {
				c <- i
			}
		}(cs[k])
	}
	var sum int64
	for m := int64(0); m < per*channels; m++ {
		select {
		case v := <-cs[0]:
			sum += v
		case v := <-cs[1]:
			sum += v
		case v := <-cs[2]:
			sum += v
		case v := <-cs[3]:
			sum += v
		}
	}
	return sum, time.Since(start)
}

func main() {
	selectRun(messages / 10)
	resetPeakRSS()
	sum, d := selectRun(messages)
	per := int64(messages / channels)
	if sum != channels*per*(per-1)/2 {
		fmt.Fprintf(os.Stderr, "select: wrong sum %d\n", sum)
		os.Exit(1)
	}
	fmt.Printf("select %.2f ns/msg\n", float64(d.Nanoseconds())/messages)
	fmt.Printf("select_peak_rss %.1f MiB\n", statusKiB("VmHWM")/1024)
}
