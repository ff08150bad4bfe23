// SPDX-License-Identifier: MIT
// memory: what parked goroutines cost, Go side of bench/memory_bench.cpp,
// with GOMAXPROCS as given (run_peers.sh: 2).
//
//	parked  1,000,000 goroutines each bump an atomic counter and block on one
//	        shared WaitGroup; main polls the counter every 1 ms until all have
//	        arrived. bytes_per_fiber = (VmRSS then - VmRSS before) / N.
//	idle    10,000 goroutines parked the same way while main sleeps 2 s;
//	        idle_cpu_fraction = process CPU time (user + sys, getrusage)
//	        during the sleep / wall time of the sleep.
//
// Output: one line per measurement, `name value unit`.
package main

import (
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// parkFibers starts n goroutines that arrive and block on release; each calls
// all.Done() once released. Returns when all n have arrived.
func parkFibers(n int64, release, all *sync.WaitGroup) {
	var arrived int64
	all.Add(int(n))
	for i := int64(0); i < n; i++ {
		go func() {
			atomic.AddInt64(&arrived, 1)
			release.Wait()
			all.Done()
		}()
	}
	for atomic.LoadInt64(&arrived) < n {
		time.Sleep(time.Millisecond)
	}
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

func parked() {
	const n = 1_000_000
	var release, all sync.WaitGroup
	release.Add(1)
	resetPeakRSS()
	rss0 := statusKiB("VmRSS") * 1024
	start := time.Now()
	parkFibers(n, &release, &all)
	elapsed := time.Since(start)
	rss1 := statusKiB("VmRSS") * 1024
	release.Done()
	all.Wait()
	fmt.Printf("parked_bytes_per_fiber %.1f B\n", (rss1-rss0)/n)
	fmt.Printf("parked_park_all %.1f ms\n", float64(elapsed.Nanoseconds())/1e6)
	fmt.Printf("parked_peak_rss %.1f MiB\n", statusKiB("VmHWM")/1024)
}

func idle() {
	const n = 10_000
	var release, all sync.WaitGroup
	release.Add(1)
	parkFibers(n, &release, &all)
	cpu0, t0 := cpuSeconds(), time.Now()
	time.Sleep(2 * time.Second)
	cpu1, wall := cpuSeconds(), time.Since(t0).Seconds()
	release.Done()
	all.Wait()
	fmt.Printf("idle_cpu_fraction %.5f fraction\n", (cpu1-cpu0)/wall)
}

// idle first, in a fresh process: it must measure the idle steady state,
// not the clean-up of the million goroutines before it (Go's GC and
// scavenger; goro's stack trim), which all three programs skip this way.
func main() {
	idle()
	parked()
}
