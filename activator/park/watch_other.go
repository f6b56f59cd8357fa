//go:build !linux

package park

import "net"

// Elsewhere than Linux parked connections are not watched: a client that
// went away is noticed when its request is resumed.
func watch(net.Conn, *Ticket) int { return -1 }

func unwatch(int) {}
