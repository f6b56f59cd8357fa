// Package rawloop is the network loop of the benchmarks' bounds
// (runtime-sidecar/bench/testdata/bound, activator/bench -role bound): one
// thread, one epoll set, nonblocking sockets and raw system calls, so that
// the Go scheduler never runs on the path and what they measure is the
// kernel's and the peers' share of a round trip. Not for serving anything.
package rawloop
