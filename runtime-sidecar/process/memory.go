package process

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Max Memory Used is read from the memory cgroup this process runs in: the
// function container's in pod mode (the supervisor runs there), whatever
// cgroup the sidecar runs in standalone (its container's under Docker).
// cgroup v2: memory.peak, else the highest memory.current seen; v1:
// memory.max_usage_in_bytes. Without any, the bootstrap's own peak
// resident set (VmHWM).

var (
	memOnce sync.Once
	memFile string
	memF    *os.File // memFile, kept open
	// memCurrent: memFile is memory.current, whose highest reading is kept.
	memCurrent bool
	memHigh    atomic.Int64
)

func findMemoryFile() {
	var v1, v2 string
	if b, err := os.ReadFile("/proc/self/cgroup"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			parts := strings.SplitN(line, ":", 3)
			if len(parts) != 3 {
				continue
			}
			if parts[0] == "0" && parts[1] == "" {
				v2 = parts[2]
			}
			for _, c := range strings.Split(parts[1], ",") {
				if c == "memory" {
					v1 = parts[2]
				}
			}
		}
	}
	var candidates []string
	if v1 == "" {
		// cgroup v2 (a container sees its own cgroup at the root).
		for _, dir := range []string{"/sys/fs/cgroup" + v2, "/sys/fs/cgroup"} {
			candidates = append(candidates, dir+"/memory.peak", dir+"/memory.current")
		}
	} else {
		for _, dir := range []string{"/sys/fs/cgroup/memory" + v1, "/sys/fs/cgroup/memory"} {
			candidates = append(candidates, dir+"/memory.max_usage_in_bytes")
		}
	}
	for _, c := range candidates {
		if readUint(c) > 0 {
			memFile = c
			memF, _ = os.Open(c)
			memCurrent = strings.HasSuffix(c, "/memory.current")
			return
		}
	}
}

func readUint(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, err := strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// readOpen reads the number in memF (memFile if it could not be kept
// open) without allocating.
func readOpen() int64 {
	if memF == nil {
		return readUint(memFile)
	}
	var b [32]byte
	k, _ := memF.ReadAt(b[:], 0)
	var n int64
	for _, c := range b[:k] {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

// maxMemoryMB is Max Memory Used, in MB (rounded up).
func maxMemoryMB(pid int) int {
	memOnce.Do(findMemoryFile)
	var n int64
	if memFile != "" {
		n = readOpen()
		if memCurrent {
			for {
				high := memHigh.Load()
				if n <= high {
					n = high
					break
				}
				if memHigh.CompareAndSwap(high, n) {
					break
				}
			}
		}
	} else if pid > 0 {
		n = vmHWM(pid)
	}
	return int((n + 1<<20 - 1) >> 20)
}

// vmHWM is the peak resident set of process pid, in bytes.
func vmHWM(pid int) int64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
