package telemetry

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Hub is the pool's set of subscriptions: one per extension (whichever
// API it subscribed through), and the events published to them.
type Hub struct {
	log      *slog.Logger
	jsonLogs bool
	onWant   func(function, extension bool)

	active atomic.Bool // some subscriber, or subscriptions still open

	mu      sync.Mutex
	subs    map[string]*subscriber
	closed  bool
	early   []earlyEvent // published while subscriptions are open, for those who subscribe later
	wantF   bool
	wantE   bool
	stopped bool
}

type earlyEvent struct {
	category string
	ev       Event
}

// maxEarly bounds the events kept for late subscribers (the init's).
const maxEarly = 256

// HubConfig configures a Hub.
type HubConfig struct {
	Log *slog.Logger
	// JSONLogs: the function's log format is JSON, so a log line that is
	// a JSON object is passed as that object rather than as a string.
	JSONLogs bool
	// OnWant is told whenever whether some subscriber takes function or
	// extension log lines changes, to start or stop collecting them.
	OnWant func(function, extension bool)
}

// NewHub returns a hub that takes subscriptions until CloseSubscriptions.
func NewHub(cfg HubConfig) *Hub {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	h := &Hub{log: cfg.Log, jsonLogs: cfg.JSONLogs, onWant: cfg.OnWant, subs: map[string]*subscriber{}}
	h.active.Store(true)
	return h
}

// Active reports whether events are wanted at all; when it is false,
// Publish costs nothing and callers need not build events.
func (h *Hub) Active() bool { return h != nil && h.active.Load() }

// Subscribe handles a subscription request of the extension name through
// api, answering as Lambda does: 200 "OK", 400 for a bad body, 403 once
// subscriptions are closed (after Init).
func (h *Hub) Subscribe(api API, name string, body []byte) (int, []byte) {
	sub, perr := ParseSubscription(api, body)
	if perr != nil {
		return perr.Status, perr.Body()
	}
	h.mu.Lock()
	if h.closed || h.stopped {
		h.mu.Unlock()
		e := &Error{http.StatusForbidden, api.String() + ".SubscriptionClosed", api.String() + " API subscription is closed"}
		return e.Status, e.Body()
	}
	s := h.subs[name]
	if s != nil && s.subscription().API != api {
		h.mu.Unlock()
		e := &Error{http.StatusBadRequest, api.ValidationErrorType(),
			"extension " + name + " is already subscribed through the " + s.subscription().API.String() + " API; an extension subscribes through one API"}
		return e.Status, e.Body()
	}
	if s != nil {
		s.update(sub)
	} else {
		s = newSubscriber(name, sub, h.log)
		h.subs[name] = s
		// What happened before (platform.initStart ...), as Lambda
		// replays the init's events to a subscriber.
		var evs [][]byte
		for _, e := range h.early {
			if sub.Wants(e.category) {
				evs = append(evs, encodeFor(sub, e.ev)...)
			}
		}
		if len(evs) > 0 {
			s.enqueue(evs...)
		}
	}
	f, x := h.wantsLocked()
	changed := f != h.wantF || x != h.wantE
	h.wantF, h.wantE = f, x
	h.mu.Unlock()
	h.log.Info("telemetry subscription", "extension", name, "api", api.String(), "types", sub.Types,
		"destination", sub.Protocol+" "+sub.Addr+sub.Path, "maxItems", sub.MaxItems, "maxBytes", sub.MaxBytes, "timeout", sub.Timeout)
	h.Publish(CategoryPlatform, Event{Time: time.Now(), Type: TypeTelemetrySubscription,
		Record: Subscribed{Name: name, State: "Subscribed", Types: sub.Types}})
	if changed && h.onWant != nil {
		h.onWant(f, x)
	}
	return http.StatusOK, []byte(`"OK"`)
}

func (h *Hub) wantsLocked() (function, extension bool) {
	for _, s := range h.subs {
		sub := s.subscription()
		function = function || sub.Wants(CategoryFunction)
		extension = extension || sub.Wants(CategoryExtension)
	}
	return
}

// Wants reports whether some subscriber takes events of category.
func (h *Hub) Wants(category string) bool {
	if !h.Active() {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.subs {
		if s.subscription().Wants(category) {
			return true
		}
	}
	return false
}

// Publish queues ev (of category) for every subscriber that takes it. It
// never blocks on a subscriber.
func (h *Hub) Publish(category string, ev Event) {
	if !h.Active() {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed && len(h.early) < maxEarly {
		h.early = append(h.early, earlyEvent{category, ev})
	}
	var tel, logs20, logs21 [][]byte
	done := [3]bool{}
	for _, s := range h.subs {
		sub := s.subscription()
		if !sub.Wants(category) {
			continue
		}
		// Encoded once per form, not per subscriber.
		var evs [][]byte
		switch {
		case sub.API == TelemetryAPI:
			if !done[0] {
				tel, done[0] = encodeFor(sub, ev), true
			}
			evs = tel
		case sub.SchemaVersion == "2021-03-18":
			if !done[2] {
				logs21, done[2] = encodeFor(sub, ev), true
			}
			evs = logs21
		default:
			if !done[1] {
				logs20, done[1] = encodeFor(sub, ev), true
			}
			evs = logs20
		}
		if len(evs) > 0 {
			s.enqueue(evs...)
		}
	}
}

// Line publishes a log line of the function or of an extension
// (category CategoryFunction or CategoryExtension) written at t.
func (h *Hub) Line(category string, t time.Time, line []byte) {
	if !h.Active() {
		return
	}
	typ := TypeFunction
	if category == CategoryExtension {
		typ = TypeExtensionLog
	}
	var rec any
	if h.jsonLogs && len(line) > 1 && line[0] == '{' && json.Valid(line) {
		rec = json.RawMessage(append([]byte(nil), line...))
	} else {
		rec = string(line)
	}
	h.Publish(category, Event{Time: t, Type: typ, Record: rec})
}

// encodeFor renders ev as sub's API has it: the Telemetry API takes the
// schema's events; the Logs API has platform.end and platform.report
// without status for a report, platform.runtimeDone only in schema
// 2021-03-18, platform.logsSubscription, platform.fault, and no init
// events.
func encodeFor(sub *Subscription, ev Event) [][]byte {
	if sub.API == TelemetryAPI {
		switch ev.Type {
		case TypeFault, TypeEnd, TypeLogsSubscription:
			return nil
		}
		return [][]byte{ev.Encode()}
	}
	switch ev.Type {
	case TypeInitStart, TypeInitRuntimeDone, TypeInitReport:
		return nil
	case TypeRuntimeDone:
		if sub.SchemaVersion != "2021-03-18" {
			return nil
		}
		r, _ := ev.Record.(RuntimeDone)
		return [][]byte{Event{ev.Time, ev.Type, struct {
			RequestID string `json:"requestId"`
			Status    string `json:"status"`
		}{r.RequestID, r.Status}}.Encode()}
	case TypeReport:
		r, _ := ev.Record.(Report)
		return [][]byte{
			Event{ev.Time, TypeEnd, struct {
				RequestID string `json:"requestId"`
			}{r.RequestID}}.Encode(),
			Event{ev.Time, TypeReport, struct {
				RequestID string        `json:"requestId"`
				Metrics   ReportMetrics `json:"metrics"`
			}{r.RequestID, r.Metrics}}.Encode(),
		}
	case TypeTelemetrySubscription:
		return [][]byte{Event{ev.Time, TypeLogsSubscription, ev.Record}.Encode()}
	}
	return [][]byte{ev.Encode()}
}

// CloseSubscriptions ends the time subscriptions are taken (Lambda takes
// them during Init); with nobody subscribed, the hub then goes idle.
func (h *Hub) CloseSubscriptions() {
	h.mu.Lock()
	h.closed = true
	h.early = nil
	h.active.Store(len(h.subs) > 0)
	h.mu.Unlock()
}

// Flush delivers what every subscriber has pending, waiting until it was
// taken or ctx ends (a subscriber that does not answer is given up on).
func (h *Hub) Flush(ctx context.Context) {
	h.mu.Lock()
	subs := make([]*subscriber, 0, len(h.subs))
	for _, s := range h.subs {
		subs = append(subs, s)
	}
	h.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.flush(ctx); err != nil {
				h.log.Warn("telemetry events not delivered", "extension", s.name, "err", err)
			}
		}()
	}
	wg.Wait()
}

// Reset ends every subscription (their extensions were stopped) and takes
// subscriptions again, for the next environment's Init.
func (h *Hub) Reset() {
	h.mu.Lock()
	subs := h.subs
	h.subs = map[string]*subscriber{}
	h.closed = false
	h.early = nil
	h.active.Store(!h.stopped)
	changed := h.wantF || h.wantE
	h.wantF, h.wantE = false, false
	h.mu.Unlock()
	for _, s := range subs {
		s.close()
	}
	if changed && h.onWant != nil {
		h.onWant(false, false)
	}
}

// Stop flushes (within ctx) and ends every subscription.
func (h *Hub) Stop(ctx context.Context) {
	h.Flush(ctx)
	h.mu.Lock()
	h.stopped = true
	subs := h.subs
	h.subs = map[string]*subscriber{}
	h.active.Store(false)
	h.mu.Unlock()
	for _, s := range subs {
		s.close()
	}
}
