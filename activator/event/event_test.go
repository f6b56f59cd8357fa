package event

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
)

func newReq(method, target string, body string) *Request {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	r.Host = "api.example.com"
	r.RemoteAddr = "192.0.2.7:5555"
	r.Header.Set("User-Agent", "curl/8")
	r.Header.Add("X-Multi", "a")
	r.Header.Add("X-Multi", "b")
	r.Header.Add("Cookie", "c1=v1; c2=v2")
	r.Header.Add("Cookie", "c3=v3")
	return &Request{HTTP: r, Body: []byte(body), Path: "/hello/w%20x", Prefix: "/ns/fn", RequestID: "rid-1",
		Namespace: "ns", Function: "fn", Time: time.Date(2020, 3, 12, 19, 3, 58, 390e6, time.UTC)}
}

func TestBuildHTTPAPIv2(t *testing.T) {
	r := newReq("POST", "/ns/fn/hello/w%20x?p1=v1&p1=v2&p2=v", `{"a":1}`)
	r.HTTP.Header.Set("Content-Type", "application/json")
	b, err := Build(HTTPAPIv2, r)
	if err != nil {
		t.Fatal(err)
	}
	var ev events.APIGatewayV2HTTPRequest
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Version != "2.0" || ev.RouteKey != "$default" || ev.RawPath != "/hello/w%20x" || ev.RawQueryString != "p1=v1&p1=v2&p2=v" {
		t.Errorf("top level: %+v", ev)
	}
	if !reflect.DeepEqual(ev.Cookies, []string{"c1=v1", "c2=v2", "c3=v3"}) {
		t.Errorf("cookies %q", ev.Cookies)
	}
	if ev.Headers["x-multi"] != "a,b" || ev.Headers["user-agent"] != "curl/8" || ev.Headers["cookie"] != "" || ev.Headers["host"] != "api.example.com" ||
		ev.Headers["x-forwarded-for"] != "192.0.2.7" || ev.Headers["x-forwarded-proto"] != "http" || ev.Headers["x-forwarded-port"] != "80" {
		t.Errorf("headers %v", ev.Headers)
	}
	if !reflect.DeepEqual(ev.QueryStringParameters, map[string]string{"p1": "v1,v2", "p2": "v"}) {
		t.Errorf("query %v", ev.QueryStringParameters)
	}
	rc := ev.RequestContext
	want := events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: "POST", Path: "/hello/w x", Protocol: "HTTP/1.1", SourceIP: "192.0.2.7", UserAgent: "curl/8"}
	if rc.HTTP != want || rc.Stage != "$default" || rc.RouteKey != "$default" || rc.RequestID != "rid-1" ||
		rc.DomainName != "api.example.com" || rc.DomainPrefix != "api" || rc.Time != "12/Mar/2020:19:03:58 +0000" || rc.TimeEpoch != 1584039838390 {
		t.Errorf("requestContext %+v", rc)
	}
	if ev.Body != `{"a":1}` || ev.IsBase64Encoded {
		t.Errorf("body %q b64 %v", ev.Body, ev.IsBase64Encoded)
	}
	// The raw JSON has the exact field names of payload 2.0.
	var raw map[string]any
	_ = json.Unmarshal(b, &raw)
	for _, k := range []string{"version", "routeKey", "rawPath", "rawQueryString", "cookies", "headers", "queryStringParameters", "requestContext", "body", "isBase64Encoded"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("event lacks %q", k)
		}
	}
}

func TestBuildBinaryBodyIsBase64(t *testing.T) {
	r := newReq("PUT", "/ns/fn/img", "\x89PNG\x00\x01")
	r.HTTP.Header.Set("Content-Type", "image/png")
	b, _ := Build(HTTPAPIv2, r)
	var ev events.APIGatewayV2HTTPRequest
	_ = json.Unmarshal(b, &ev)
	if !ev.IsBase64Encoded || ev.Body != "iVBORwAB" {
		t.Fatalf("body %q b64 %v", ev.Body, ev.IsBase64Encoded)
	}
	// Text content types stay text; invalid UTF-8 never does.
	r = newReq("POST", "/x/y/", "a=1&b=2")
	r.HTTP.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	b, _ = Build(HTTPAPIv2, r)
	_ = json.Unmarshal(b, &ev)
	if ev.IsBase64Encoded || ev.Body != "a=1&b=2" {
		t.Fatalf("form body %q b64 %v", ev.Body, ev.IsBase64Encoded)
	}
}

func TestBuildRESTv1(t *testing.T) {
	r := newReq("GET", "/ns/fn/hello/w%20x?p1=v1&p1=v2", "")
	b, _ := Build(RESTv1, r)
	var ev events.APIGatewayProxyRequest
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Resource != "/{proxy+}" || ev.Path != "/hello/w x" || ev.HTTPMethod != "GET" || ev.PathParameters["proxy"] != "hello/w x" {
		t.Errorf("event %+v", ev)
	}
	if ev.Headers["X-Multi"] != "b" || !reflect.DeepEqual(ev.MultiValueHeaders["X-Multi"], []string{"a", "b"}) || ev.Headers["X-Forwarded-For"] != "192.0.2.7" ||
		!reflect.DeepEqual(ev.MultiValueHeaders["X-Forwarded-Proto"], []string{"http"}) {
		t.Errorf("headers %v / %v", ev.Headers, ev.MultiValueHeaders)
	}
	if ev.QueryStringParameters["p1"] != "v2" || !reflect.DeepEqual(ev.MultiValueQueryStringParameters["p1"], []string{"v1", "v2"}) {
		t.Errorf("query %v / %v", ev.QueryStringParameters, ev.MultiValueQueryStringParameters)
	}
	rc := ev.RequestContext
	if rc.HTTPMethod != "GET" || rc.Identity.SourceIP != "192.0.2.7" || rc.RequestID != "rid-1" || rc.ResourcePath != "/{proxy+}" || rc.RequestTimeEpoch != 1584039838390 {
		t.Errorf("requestContext %+v", rc)
	}
}

func TestBuildALB(t *testing.T) {
	r := newReq("GET", "/ns/fn/lambda?query=1234ABCD", "")
	b, _ := Build(ALB, r)
	var ev events.ALBTargetGroupRequest
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.HTTPMethod != "GET" || ev.Path != "/hello/w x" || ev.QueryStringParameters["query"] != "1234ABCD" {
		t.Errorf("event %+v", ev)
	}
	if ev.Headers["x-forwarded-proto"] != "http" || ev.Headers["x-forwarded-for"] != "192.0.2.7" || ev.Headers["x-forwarded-port"] != "80" || ev.Headers["x-multi"] != "b" {
		t.Errorf("headers %v", ev.Headers)
	}
	if !strings.HasPrefix(ev.RequestContext.ELB.TargetGroupArn, "arn:aws:elasticloadbalancing:") {
		t.Errorf("targetGroupArn %q", ev.RequestContext.ELB.TargetGroupArn)
	}
}

// ALB passes query parameters as the client sent them, not decoded: %20
// stays %20, + stays +, %7E stays %7E (the ALB guide: "If the query
// parameters are URL-encoded, the load balancer does not decode them").
// Without multi-value mode the last value wins and only headers and
// queryStringParameters are set; with it, every value, and only the
// multi-value maps.
func TestBuildALBQueryAsSentAndMultiValueMode(t *testing.T) {
	target := "/ns/fn/lambda?a=%20x&a=y+z&t=%7E&flag&e=caf%C3%A9"
	b, _ := Build(ALB, newReq("GET", target, ""))
	var raw map[string]json.RawMessage
	_ = json.Unmarshal(b, &raw)
	if _, ok := raw["multiValueHeaders"]; ok {
		t.Errorf("single-value event has multiValueHeaders: %s", b)
	}
	var ev events.ALBTargetGroupRequest
	_ = json.Unmarshal(b, &ev)
	want := map[string]string{"a": "y+z", "t": "%7E", "flag": "", "e": "caf%C3%A9"}
	if !reflect.DeepEqual(ev.QueryStringParameters, want) {
		t.Errorf("queryStringParameters %v, want %v", ev.QueryStringParameters, want)
	}

	b, _ = Build(ALBMultiValue, newReq("GET", target, ""))
	raw = nil
	_ = json.Unmarshal(b, &raw)
	for _, k := range []string{"headers", "queryStringParameters"} {
		if _, ok := raw[k]; ok {
			t.Errorf("multi-value event has %s: %s", k, b)
		}
	}
	ev = events.ALBTargetGroupRequest{}
	_ = json.Unmarshal(b, &ev)
	wantMulti := map[string][]string{"a": {"%20x", "y+z"}, "t": {"%7E"}, "flag": {""}, "e": {"caf%C3%A9"}}
	if !reflect.DeepEqual(ev.MultiValueQueryStringParameters, wantMulti) {
		t.Errorf("multiValueQueryStringParameters %v, want %v", ev.MultiValueQueryStringParameters, wantMulti)
	}
	h := ev.MultiValueHeaders
	if !reflect.DeepEqual(h["x-multi"], []string{"a", "b"}) || !reflect.DeepEqual(h["x-forwarded-for"], []string{"192.0.2.7"}) ||
		!reflect.DeepEqual(h["host"], []string{"api.example.com"}) || len(h["cookie"]) != 2 {
		t.Errorf("multiValueHeaders %v", h)
	}
}

func TestBuildRaw(t *testing.T) {
	b, _ := Build(Raw, newReq("POST", "/ns/fn", "anything"))
	if string(b) != "anything" {
		t.Fatalf("raw event %q", b)
	}
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name   string
		format Format
		ct     string
		result string
		code   int
		header http.Header
		body   string
		err    bool
	}{
		{"v2 full", HTTPAPIv2, "application/json", `{"statusCode":201,"headers":{"content-type":"text/plain","x-a":"1"},"cookies":["a=1; Path=/","b=2"],"body":"created"}`,
			201, http.Header{"Content-Type": {"text/plain"}, "X-A": {"1"}, "Set-Cookie": {"a=1; Path=/", "b=2"}}, "created", false},
		{"v2 base64", HTTPAPIv2, "", `{"statusCode":200,"isBase64Encoded":true,"body":"aGk="}`, 200, http.Header{}, "hi", false},
		{"v2 inferred object", HTTPAPIv2, "application/json", `{"message":"hi"}`, 200, http.Header{"Content-Type": {"application/json"}}, `{"message":"hi"}`, false},
		{"v2 inferred string", HTTPAPIv2, "application/json", `"hello"`, 200, http.Header{"Content-Type": {"application/json"}}, `"hello"`, false},
		{"v2 not json", HTTPAPIv2, "text/plain", `hello`, 0, nil, "", true},
		{"v2 multi-value wins", HTTPAPIv2, "", `{"statusCode":200,"headers":{"x-a":"single","x-b":"b"},"multiValueHeaders":{"x-a":["m1","m2"]}}`,
			200, http.Header{"X-A": {"m1", "m2"}, "X-B": {"b"}}, "", false},
		{"v1", RESTv1, "", `{"statusCode":404,"headers":{"Content-Type":"text/html"},"multiValueHeaders":{"Set-Cookie":["x=1","y=2"]},"body":"<p>no</p>"}`,
			404, http.Header{"Content-Type": {"text/html"}, "Set-Cookie": {"x=1", "y=2"}}, "<p>no</p>", false},
		{"v1 without statusCode", RESTv1, "", `{"body":"x"}`, 0, nil, "", true},
		{"alb", ALB, "", `{"statusCode":200,"statusDescription":"200 OK","headers":{"Content-Type":"text/html"},"body":"ok","isBase64Encoded":false}`,
			200, http.Header{"Content-Type": {"text/html"}}, "ok", false},
		{"raw", Raw, "application/octet-stream", "\x00\x01", 200, http.Header{"Content-Type": {"application/octet-stream"}}, "\x00\x01", false},
		{"hop-by-hop dropped", HTTPAPIv2, "", `{"statusCode":200,"headers":{"Content-Length":"99","Connection":"close","X-Ok":"1"}}`, 200, http.Header{"X-Ok": {"1"}}, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(tc.format, tc.ct, []byte(tc.result))
			if tc.err {
				if err == nil {
					t.Fatalf("got %+v, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.StatusCode != tc.code || string(got.Body) != tc.body || !reflect.DeepEqual(got.Header, tc.header) {
				t.Fatalf("got %d %v %q, want %d %v %q", got.StatusCode, got.Header, got.Body, tc.code, tc.header, tc.body)
			}
		})
	}
}

func TestStreamPassesChunksAsTheyArrive(t *testing.T) {
	pr, pw := io.Pipe()
	rec := &flushRecorder{ResponseRecorder: httptest.NewRecorder(), flushed: make(chan string, 10)}
	done := make(chan error)
	go func() { done <- Stream(rec, pr) }()
	_, _ = pw.Write([]byte(`{"statusCode":201,"headers":{"content-type":"text/event-stream"},"cookies":["s=1"]}`))
	_, _ = pw.Write(make([]byte, 8))
	_, _ = pw.Write([]byte("data: one\n\n"))
	select {
	case got := <-rec.flushed:
		if got != "" { // the flush after the head
			t.Fatalf("first flush had body %q", got)
		}
	case <-time.After(time.Second):
		t.Fatal("head not flushed")
	}
	select {
	case got := <-rec.flushed:
		if got != "data: one\n\n" {
			t.Fatalf("first chunk %q", got)
		}
	case <-time.After(time.Second):
		t.Fatal("the first chunk was not flushed before the stream ended")
	}
	_, _ = pw.Write([]byte("data: two\n\n"))
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if rec.Code != 201 || rec.Header().Get("Content-Type") != "text/event-stream" || rec.Header().Get("Set-Cookie") != "s=1" {
		t.Fatalf("head %d %v", rec.Code, rec.Header())
	}
	if rec.Body.String() != "data: one\n\ndata: two\n\n" {
		t.Fatalf("body %q", rec.Body.String())
	}
}

func TestStreamBadPrelude(t *testing.T) {
	rec := httptest.NewRecorder()
	if err := Stream(rec, strings.NewReader(`{"statusCode":`)); err == nil {
		t.Fatal("a stream that ends in its prelude was accepted")
	}
}

type flushRecorder struct {
	*httptest.ResponseRecorder
	flushed chan string
	seen    int
}

func (f *flushRecorder) Flush() {
	b := f.Body.String()
	f.flushed <- b[f.seen:]
	f.seen = len(b)
}

// A client cannot choose its own sourceIp or protocol: X-Forwarded-* are
// believed only from a trusted proxy (an Ingress), and then only up to the
// first hop that is not one.
func TestForwardedHeadersAreBelievedOnlyFromTrustedProxies(t *testing.T) {
	ingress := netip.MustParsePrefix("10.0.0.0/24")
	trusted := func(a netip.Addr) bool { return ingress.Contains(a) }
	for _, tc := range []struct {
		name, peer, xff, proto string
		trusted                func(netip.Addr) bool
		wantIP, wantProto      string
	}{
		{"forged from a client", "192.0.2.7", "203.0.113.9", "https", nil, "192.0.2.7", "http"},
		{"forged, proxies configured", "192.0.2.7", "203.0.113.9", "https", trusted, "192.0.2.7", "http"},
		{"through the Ingress", "10.0.0.5", "198.51.100.4", "https", trusted, "198.51.100.4", "https"},
		{"a forged hop before the Ingress", "10.0.0.5", "203.0.113.9, 198.51.100.4", "https", trusted, "198.51.100.4", "https"},
		{"two trusted hops", "10.0.0.5", "198.51.100.4, 10.0.0.6", "https", trusted, "198.51.100.4", "https"},
		{"the Ingress without a header", "10.0.0.5", "", "", trusted, "10.0.0.5", "http"},
	} {
		r := newReq("GET", "/ns/fn/", "")
		r.HTTP.RemoteAddr = tc.peer + ":4242"
		if tc.xff != "" {
			r.HTTP.Header.Set("X-Forwarded-For", tc.xff)
		}
		if tc.proto != "" {
			r.HTTP.Header.Set("X-Forwarded-Proto", tc.proto)
		}
		r.Trusted = tc.trusted
		b, err := Build(HTTPAPIv2, r)
		if err != nil {
			t.Fatal(err)
		}
		var ev events.APIGatewayV2HTTPRequest
		if err := json.Unmarshal(b, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.RequestContext.HTTP.SourceIP != tc.wantIP || ev.Headers["x-forwarded-proto"] != tc.wantProto {
			t.Errorf("%s: sourceIp %q proto %q, want %q %q", tc.name, ev.RequestContext.HTTP.SourceIP, ev.Headers["x-forwarded-proto"], tc.wantIP, tc.wantProto)
		}
	}
}
