package event

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/aws/aws-lambda-go/events"
)

// StreamContentType marks a streamed HTTP response: a JSON prelude, eight
// NUL bytes, then the body as the function produces it.
const StreamContentType = "application/vnd.awslambda.http-integration-response"

// ErrMalformed means the function's result is not a valid response for its
// event format; API Gateway answers 502 then.
var ErrMalformed = errors.New("malformed Lambda proxy response")

// Response is an HTTP response decoded from a function's result.
type Response struct {
	StatusCode int
	Header     http.Header
	Body       []byte
}

// Decode turns a buffered result into an HTTP response per format f.
// contentType is the result's content type as the sidecar gave it.
func Decode(f Format, contentType string, result []byte) (*Response, error) {
	switch f {
	case Raw:
		h := http.Header{}
		if contentType != "" {
			h.Set("Content-Type", contentType)
		}
		return &Response{StatusCode: http.StatusOK, Header: h, Body: result}, nil
	case RESTv1:
		if !hasStatusCode(result) {
			return nil, fmt.Errorf("%w: no statusCode", ErrMalformed)
		}
		var r events.APIGatewayProxyResponse
		if err := json.Unmarshal(result, &r); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		return build(r.StatusCode, r.Headers, r.MultiValueHeaders, nil, r.Body, r.IsBase64Encoded)
	case ALB, ALBMultiValue:
		if !hasStatusCode(result) {
			return nil, fmt.Errorf("%w: no statusCode", ErrMalformed)
		}
		var r events.ALBTargetGroupResponse
		if err := json.Unmarshal(result, &r); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		return build(r.StatusCode, r.Headers, r.MultiValueHeaders, nil, r.Body, r.IsBase64Encoded)
	default:
		if !hasStatusCode(result) {
			// Payload 2.0 inference: valid JSON without statusCode is a
			// 200 application/json whose body is the output.
			if !json.Valid(result) {
				return nil, fmt.Errorf("%w: not JSON", ErrMalformed)
			}
			h := http.Header{}
			h.Set("Content-Type", "application/json")
			return &Response{StatusCode: http.StatusOK, Header: h, Body: result}, nil
		}
		var r events.APIGatewayV2HTTPResponse
		if err := json.Unmarshal(result, &r); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		return build(r.StatusCode, r.Headers, r.MultiValueHeaders, r.Cookies, r.Body, r.IsBase64Encoded)
	}
}

// hasStatusCode reports whether b is a JSON object with a statusCode key.
func hasStatusCode(b []byte) bool {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return false
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil {
		return false
	}
	_, ok := m["statusCode"]
	return ok
}

// checkStatus refuses a function's status code outside 200-599. A 1xx
// would be an interim answer to the caller: 100 or 103 leave the real one
// to come, and 101 Switching Protocols hands the caller's connection to
// whatever the function says next (a tunnel past the activator's routing
// and any Ingress authentication); net/http panics on some of the rest.
func checkStatus(code int) error {
	if code < 200 || code > 599 {
		return fmt.Errorf("%w: statusCode %d is not a final HTTP status (200-599)", ErrMalformed, code)
	}
	return nil
}

func build(code int, headers map[string]string, mvh map[string][]string, cookies []string, body string, b64 bool) (*Response, error) {
	if err := checkStatus(code); err != nil {
		return nil, err
	}
	h := Headers(headers, mvh, cookies)
	var b []byte
	if b64 {
		var err error
		if b, err = base64.StdEncoding.DecodeString(body); err != nil {
			return nil, fmt.Errorf("%w: body is not base64: %v", ErrMalformed, err)
		}
	} else {
		b = []byte(body)
	}
	return &Response{StatusCode: code, Header: h, Body: b}, nil
}

// Headers merges single- and multi-value headers (multi-value wins for a
// name in both, as API Gateway does) and turns cookies into Set-Cookie.
func Headers(headers map[string]string, mvh map[string][]string, cookies []string) http.Header {
	h := make(http.Header, len(headers)+len(mvh)+1)
	for k, vs := range mvh {
		if skipHeader(k) {
			continue
		}
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	for k, v := range headers {
		if skipHeader(k) {
			continue
		}
		if _, ok := h[http.CanonicalHeaderKey(k)]; ok {
			continue
		}
		h.Set(k, v)
	}
	for _, c := range cookies {
		h.Add("Set-Cookie", c)
	}
	return h
}

// skipHeader drops hop-by-hop and framing headers, which the activator sets.
func skipHeader(k string) bool {
	switch strings.ToLower(k) {
	case "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "trailer":
		return true
	}
	return false
}

// Write writes r to w.
func (r *Response) Write(w http.ResponseWriter) {
	dst := w.Header()
	for k, vs := range r.Header {
		dst[k] = vs
	}
	if _, ok := dst["Content-Type"]; !ok {
		dst["Content-Type"] = nil // no sniffing: send what the function said
	}
	dst.Set("Content-Length", strconv.Itoa(len(r.Body)))
	w.WriteHeader(r.StatusCode)
	_, _ = w.Write(r.Body)
}

// prelude is the JSON head of a streamed HTTP response.
type prelude struct {
	StatusCode        int                 `json:"statusCode"`
	Headers           map[string]string   `json:"headers"`
	MultiValueHeaders map[string][]string `json:"multiValueHeaders"`
	Cookies           []string            `json:"cookies"`
}

const maxPrelude = 1 << 20

// Stream decodes a streamed response (StreamContentType) from body: it reads
// the prelude, writes the status and headers, then copies the body to w,
// flushing after every chunk so that it reaches the client as produced.
// It returns ErrMalformed (nothing written) when the prelude is bad.
func Stream(w http.ResponseWriter, body io.Reader) error {
	br := bufio.NewReaderSize(body, 4096)
	var head []byte
	for {
		b, err := br.ReadSlice(0)
		head = append(head, b...)
		if err == nil {
			if n := countTrailingNUL(head); n >= 8 {
				head = head[:len(head)-8]
				break
			}
			if len(head) > maxPrelude {
				return fmt.Errorf("%w: stream prelude over %d bytes", ErrMalformed, maxPrelude)
			}
			continue
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			if len(head) > maxPrelude {
				return fmt.Errorf("%w: stream prelude over %d bytes", ErrMalformed, maxPrelude)
			}
			continue
		}
		return fmt.Errorf("%w: stream ended in its prelude: %v", ErrMalformed, err)
	}
	var p prelude
	if len(bytes.TrimSpace(head)) > 0 {
		if err := json.Unmarshal(head, &p); err != nil {
			return fmt.Errorf("%w: stream prelude: %v", ErrMalformed, err)
		}
	}
	if p.StatusCode == 0 {
		p.StatusCode = http.StatusOK
	}
	if err := checkStatus(p.StatusCode); err != nil {
		return err
	}
	dst := w.Header()
	for k, vs := range Headers(p.Headers, p.MultiValueHeaders, p.Cookies) {
		dst[k] = vs
	}
	if _, ok := dst["Content-Type"]; !ok {
		dst["Content-Type"] = nil
	}
	w.WriteHeader(p.StatusCode)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	buf := make([]byte, 16<<10)
	for {
		n, err := br.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return nil
			}
			_ = rc.Flush()
		}
		if err != nil {
			return nil
		}
	}
}

func countTrailingNUL(b []byte) int {
	n := 0
	for i := len(b) - 1; i >= 0 && b[i] == 0; i-- {
		n++
	}
	return n
}

// RequestIDHeader is the response header that carries the request id for
// format f, as the AWS service of that event shape sends it: API Gateway's
// HTTP API Apigw-Requestid, its REST API x-amzn-RequestId; an ALB none.
func RequestIDHeader(f Format) string {
	switch f {
	case HTTPAPIv2:
		return "Apigw-Requestid"
	case RESTv1:
		return "X-Amzn-Requestid"
	}
	return ""
}
