package invokeapi

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
)

// InvokeWithResponseStream
// (POST /2021-11-15/functions/{FunctionName}/response-streaming-invocations),
// as the activator and the runtime sidecar serve it. The request is an
// Invoke's (FunctionName, Qualifier, X-Amz-Client-Context, X-Amz-Log-Type,
// a payload of at most 6 MiB); X-Amz-Invocation-Type is RequestResponse or
// DryRun. The answer is 200 with an AWS event stream
// (application/vnd.amazon.eventstream): PayloadChunk events carrying the
// function's response as it produces it, then one InvokeComplete event,
// whose ErrorCode and ErrorDetails say whether the function failed once its
// response had begun. Errors before the function ran are Invoke's.
const (
	StreamAPIVersion = "/2021-11-15"
	StreamPathPrefix = StreamAPIVersion + "/functions/"
	StreamPathSuffix = "/response-streaming-invocations"

	// EventStreamContentType is the Content-Type of the answer.
	EventStreamContentType = "application/vnd.amazon.eventstream"

	// MaxStreamedResponse is Lambda's limit on a streamed response
	// (200 MiB). Past it the stream ends with an InvokeComplete whose
	// ErrorCode is ResponseTooLargeType; the bytes after the limit are
	// never sent.
	MaxStreamedResponse = 200 * 1024 * 1024

	// ResponseTooLargeType is the error of a response over its limit, as
	// Lambda names it.
	ResponseTooLargeType = "Function.ResponseSizeTooLarge"
)

// Event types of the answer's event stream, and the headers of its
// messages (eventstreamapi's names; that package would link smithy's
// middleware into the sidecar).
const (
	EventPayloadChunk   = "PayloadChunk"
	EventInvokeComplete = "InvokeComplete"

	messageTypeHeader = ":message-type"
	eventTypeHeader   = ":event-type"
	contentTypeHeader = ":content-type"
)

// SplitStreamPath returns the escaped FunctionName of an
// InvokeWithResponseStream path.
func SplitStreamPath(escapedPath string) (escapedName string, ok bool) {
	return splitPath(escapedPath, StreamPathPrefix, StreamPathSuffix)
}

// IsStreamPath reports whether the path is under InvokeWithResponseStream's
// prefix.
func IsStreamPath(escapedPath string) bool {
	return strings.HasPrefix(escapedPath, StreamPathPrefix)
}

// ParseStreamInvocationType reads X-Amz-Invocation-Type of an
// InvokeWithResponseStream call: RequestResponse (the default) or DryRun;
// Event is refused, as Lambda refuses it.
func ParseStreamInvocationType(v string) (InvocationType, *Error) {
	switch t := InvocationType(v); t {
	case "":
		return RequestResponse, nil
	case RequestResponse, DryRun:
		return t, nil
	}
	return "", InvalidParameter("1 validation error detected: Value '" + v +
		"' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [RequestResponse, DryRun]")
}

// ParseTypes reads a call's X-Amz-Invocation-Type, of Invoke or (stream)
// of InvokeWithResponseStream, whose X-Amz-Log-Type it checks too.
func ParseTypes(h http.Header, stream bool) (InvocationType, *Error) {
	if !stream {
		return ParseInvocationType(h.Get(HeaderInvocationType))
	}
	t, err := ParseStreamInvocationType(h.Get(HeaderInvocationType))
	if err == nil {
		err = CheckLogType(h.Get(HeaderLogType))
	}
	return t, err
}

// CheckLogType checks X-Amz-Log-Type: absent, None or Tail.
func CheckLogType(v string) *Error {
	switch v {
	case "", "None", "Tail":
		return nil
	}
	return InvalidParameter("1 validation error detected: Value '" + v +
		"' at 'logType' failed to satisfy constraint: Member must satisfy enum value set: [Tail, None]")
}

// StreamComplete is the payload of the InvokeComplete event.
type StreamComplete struct {
	ErrorCode    string `json:"ErrorCode,omitempty"`
	ErrorDetails string `json:"ErrorDetails,omitempty"`
	LogResult    string `json:"LogResult,omitempty"`
}

// Failed is the InvokeComplete of an invocation that failed with the
// error document doc ({"errorType","errorMessage"}): ErrorCode is its
// errorType (else errType, else Unhandled), ErrorDetails its errorMessage
// (else the document as it is).
func Failed(errType string, doc []byte) StreamComplete {
	var d struct {
		ErrorType    string `json:"errorType"`
		ErrorMessage string `json:"errorMessage"`
	}
	c := StreamComplete{ErrorCode: errType, ErrorDetails: string(bytes.TrimSpace(doc))}
	if json.Unmarshal(doc, &d) == nil && d.ErrorType != "" {
		c = StreamComplete{ErrorCode: d.ErrorType, ErrorDetails: d.ErrorMessage}
	}
	if c.ErrorCode == "" {
		c.ErrorCode = "Unhandled"
	}
	return c
}

// TooLargeComplete is the InvokeComplete of a response cut at limit bytes.
func TooLargeComplete(limit int) StreamComplete {
	return StreamComplete{ErrorCode: ResponseTooLargeType,
		ErrorDetails: "Response payload size exceeded maximum allowed payload size (" + strconv.Itoa(limit) + " bytes)."}
}

// StreamWriter writes the event stream of an InvokeWithResponseStream
// answer, flushing after every event so that the caller has each chunk as
// soon as the function produced it.
type StreamWriter struct {
	w        io.Writer
	rc       *http.ResponseController
	enc      *eventstream.Encoder
	complete bool
}

var (
	eventHeader    = eventstream.StringValue("event")
	octetHeader    = eventstream.StringValue("application/octet-stream")
	jsonHeader     = eventstream.StringValue("application/json")
	chunkHeader    = eventstream.StringValue(EventPayloadChunk)
	completeHeader = eventstream.StringValue(EventInvokeComplete)
)

// StartStream answers 200 with the event stream's headers and returns the
// writer of its events.
func StartStream(w http.ResponseWriter, requestID, version string) *StreamWriter {
	h := w.Header()
	h["Content-Type"] = []string{EventStreamContentType}
	h[HeaderExecutedVersion] = []string{version}
	if requestID != "" {
		h[HeaderRequestID] = []string{requestID}
	}
	w.WriteHeader(http.StatusOK)
	sw := &StreamWriter{w: w, rc: http.NewResponseController(w), enc: eventstream.NewEncoder()}
	_ = sw.rc.Flush()
	return sw
}

// MaxChunk is the largest payload of one PayloadChunk event: Chunk splits
// a longer one (a buffered response of up to 6 MB), so that every event
// stays well within MaxEvent.
const MaxChunk = 256 << 10

// Chunk sends p as PayloadChunk events (nothing for an empty p).
func (s *StreamWriter) Chunk(p []byte) error {
	for len(p) > 0 {
		n := min(len(p), MaxChunk)
		if err := s.send(eventstream.Message{Headers: eventstream.Headers{
			{Name: messageTypeHeader, Value: eventHeader},
			{Name: eventTypeHeader, Value: chunkHeader},
			{Name: contentTypeHeader, Value: octetHeader},
		}, Payload: p[:n]}); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// Complete sends the InvokeComplete event, which ends the stream.
func (s *StreamWriter) Complete(c StreamComplete) error {
	b, _ := json.Marshal(c)
	s.complete = true
	return s.send(eventstream.Message{Headers: eventstream.Headers{
		{Name: messageTypeHeader, Value: eventHeader},
		{Name: eventTypeHeader, Value: completeHeader},
		{Name: contentTypeHeader, Value: jsonHeader},
	}, Payload: b})
}

// Completed reports whether the InvokeComplete event was sent.
func (s *StreamWriter) Completed() bool { return s.complete }

// Forward sends an event read from another event stream (a pod's) as it
// is; an InvokeComplete among them completes this stream.
func (s *StreamWriter) Forward(m eventstream.Message) error {
	if v := m.Headers.Get(eventTypeHeader); v != nil && v.String() == EventInvokeComplete {
		s.complete = true
	}
	return s.send(m)
}

func (s *StreamWriter) send(m eventstream.Message) error {
	if err := s.enc.Encode(s.w, m); err != nil {
		return err
	}
	return s.rc.Flush()
}

// MaxEvent bounds the size of one event a StreamReader takes (the
// sidecar's are at most 32 KiB of payload), so that whoever answers on a
// pod's port cannot make its reader hold an event of gigabytes.
const MaxEvent = 1 << 20

// StreamReader reads the events of an InvokeWithResponseStream answer one
// whole message at a time, checking their checksums and their size.
type StreamReader struct {
	r   *bufio.Reader
	dec *eventstream.Decoder
	buf []byte
}

// NewStreamReader reads the event stream in r.
func NewStreamReader(r io.Reader) *StreamReader {
	return &StreamReader{r: bufio.NewReaderSize(r, 32<<10), dec: eventstream.NewDecoder(), buf: make([]byte, 0, 32<<10)}
}

// Next returns the next event; its payload is valid until the next call.
// At the end of the stream the error is io.EOF.
func (s *StreamReader) Next() (eventstream.Message, error) {
	prelude, err := s.r.Peek(4)
	if err != nil {
		if err == io.EOF && len(prelude) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return eventstream.Message{}, err
	}
	if n := binary.BigEndian.Uint32(prelude); n > MaxEvent {
		return eventstream.Message{}, fmt.Errorf("an event of %d bytes, over the %d the reader takes", n, MaxEvent)
	}
	return s.dec.Decode(s.r, s.buf)
}
