package httplimit_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/lambdapod/lambdapod/internal/httplimit"
)

func TestTransport(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		status, _ := strconv.Atoi(r.URL.Query().Get("status"))
		if r.URL.Query().Has("chunked") {
			// Flushing before the body leaves Content-Length unset.
			w.WriteHeader(status)
			w.(http.Flusher).Flush()
		} else {
			w.Header().Set("Content-Length", strconv.Itoa(n))
			w.WriteHeader(status)
		}
		_, _ = io.WriteString(w, strings.Repeat("x", n))
	}))
	defer srv.Close()
	c := &http.Client{Transport: &httplimit.Transport{Base: httplimit.NewBase(), MaxBody: 100, MaxErrorBody: 10}}

	for _, tc := range []struct {
		query   string
		want    int
		tooLong bool
	}{
		{query: "status=200&n=100", want: 100},
		{query: "status=200&n=100&chunked", want: 100},
		{query: "status=200&n=101", tooLong: true},
		{query: "status=200&n=5000&chunked", tooLong: true},
		{query: "status=404&n=5000", want: 10},
		{query: "status=500&n=5000&chunked", want: 10},
		{query: "status=403&n=3", want: 3},
	} {
		resp, err := c.Get(srv.URL + "/?" + tc.query)
		var body []byte
		if err == nil {
			body, err = io.ReadAll(resp.Body)
			_ = resp.Body.Close()
		}
		var tl *httplimit.TooLargeError
		switch {
		case tc.tooLong && !errors.As(err, &tl):
			t.Errorf("%s: error = %v, want a TooLargeError", tc.query, err)
		case tc.tooLong && !strings.Contains(err.Error(), "is larger than 100 bytes"):
			t.Errorf("%s: error = %v", tc.query, err)
		case !tc.tooLong && (err != nil || len(body) != tc.want):
			t.Errorf("%s: read %d bytes, %v; want %d", tc.query, len(body), err, tc.want)
		}
	}
}
