// Package memtest measures what a call costs the Go heap, for the tests
// that reproduce memory attacks (a huge body from a git server, a registry
// or a client) and assert the harm does not happen.
package memtest

import (
	"fmt"
	"runtime"
	"runtime/metrics"
	"sync"
	"time"
)

// Use is what a call cost the heap: its highest point above where it
// started, sampled while the call ran, and what stayed live after it with
// the call's result still referenced.
type Use struct{ Peak, Retained int64 }

func (u Use) String() string { return Size(u.Peak) + " peak, " + Size(u.Retained) + " retained" }

// Size formats a byte count in KiB or MiB.
func Size(n int64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// Measure runs f and measures the heap around it. The sampler reads
// runtime/metrics, which does not stop the world, every millisecond.
func Measure(f func() error) (error, Use) {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() int64 {
		metrics.Read(sample)
		return int64(sample[0].Value.Uint64())
	}
	runtime.GC()
	base := read()
	var peak int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			peak = max(peak, read())
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	err := f()
	close(done)
	wg.Wait()
	runtime.GC()
	retained := read() - base
	runtime.KeepAlive(err)
	return err, Use{Peak: max(peak, read()) - base, Retained: retained}
}
