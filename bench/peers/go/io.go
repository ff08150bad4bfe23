// SPDX-License-Identifier: MIT
// io: the netpoller's wake-up path, Go side of BM_io_pingpong in
// bench/io_bench.cpp. Two goroutines exchange one byte over a socketpair
// (net.FileConn, so reads park in the netpoller like goro's
// io::wait_readable), 20,000 round trips per measurement, after a warm-up
// of a tenth of the size; GOMAXPROCS=1 (io_pingpong_w1) and 2
// (io_pingpong_w2). Go's blocking-call offload has no counterpart here.
// Output: one line per measurement, `name value unit`.
package main

import (
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

const n = 20_000 // round trips per measurement

func roundTrips(count int) time.Duration {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		panic(err)
	}
	a, err := net.FileConn(os.NewFile(uintptr(fds[0]), "a"))
	if err != nil {
		panic(err)
	}
	b, err := net.FileConn(os.NewFile(uintptr(fds[1]), "b"))
	if err != nil {
		panic(err)
	}
	// FileConn dup'ed the descriptors.
	syscall.Close(fds[0])
	syscall.Close(fds[1])
	defer a.Close()
	defer b.Close()
	var wg sync.WaitGroup
	wg.Add(2)
	start := time.Now()
	go func() {
		buf := []byte{'x'}
		for i := 0; i < count; i++ {
			if _, err := a.Write(buf); err != nil {
				panic(err)
			}
			if _, err := a.Read(buf); err != nil {
				panic(err)
			}
		}
		wg.Done()
	}()
	go func() {
		buf := make([]byte, 1)
		for i := 0; i < count; i++ {
			if _, err := b.Read(buf); err != nil {
				panic(err)
			}
			if _, err := b.Write(buf); err != nil {
				panic(err)
			}
		}
		wg.Done()
	}()
	wg.Wait()
	return time.Since(start)
}

func main() { perProcs("io_pingpong", "ns/round_trip", n, 1, roundTrips) }
