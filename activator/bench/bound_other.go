//go:build !linux

package main

import "errors"

func serveBound(listen, backend string) error {
	return errors.New("the proxy bound runs on Linux only")
}
