// Package eventqueue keeps the Event (asynchronous) invocations that the
// activators accepted in NATS JetStream until they have run, so that an
// invocation answered 202 survives a crash or an OOM of the activator that
// took it, as on Lambda, where an accepted event is stored before the
// answer.
//
// One stream (LAMBDAPOD_EVENTS by default, file storage, work-queue
// retention) holds an event per message on lambdapod.events.<namespace>.<name>:
// the payload as the body, the rest in headers. Every activator pulls from
// one durable consumer, so whichever activator is up runs what another
// accepted. A message is acknowledged only after its invocation ended;
// while it runs the activator tells the server so (in progress) every
// third of the ack wait, and an activator that dies mid-invocation leaves
// the message to be delivered again after the ack wait.
//
// Retries follow Lambda's asynchronous invocation: a function error,
// timeout or crash is retried up to the function's maximum retry attempts
// (a new message with the next attempt number, due after a backoff that
// doubles: Lambda waits about one and then two minutes), and an event
// older than its maximum age is not run. An invocation that could not
// start (no capacity, pods that cannot run) is not an attempt: the same
// message comes back after a delay.
package eventqueue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Headers of an event message (the payload is the body).
const (
	HeaderRequestID     = "Lambdapod-Request-Id"
	HeaderAttempt       = "Lambdapod-Attempt"
	HeaderAccepted      = "Lambdapod-Accepted"
	HeaderNotBefore     = "Lambdapod-Not-Before"
	HeaderClientContext = "Lambdapod-Client-Context"
	HeaderTraceID       = "Lambdapod-Trace-Id"
)

// SubjectPrefix is the prefix of the event subjects: <prefix><namespace>.<name>.
const SubjectPrefix = "lambdapod.events."

// Config configures the queue.
type Config struct {
	// URL of the NATS server(s), comma-separated.
	URL string
	// Stream is the JetStream stream's name (LAMBDAPOD_EVENTS).
	Stream string
	// Consumer is the durable consumer all activators share (activators).
	Consumer string
	// Replicas of the stream: 1, or 3 on a clustered NATS.
	Replicas int
	// MaxBytes bounds the stream: past it, new events are refused (the
	// caller gets an error, not a 202); none is dropped to make room.
	MaxBytes int64
	// MaxAge is how long the server keeps an event at most, a backstop
	// above every function's maximum event age (6 hours).
	MaxAge time.Duration
	// AckWait is how long a message may go without news from the
	// activator running it before it is delivered again.
	AckWait time.Duration
	// Concurrency is how many events this activator runs at once.
	Concurrency int
	// PerFunction is how many of those may be one function's (a quarter of
	// Concurrency by default): the events of a function that is held (at
	// zero, at its concurrency, its pods failing) wait in the stream
	// rather than in every slot, and other functions' events still run.
	PerFunction int
	// ShareWait: an event over its function's share waits for one of the
	// function's running events to end while at least one ends every
	// ShareWait (a second by default, at most a third of AckWait), and
	// goes back to the stream for NotRunDelay otherwise (Queue.take).
	ShareWait time.Duration
	// RetryDelay is the wait before the first retry; it doubles for the
	// next (Lambda: about a minute, then two).
	RetryDelay time.Duration
	// NotRunDelay is the wait before an event that could not start is
	// tried again.
	NotRunDelay time.Duration
	// PublishTimeout bounds the wait for the server's acknowledgement of a
	// new event.
	PublishTimeout time.Duration
	// Region is the one in the function ARNs of invocation records.
	Region     string
	Log        *slog.Logger
	Registerer prometheus.Registerer
}

func (c *Config) defaults() {
	if c.Stream == "" {
		c.Stream = "LAMBDAPOD_EVENTS"
	}
	if c.Consumer == "" {
		c.Consumer = "activators"
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = 1 << 30
	}
	if c.MaxAge <= 0 {
		c.MaxAge = 7 * time.Hour
	}
	if c.AckWait <= 0 {
		c.AckWait = 30 * time.Second
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 64
	}
	if c.PerFunction <= 0 {
		c.PerFunction = max(1, c.Concurrency/4)
	}
	if c.ShareWait <= 0 {
		c.ShareWait = min(time.Second, c.AckWait/3)
	}
	if c.RetryDelay <= 0 {
		c.RetryDelay = time.Minute
	}
	if c.NotRunDelay <= 0 {
		c.NotRunDelay = 5 * time.Second
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = 5 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Region == "" {
		c.Region = "us-east-1"
	}
}

// Event is one accepted asynchronous invocation.
type Event struct {
	RequestID string
	Namespace string
	Name      string
	// Attempt is 1 for the first run, 2 and 3 for Lambda's retries.
	Attempt       int
	Accepted      time.Time
	ClientContext string
	TraceID       string
	Payload       []byte
	// notBefore delays a retry.
	notBefore time.Time
}

// Policy is a function's asynchronous invocation settings.
type Policy struct {
	// MaxRetries is how many times a failed invocation is run again (0-2).
	MaxRetries int
	// MaxAge is how long after it was accepted an event may still run.
	MaxAge time.Duration
	// OnSuccess and OnFailure, if set, get the invocation record of an
	// event that succeeded, or that failed for good (retries exhausted, or
	// too old to run).
	OnSuccess, OnFailure *Destination
}

// DefaultPolicy is Lambda's: two retries, six hours.
var DefaultPolicy = Policy{MaxRetries: 2, MaxAge: 6 * time.Hour}

// Result is how an event's invocation ended.
type Result int

const (
	// Succeeded: the function ran and returned.
	Succeeded Result = iota
	// Failed: the function ran and failed (an error, a timeout, a crash):
	// an attempt, retried while attempts remain.
	Failed
	// NotRun: the invocation could not start (no capacity, no pod that
	// can run it); not an attempt, tried again after a delay.
	NotRun
	// Gone: the function does not exist any more; the event is dropped.
	Gone
)

// ErrFull is returned by Publish when the queue is at its size limit.
var ErrFull = errors.New("the event queue is full")

// ErrUnavailable is returned by Publish when no server acknowledged the
// event: it is not stored.
var ErrUnavailable = errors.New("the event queue is unavailable")

// Queue is the activator's side of the event stream.
type Queue struct {
	cfg  Config
	nc   *nats.Conn
	js   jetstream.JetStream
	cons jetstream.Consumer
	m    *metrics
	// running is the number of events this activator runs now.
	running atomic.Int64
	// shares holds, for each function (namespace/name) with events here,
	// its running events' places.
	mu     sync.Mutex
	shares map[string]*share
}

// connect opens the connection the queue uses: reconnecting for ever, and
// keeping no publish while disconnected (it would reach the server after
// the reconnection and store an event whose caller was told it was not
// accepted, 503, which would then run).
func connect(cfg Config, name string, more ...nats.Option) (*nats.Conn, jetstream.JetStream, error) {
	log := cfg.Log
	opts := append([]nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: closed on purpose
				log.Warn("event queue: disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("event queue: reconnected", "server", c.ConnectedUrlRedacted()) }),
	}, more...)
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to NATS at %s: %w", cfg.URL, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// Open connects, and creates or updates the stream and the consumer (the
// activators race for it; the settings are the same).
func Open(ctx context.Context, cfg Config) (*Queue, error) {
	cfg.defaults()
	nc, js, err := connect(cfg, "lambdapod-activator")
	if err != nil {
		return nil, err
	}
	q := &Queue{cfg: cfg, nc: nc, js: js, shares: map[string]*share{}}
	if err := q.ensure(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	q.m = newMetrics(cfg.Registerer, q)
	return q, nil
}

// ensure creates or updates the stream and the consumer: at the start,
// and again when the server lost them (a NATS whose store was wiped).
func (q *Queue) ensure(ctx context.Context) error {
	cfg := q.cfg
	if _, err := q.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        cfg.Stream,
		Description: "lambdapod: accepted Event invocations, until they ran",
		Subjects:    []string{SubjectPrefix + ">"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		MaxBytes:    cfg.MaxBytes,
		MaxAge:      cfg.MaxAge,
		Discard:     jetstream.DiscardNew,
		Duplicates:  2 * time.Minute,
	}); err != nil {
		return fmt.Errorf("stream %s: %w", cfg.Stream, err)
	}
	cons, err := q.js.CreateOrUpdateConsumer(ctx, cfg.Stream, jetstream.ConsumerConfig{
		Durable:       cfg.Consumer,
		Description:   "lambdapod activators: run the accepted Event invocations",
		FilterSubject: SubjectPrefix + ">",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: 100000,
	})
	if err != nil {
		return fmt.Errorf("consumer %s of stream %s: %w", cfg.Consumer, cfg.Stream, err)
	}
	q.cons = cons
	return nil
}

// Close drops the connection; unacknowledged events go to another
// activator after the ack wait.
func (q *Queue) Close() { q.nc.Close() }

// Publish stores a new event and returns once the server acknowledged it
// (ErrFull, ErrUnavailable otherwise). Publishing the same request id again
// within two minutes stores it once.
func (q *Queue) Publish(ctx context.Context, ev *Event) error {
	if ev.Attempt == 0 {
		ev.Attempt = 1
	}
	ctx, cancel := context.WithTimeout(ctx, q.cfg.PublishTimeout)
	defer cancel()
	_, err := q.js.PublishMsg(ctx, ev.message(), jetstream.WithMsgID(ev.RequestID+"#"+strconv.Itoa(ev.Attempt)),
		jetstream.WithExpectStream(q.cfg.Stream))
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode != jetstream.JSErrCodeStreamMessageExceedsMaximum &&
			strings.Contains(apiErr.Description, "maximum") {
			// The stream's limit (DiscardNew): "maximum bytes exceeded".
			q.m.published.WithLabelValues("full").Inc()
			return fmt.Errorf("%w: %v", ErrFull, err)
		}
		q.m.published.WithLabelValues("error").Inc()
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if ev.Attempt == 1 {
		q.m.published.WithLabelValues("ok").Inc()
	}
	return nil
}

func (ev *Event) message() *nats.Msg {
	m := nats.NewMsg(SubjectPrefix + ev.Namespace + "." + ev.Name)
	m.Data = ev.Payload
	h := m.Header
	h.Set(HeaderRequestID, ev.RequestID)
	h.Set(HeaderAttempt, strconv.Itoa(ev.Attempt))
	h.Set(HeaderAccepted, ev.Accepted.UTC().Format(time.RFC3339Nano))
	if !ev.notBefore.IsZero() {
		h.Set(HeaderNotBefore, ev.notBefore.UTC().Format(time.RFC3339Nano))
	}
	if ev.ClientContext != "" {
		h.Set(HeaderClientContext, ev.ClientContext)
	}
	if ev.TraceID != "" {
		h.Set(HeaderTraceID, ev.TraceID)
	}
	return m
}

// decode reads an event back from its message.
func decode(msg jetstream.Msg) (*Event, error) {
	rest, ok := strings.CutPrefix(msg.Subject(), SubjectPrefix)
	ns, name, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 || ns == "" || name == "" {
		return nil, fmt.Errorf("subject %q is not %s<namespace>.<name>", msg.Subject(), SubjectPrefix)
	}
	h := msg.Headers()
	ev := &Event{Namespace: ns, Name: name, RequestID: h.Get(HeaderRequestID), Payload: msg.Data(),
		ClientContext: h.Get(HeaderClientContext), TraceID: h.Get(HeaderTraceID)}
	var err error
	if ev.Attempt, err = strconv.Atoi(h.Get(HeaderAttempt)); err != nil || ev.Attempt < 1 {
		return nil, fmt.Errorf("header %s %q", HeaderAttempt, h.Get(HeaderAttempt))
	}
	if ev.Accepted, err = time.Parse(time.RFC3339Nano, h.Get(HeaderAccepted)); err != nil {
		return nil, fmt.Errorf("header %s: %w", HeaderAccepted, err)
	}
	if v := h.Get(HeaderNotBefore); v != "" {
		if ev.notBefore, err = time.Parse(time.RFC3339Nano, v); err != nil {
			return nil, fmt.Errorf("header %s: %w", HeaderNotBefore, err)
		}
	}
	if ev.RequestID == "" {
		return nil, fmt.Errorf("no %s header", HeaderRequestID)
	}
	return ev, nil
}

// Runner runs one event's invocation. keep says whether the function's
// answer is wanted in the Outcome (a destination will get it).
type Runner func(ctx context.Context, ev *Event, keep bool) Outcome

// Run pulls events and runs them, at most Concurrency at once, until ctx
// ends; then it waits for those running.
func (q *Queue) Run(ctx context.Context, policy func(namespace, name string) (Policy, bool), run Runner) {
	slots := make(chan struct{}, q.cfg.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	for ctx.Err() == nil {
		// One free slot at least, then as many as are free.
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		n := 1
		for n < q.cfg.Concurrency {
			select {
			case slots <- struct{}{}:
				n++
				continue
			default:
			}
			break
		}
		batch, err := q.cons.Fetch(n, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			for range n {
				<-slots
			}
			if ctx.Err() == nil {
				q.cfg.Log.Warn("event queue: fetching events", "err", err)
				q.recreate(ctx, err)
				select {
				case <-time.After(time.Second):
				case <-ctx.Done():
				}
			}
			continue
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				q.handle(ctx, msg, policy, run)
			}()
		}
		for range n - got {
			<-slots
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && ctx.Err() == nil {
			q.cfg.Log.Warn("event queue: fetching events", "err", err)
			q.recreate(ctx, err)
		}
	}
}

// recreate makes the stream and the consumer again when err says the
// server does not have them (its store was lost): without them no event
// is accepted or run until an activator restarts.
func (q *Queue) recreate(ctx context.Context, err error) {
	if !errors.Is(err, jetstream.ErrConsumerNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) &&
		!errors.Is(err, jetstream.ErrNoStreamResponse) && !errors.Is(err, nats.ErrNoResponders) {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := q.ensure(ctx); err != nil {
		q.cfg.Log.Warn("event queue: the server lost the stream or the consumer; making them again failed", "err", err)
		return
	}
	q.cfg.Log.Warn("event queue: the server had lost the stream or the consumer; made them again")
}

// handle runs one delivered event and settles its message.
func (q *Queue) handle(ctx context.Context, msg jetstream.Msg, policy func(namespace, name string) (Policy, bool), run Runner) {
	log := q.cfg.Log
	ev, err := decode(msg)
	if err != nil {
		// Not an event of ours: it would come back for ever.
		log.Error("event queue: dropping a message that is no event", "subject", msg.Subject(), "err", err)
		q.m.ended.WithLabelValues("malformed").Inc()
		_ = msg.Term()
		return
	}
	log = log.With("function", ev.Namespace+"/"+ev.Name, "requestId", ev.RequestID, "attempt", ev.Attempt)
	if wait := time.Until(ev.notBefore); wait > 0 {
		// A retry, early: back when it is due.
		_ = msg.NakWithDelay(wait)
		return
	}
	pol, ok := policy(ev.Namespace, ev.Name)
	if !ok {
		log.Warn("event dropped: the function does not exist")
		q.m.ended.WithLabelValues("gone").Inc()
		q.ack(msg, log)
		return
	}
	if age := time.Since(ev.Accepted); age > pol.MaxAge {
		log.Warn("event dropped: older than the function's maximum event age", "age", age.Round(time.Second), "maxAge", pol.MaxAge)
		q.m.ended.WithLabelValues("expired").Inc()
		if pol.OnFailure != nil {
			q.deliver(context.WithoutCancel(ctx), pol.OnFailure, ev, NewRecord(q.cfg.Region, ev, ConditionEventAgeExceeded, ev.Attempt-1, nil, time.Now()), log)
		}
		q.ack(msg, log)
		return
	}

	key := ev.Namespace + "/" + ev.Name
	if !q.take(ctx, key) {
		// This function had its share of the slots for ShareWait: the
		// event waits in the stream, not in a slot another function's
		// event could use.
		q.m.notRun.Inc()
		_ = msg.NakWithDelay(q.cfg.NotRunDelay)
		return
	}
	defer q.give(key)

	// While it runs (held at zero, then the function's timeout), the
	// server hears that it is in progress.
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(q.cfg.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	// Neither the run nor its record is cut short by a stop: the
	// activator waits for both before it settles the message.
	ctx = context.WithoutCancel(ctx)
	q.running.Add(1)
	out := run(ctx, ev, pol.OnSuccess != nil || pol.OnFailure != nil)
	q.running.Add(-1)

	// Destinations hear of the end before the message is settled: an
	// activator that dies in between leaves the event to run again, and
	// its record to be queued again under the same id.
	switch out.Result {
	case Succeeded:
		q.m.ended.WithLabelValues("succeeded").Inc()
		if pol.OnSuccess != nil {
			q.deliver(ctx, pol.OnSuccess, ev, NewRecord(q.cfg.Region, ev, ConditionSuccess, ev.Attempt, &out, time.Now()), log)
		}
		q.ack(msg, log)
	case Gone:
		log.Warn("event dropped: the function does not exist")
		q.m.ended.WithLabelValues("gone").Inc()
		q.ack(msg, log)
	case NotRun:
		q.m.notRun.Inc()
		_ = msg.NakWithDelay(q.cfg.NotRunDelay)
	case Failed:
		if ev.Attempt > pol.MaxRetries {
			log.Warn("event failed: retries exhausted", "maxRetries", pol.MaxRetries)
			q.m.ended.WithLabelValues("retries_exhausted").Inc()
			if pol.OnFailure != nil {
				q.deliver(ctx, pol.OnFailure, ev, NewRecord(q.cfg.Region, ev, ConditionRetriesExhausted, ev.Attempt, &out, time.Now()), log)
			}
			q.ack(msg, log)
			return
		}
		next := *ev
		next.Attempt++
		next.notBefore = time.Now().Add(q.cfg.RetryDelay << (ev.Attempt - 1))
		if err := q.Publish(ctx, &next); err != nil {
			// Not stored: the same attempt comes back later instead.
			log.Warn("event queue: could not store the retry; the attempt will run again", "err", err)
			_ = msg.NakWithDelay(q.cfg.RetryDelay)
			return
		}
		log.Info("event failed: retrying", "due", next.notBefore.Format(time.RFC3339))
		q.m.retried.Inc()
		q.ack(msg, log)
	}
}

// share is one function's places among the events running here.
type share struct {
	places chan struct{} // one element per running event, PerFunction at most
	// Under Queue.mu: the events running or waiting for a place (the share
	// goes with the last), when one of its events last ended, and whether
	// an event waited ShareWait for a place with none ending meanwhile.
	users   int
	lastEnd time.Time
	stalled bool
}

// take counts an event of key as running, or reports false when it should
// go back to the stream. If key has PerFunction events running, the event
// waits for one of them to end (Go hands a freed place to the longest
// waiter) for as long as they do end, at least one every ShareWait: a
// busy function's events then run at its pods' pace, without the delay of
// a trip through the stream. A function none of whose events ended in
// ShareWait is held (at zero, its pods failing): its events go back to
// the stream at once from then on, until one ends, and leave the slots to
// other functions. A waiting event keeps its slot, so the queue takes no
// more events from the stream than it has slots for; it waits at most a
// third of AckWait, within which the server does not hand it to another
// activator.
func (q *Queue) take(ctx context.Context, key string) bool {
	q.mu.Lock()
	sh := q.shares[key]
	if sh == nil {
		sh = &share{places: make(chan struct{}, q.cfg.PerFunction)}
		q.shares[key] = sh
	}
	sh.users++
	stalled := sh.stalled
	q.mu.Unlock()
	select {
	case sh.places <- struct{}{}:
		return true
	default:
	}
	if stalled {
		q.leave(key, sh)
		return false
	}
	start := time.Now()
	t := time.NewTimer(q.cfg.ShareWait)
	defer t.Stop()
	for {
		select {
		case sh.places <- struct{}{}:
			return true
		case <-ctx.Done():
			q.leave(key, sh)
			return false
		case now := <-t.C:
			q.mu.Lock()
			progressed := now.Sub(sh.lastEnd) < q.cfg.ShareWait
			if !progressed {
				sh.stalled = true
			}
			q.mu.Unlock()
			if !progressed || now.Sub(start) >= q.cfg.AckWait/3 {
				q.leave(key, sh)
				return false
			}
			t.Reset(q.cfg.ShareWait)
		}
	}
}

// give frees the place of a running event of key, which ended.
func (q *Queue) give(key string) {
	q.mu.Lock()
	sh := q.shares[key]
	sh.lastEnd, sh.stalled = time.Now(), false
	q.mu.Unlock()
	<-sh.places
	q.leave(key, sh)
}

// leave forgets a function with no event here any more.
func (q *Queue) leave(key string, sh *share) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if sh.users--; sh.users == 0 {
		delete(q.shares, key)
	}
}

func (q *Queue) ack(msg jetstream.Msg, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), q.cfg.PublishTimeout)
	defer cancel()
	// DoubleAck: the message is settled only once the server says so.
	if err := msg.DoubleAck(ctx); err != nil {
		log.Warn("event queue: acknowledging; the event may run again", "err", err)
	}
}

// Running is the number of events this activator runs now.
func (q *Queue) Running() int { return int(q.running.Load()) }

// Dial connects to the queue to publish events only (the manager's
// schedules, its count of pending events): it neither creates the stream
// (the activators do, with their settings) nor consumes. Run must not be
// called on it. Publishing before an activator made the stream fails.
func Dial(cfg Config) (*Queue, error) {
	cfg.defaults()
	// Connect even while the server is away: the reconciler retries what
	// it could not publish.
	nc, js, err := connect(cfg, "lambdapod-manager", nats.RetryOnFailedConnect(true))
	if err != nil {
		return nil, err
	}
	return &Queue{cfg: cfg, nc: nc, js: js, m: newMetrics(nil, nil)}, nil
}

// Pending counts the events in the queue (waiting, due later, running)
// per function, keyed namespace/name.
func (q *Queue) Pending(ctx context.Context) (map[string]int64, error) {
	s, err := q.js.Stream(ctx, q.cfg.Stream)
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(SubjectPrefix+">"))
	if err != nil {
		return nil, err
	}
	n := make(map[string]int64, len(info.State.Subjects))
	for subj, c := range info.State.Subjects {
		rest, ok := strings.CutPrefix(subj, SubjectPrefix)
		ns, name, ok2 := strings.Cut(rest, ".")
		if ok && ok2 {
			n[ns+"/"+name] += int64(c)
		}
	}
	return n, nil
}
