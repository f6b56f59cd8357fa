// Package procstat reads what the benchmarks measure of a process from
// Linux's /proc: its CPU time, its memory, and the machine's load.
package procstat

import (
	"os"
	"strconv"
	"strings"
	"time"
)

// CPU is a process's user+system CPU time (all its threads) and its
// parent's pid, from /proc/<pid>/stat; zero if the process is gone.
func CPU(pid int) (cpu time.Duration, ppid int) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0
	}
	s := string(b)
	// The command name, in parentheses, may hold spaces.
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return 0, 0
	}
	f := strings.Fields(s[i+2:])
	if len(f) < 13 {
		return 0, 0
	}
	ppid, _ = strconv.Atoi(f[1])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100, ppid // USER_HZ
}

// ChildrenCPU is the CPU time of pid's live children.
func ChildrenCPU(pid int) time.Duration {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	var sum time.Duration
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if cpu, ppid := CPU(child); ppid == pid {
			sum += cpu
		}
	}
	return sum
}

// StatusKiB is a kB field of /proc/<pid>/status (VmRSS, VmHWM ...); pid 0
// is this process. Zero if absent.
func StatusKiB(pid int, key string) int64 {
	p := "/proc/self/status"
	if pid != 0 {
		p = "/proc/" + strconv.Itoa(pid) + "/status"
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			if f := strings.Fields(v); len(f) >= 1 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// LoadAvg is the machine's 1, 5 and 15 minute load averages.
func LoadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
