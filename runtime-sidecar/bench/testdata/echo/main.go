// Command echo is the benchmark function: an aws-lambda-go JSON echo
// handler. With BENCH_FLOOR_ADDR set it serves the same handler (the same
// aws-lambda-go JSON marshalling) as a plain net/http server instead: the
// floor the sidecar is compared with.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"

	"github.com/aws/aws-lambda-go/lambda"
)

func handler(_ context.Context, ev json.RawMessage) (json.RawMessage, error) {
	return ev, nil
}

func main() {
	addr := os.Getenv("BENCH_FLOOR_ADDR")
	if addr == "" {
		lambda.Start(handler)
		return
	}
	h := lambda.NewHandler(handler)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr().String())
	_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		out, err := h.Invoke(r.Context(), body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(out)))
		_, _ = w.Write(out)
	}))
}
