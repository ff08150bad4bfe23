// SPDX-License-Identifier: MIT
// pingpong: unbuffered channel ping-pong, Go side of
// bench/pingpong_bench.cpp. One goroutine sends i on ping and waits for it
// back on pong; the other receives on ping and sends it back on pong.
// 1,000,000 round trips, measured with GOMAXPROCS=1 (pingpong_w1) and
// GOMAXPROCS=2 (pingpong_w2), each after a warm-up run of a tenth of the size.
// Output: one line per measurement, `name value unit`.
package main

import (
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

func main() { perProcs("pingpong", "ns/round_trip", n, 1, roundTrips) }
