package runtimeapi

import (
	"context"
	"io"
	"net/http"
	"time"

	"github.com/lambdapod/lambdapod/runtime-sidecar/extensions"
	"github.com/lambdapod/lambdapod/runtime-sidecar/invocation"
	"github.com/lambdapod/lambdapod/runtime-sidecar/process"
	"github.com/lambdapod/lambdapod/runtime-sidecar/telemetry"
)

// The Telemetry API and the Logs API: the extensions' subscriptions (the
// hub in package telemetry delivers) and the platform events of the
// slots' life cycle. With nobody subscribed after Init, none of this
// builds an event.

const (
	pathTelemetry = "/2022-07-01/telemetry"
	pathLogs      = "/2020-08-15/logs"

	// maxSubscription bounds a subscription body.
	maxSubscription = 64 << 10
	// telemetryFlushTime bounds the delivery of pending events when the
	// extensions are stopped.
	telemetryFlushTime = time.Second
)

// tel is the hub when events are wanted, else nil.
func (p *Pool) tel() *telemetry.Hub {
	if h := p.cfg.Telemetry; h.Active() {
		return h
	}
	return nil
}

// subscribe is PUT /2022-07-01/telemetry and PUT /2020-08-15/logs.
func (s *Slot) subscribe(w http.ResponseWriter, r *http.Request, api telemetry.API) {
	if r.Method != http.MethodPut {
		writeJSON(w, http.StatusMethodNotAllowed, bodyMethodNotAllowed)
		return
	}
	info, ok := s.pool.ext.Identify(w, r)
	if !ok {
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxSubscription+1))
	if err != nil {
		extensions.WriteError(w, http.StatusBadRequest, api.ValidationErrorType(), "cannot read the request body: "+err.Error())
		return
	}
	if len(body) > maxSubscription {
		extensions.WriteError(w, http.StatusBadRequest, api.ValidationErrorType(), "the subscription is larger than 64 KiB")
		return
	}
	h := s.pool.cfg.Telemetry
	if h == nil {
		extensions.WriteError(w, http.StatusInternalServerError, "ServiceException", "telemetry is not available")
		return
	}
	status, resp := h.Subscribe(api, info.Name, body)
	writeJSON(w, status, resp)
}

// telInitStart publishes platform.initStart: the slot started a bootstrap
// at start.
func (s *Slot) telInitStart(start time.Time) {
	h := s.pool.tel()
	if h == nil {
		return
	}
	h.Publish(telemetry.CategoryPlatform, telemetry.Event{Time: start, Type: telemetry.TypeInitStart, Record: telemetry.InitStart{
		InitializationType: "on-demand", Phase: "init",
		FunctionName: s.pool.cfg.Function.Name, FunctionVersion: s.pool.cfg.Version,
	}})
}

// telInitDone publishes platform.initRuntimeDone and platform.initReport
// of the slot's bootstrap: it called /next (errorType "") or failed its
// init.
func (s *Slot) telInitDone(d time.Duration, errorType string) {
	h := s.pool.tel()
	if h == nil {
		return
	}
	status := telemetry.StatusSuccess
	if errorType != "" {
		status = telemetry.StatusError
	}
	now := time.Now()
	h.Publish(telemetry.CategoryPlatform, telemetry.Event{Time: now, Type: telemetry.TypeInitRuntimeDone, Record: telemetry.InitRuntimeDone{
		InitializationType: "on-demand", Phase: "init", Status: status, ErrorType: errorType,
	}})
	h.Publish(telemetry.CategoryPlatform, telemetry.Event{Time: now, Type: telemetry.TypeInitReport, Record: telemetry.InitReport{
		InitializationType: "on-demand", Phase: "init", Status: status, ErrorType: errorType,
		Metrics: telemetry.InitReportMetrics{DurationMs: telemetry.Millis(d)},
	}})
}

// telInitPassed runs when the slot's Init is over (its runtime and the
// extensions called /next): once every slot's is, the extensions are
// reported (platform.extension) and subscriptions close, as on Lambda.
func (p *Pool) telInitPassed() {
	h := p.cfg.Telemetry
	if h == nil {
		return
	}
	for _, s := range p.slots {
		s.mu.Lock()
		passed := s.initPassed
		s.mu.Unlock()
		if !passed {
			return
		}
	}
	p.telMu.Lock()
	done := p.telInitReported
	p.telInitReported = true
	p.telMu.Unlock()
	if done {
		return
	}
	if h.Active() {
		now := time.Now()
		for _, e := range p.ext.Registered() {
			h.Publish(telemetry.CategoryPlatform, telemetry.Event{Time: now, Type: telemetry.TypeExtension,
				Record: telemetry.ExtensionState{Name: e.Name, State: "Ready", Events: nonNil(e.Events)}})
		}
	}
	h.CloseSubscriptions()
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// telStart publishes platform.start.
func (s *Slot) telStart(inv *invocation.Invocation) {
	h := s.pool.tel()
	if h == nil {
		return
	}
	h.Publish(telemetry.CategoryPlatform, telemetry.Event{Time: inv.StartTime, Type: telemetry.TypeStart,
		Record: telemetry.Start{RequestID: inv.ID, Version: s.pool.cfg.Version}})
}

// telEnd publishes platform.runtimeDone and platform.report of an
// invocation that ended (and, for the Logs API, platform.fault when its
// bootstrap died).
func (s *Slot) telEnd(h *telemetry.Hub, rep *process.Report, maxMB int) {
	now := time.Now()
	if rep.ErrorType == "Runtime.ExitError" {
		h.Publish(telemetry.CategoryPlatform, telemetry.Event{Time: now, Type: telemetry.TypeFault,
			Record: "RequestId: " + rep.RequestID + " Process exited before completing request"})
	}
	h.Publish(telemetry.CategoryPlatform, telemetry.Event{Time: now, Type: telemetry.TypeRuntimeDone, Record: rep.RuntimeDone()})
	h.Publish(telemetry.CategoryPlatform, telemetry.Event{Time: now, Type: telemetry.TypeReport, Record: rep.Record(maxMB)})
}

// telFlush delivers what subscribers have pending before the extensions
// are told to shut down.
func (p *Pool) telFlush() {
	h := p.cfg.Telemetry
	if !h.Active() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), telemetryFlushTime)
	defer cancel()
	h.Flush(ctx)
}

// telReset ends the subscriptions of extensions that were stopped; the
// next environment's extensions subscribe again during its Init.
func (p *Pool) telReset() {
	h := p.cfg.Telemetry
	if h == nil {
		return
	}
	h.Reset()
	p.telMu.Lock()
	p.telInitReported = false
	p.telMu.Unlock()
}
