package telemetry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// SendTimeout bounds one delivery (a POST, or a batch written to a TCP
// subscriber): a subscriber that does not answer holds up only its own
// events, which wait in its bounded buffer.
var SendTimeout = 3 * time.Second

// bufferFactor: a subscriber's buffer holds up to this many batches' worth
// of events (bytes and items) before the oldest are dropped.
const bufferFactor = 4

// droppedReason is platform.logsDropped's reason.
const droppedReason = "Some logs were dropped because the downstream consumer is slower than the logs production rate"

// subscriber delivers one extension's events, one batch at a time.
type subscriber struct {
	name   string
	log    *slog.Logger
	client *http.Client

	mu       sync.Mutex
	sub      *Subscription
	queue    [][]byte // encoded events not yet delivered, oldest first, from head on
	head     int
	size     int // bytes in queue
	first    time.Time
	dropRecs int64 // dropped since the last platform.logsDropped
	dropSize int64
	flushing int
	inflight bool
	tcp      net.Conn

	wake chan struct{}
	stop chan struct{}
	done chan struct{}
}

func newSubscriber(name string, sub *Subscription, log *slog.Logger) *subscriber {
	s := &subscriber{
		name: name, sub: sub, log: log.With("extension", name, "api", sub.API.String()),
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	s.client = &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}}
	go s.run()
	return s
}

func (s *subscriber) subscription() *Subscription {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sub
}

// update takes a repeated subscription's settings (subscribing is
// idempotent: the subscription stays one).
func (s *subscriber) update(sub *Subscription) {
	s.mu.Lock()
	if s.tcp != nil && (sub.Protocol != "TCP" || sub.Addr != s.sub.Addr) {
		s.tcp.Close()
		s.tcp = nil
	}
	s.sub = sub
	s.mu.Unlock()
	s.poke()
}

func (s *subscriber) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// enqueue adds events; it never blocks: past the buffer's bound the
// oldest events are dropped (and counted for platform.logsDropped).
func (s *subscriber) enqueue(evs ...[]byte) {
	s.mu.Lock()
	wasEmpty := s.queued() == 0
	if wasEmpty {
		s.first = time.Now()
	}
	for _, e := range evs {
		s.queue = append(s.queue, e)
		s.size += len(e)
	}
	s.trimLocked()
	full := s.queued() >= s.sub.MaxItems || s.size >= s.sub.MaxBytes
	s.mu.Unlock()
	// The batch's timer starts with its first event.
	if full || wasEmpty {
		s.poke()
	}
}

func (s *subscriber) queued() int { return len(s.queue) - s.head }

// trimLocked drops the oldest events past the buffer's bound.
func (s *subscriber) trimLocked() {
	maxItems, maxBytes := bufferFactor*s.sub.MaxItems, bufferFactor*s.sub.MaxBytes
	for s.queued() > 1 && (s.queued() > maxItems || s.size > maxBytes) {
		e := s.queue[s.head]
		s.size -= len(e)
		s.dropRecs++
		s.dropSize += int64(len(e))
		s.queue[s.head] = nil
		s.head++
	}
	s.compactLocked()
}

// compactLocked moves the queue to the front of its array once the
// dropped and taken events make up half of it (amortised O(1) per event).
func (s *subscriber) compactLocked() {
	if s.head > 0 && s.head*2 >= len(s.queue) {
		n := copy(s.queue, s.queue[s.head:])
		clear(s.queue[n:])
		s.queue = s.queue[:n]
		s.head = 0
	}
}

// readyLocked reports whether a batch should go now, or else how long
// until its timeout (0: nothing queued).
func (s *subscriber) readyLocked(now time.Time) (bool, time.Duration) {
	if s.queued() == 0 {
		return s.dropRecs > 0, 0
	}
	if s.flushing > 0 || s.queued() >= s.sub.MaxItems || s.size >= s.sub.MaxBytes {
		return true, 0
	}
	wait := s.first.Add(s.sub.Timeout).Sub(now)
	return wait <= 0, wait
}

// takeLocked takes the next batch: up to MaxItems events and MaxBytes
// (at least one event), and the count of events lost since the last
// batch, which it begins with a platform.logsDropped for.
func (s *subscriber) takeLocked(now time.Time) (batch [][]byte, lost LogsDropped) {
	lost = LogsDropped{DroppedBytes: s.dropSize, DroppedRecords: s.dropRecs, Reason: droppedReason}
	s.dropRecs, s.dropSize = 0, 0
	size := 0
	for s.queued() > 0 && len(batch) < s.sub.MaxItems && (len(batch) == 0 || size+len(s.queue[s.head]) <= s.sub.MaxBytes) {
		e := s.queue[s.head]
		batch = append(batch, e)
		size += len(e)
		s.size -= len(e)
		s.queue[s.head] = nil
		s.head++
	}
	s.compactLocked()
	if s.queued() > 0 {
		s.first = now
	}
	return batch, lost
}

// putBackLocked returns a batch that could not be delivered to the front
// of the queue, to be tried again (within the buffer's bound).
func (s *subscriber) putBackLocked(batch [][]byte, lost LogsDropped) {
	s.dropRecs += lost.DroppedRecords
	s.dropSize += lost.DroppedBytes
	q := make([][]byte, 0, len(batch)+s.queued())
	q = append(q, batch...)
	q = append(q, s.queue[s.head:]...)
	for _, e := range batch {
		s.size += len(e)
	}
	s.queue, s.head = q, 0
	s.first = time.Now()
	s.trimLocked()
}

func (s *subscriber) run() {
	defer close(s.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	backoff := time.Duration(0)
	for {
		now := time.Now()
		s.mu.Lock()
		ready, wait := s.readyLocked(now)
		var batch [][]byte
		var lost LogsDropped
		var sub *Subscription
		if ready {
			batch, lost = s.takeLocked(now)
			sub = s.sub
			s.inflight = true
		}
		s.mu.Unlock()
		if !ready {
			if wait > 0 {
				timer.Reset(wait)
			}
			select {
			case <-s.wake:
			case <-timer.C:
			case <-s.stop:
				timer.Stop()
				return
			}
			timer.Stop()
			continue
		}
		out := batch
		if lost.DroppedRecords > 0 {
			out = append([][]byte{Event{Time: now, Type: TypeLogsDropped, Record: lost}.Encode()}, batch...)
		}
		err := s.send(sub, out)
		s.mu.Lock()
		s.inflight = false
		if err != nil {
			s.putBackLocked(batch, lost)
		}
		s.mu.Unlock()
		if err == nil {
			backoff = 0
			continue
		}
		// As Lambda does, keep the events and try again, backing off; the
		// buffer's bound keeps a subscriber that never answers from
		// costing more than that.
		backoff = min(max(2*backoff, 50*time.Millisecond), time.Second)
		s.log.Debug("cannot deliver telemetry events", "err", err, "retryIn", backoff)
		select {
		case <-time.After(backoff):
		case <-s.stop:
			return
		}
	}
}

// send delivers a batch: a JSON array POSTed (HTTP), or newline-delimited
// JSON (TCP).
func (s *subscriber) send(sub *Subscription, batch [][]byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), SendTimeout)
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	if sub.Protocol == "TCP" {
		return s.sendTCP(ctx, sub, batch)
	}
	var body bytes.Buffer
	body.WriteByte('[')
	for i, e := range batch {
		if i > 0 {
			body.WriteByte(',')
		}
		body.Write(e)
	}
	body.WriteByte(']')
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+sub.Addr+sub.Path, &body)
	if err != nil {
		return err
	}
	req.Host = net.JoinHostPort(SandboxHost, portOf(sub.Addr))
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("subscriber answered %s", resp.Status)
	}
	return nil
}

func (s *subscriber) sendTCP(ctx context.Context, sub *Subscription, batch [][]byte) error {
	s.mu.Lock()
	c := s.tcp
	s.mu.Unlock()
	if c == nil {
		var d net.Dialer
		var err error
		if c, err = d.DialContext(ctx, "tcp", sub.Addr); err != nil {
			return err
		}
		s.mu.Lock()
		s.tcp = c
		s.mu.Unlock()
	}
	deadline, _ := ctx.Deadline()
	_ = c.SetWriteDeadline(deadline)
	var buf bytes.Buffer
	for _, e := range batch {
		buf.Write(e)
		buf.WriteByte('\n')
	}
	if _, err := c.Write(buf.Bytes()); err != nil {
		c.Close()
		s.mu.Lock()
		if s.tcp == c {
			s.tcp = nil
		}
		s.mu.Unlock()
		return err
	}
	return nil
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// flush sends what is queued now, without waiting for the batch's
// timeout, and waits until it was delivered or ctx ends.
func (s *subscriber) flush(ctx context.Context) error {
	s.mu.Lock()
	s.flushing++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.flushing--
		s.mu.Unlock()
	}()
	s.poke()
	for {
		s.mu.Lock()
		idle := s.queued() == 0 && s.dropRecs == 0 && !s.inflight
		s.mu.Unlock()
		if idle {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.New("telemetry: " + s.name + " did not take its events in time")
		case <-s.done:
			return nil
		case <-time.After(2 * time.Millisecond):
		}
	}
}

func (s *subscriber) close() {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	if s.tcp != nil {
		s.tcp.Close()
	}
	s.mu.Unlock()
	s.client.CloseIdleConnections()
}
