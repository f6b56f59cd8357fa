package autoscaler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"

	lambdapodv1alpha1 "github.com/lambdapod/lambdapod/api/v1alpha1"
	"github.com/lambdapod/lambdapod/internal/stats"
)

// What a caller of the report endpoint can make the autoscaler keep and do.
// Only the activators' ServiceAccounts may report (see the package doc);
// these bound memory and decisions all the same, for an activator gone
// wrong and for a manager run with -autoscaler-auth=false. The report's own
// limits (size, number of stats) are in package stats.
const (
	// maxActivators is the most activators whose reports are kept (the
	// chart runs two). A report from one more drops the oldest report.
	maxActivators = 64
	// maxLookupsPerReport is how many functions missing from the known
	// set one report may have looked up in the client's cache. Only
	// functions created since the last listing (at most an interval ago)
	// need it; the bound keeps a report of made-up names to a few lookups
	// even where the client is not cached.
	maxLookupsPerReport = 16
	// maxLoad caps the load counted for one function whatever its spec
	// says, so that sums over stats and activators stay far from
	// overflowing an int.
	maxLoad = 1e9
)

// load is a known function's figures from one report, clamped. Its key
// holds the known set's strings, not the report's, so that a kept report
// does not hold on to the decoded JSON.
type load struct {
	key types.NamespacedName
	// concurrency is the larger of the mean concurrency and in flight
	// plus queued.
	concurrency float64
	queued      int
	// traffic: anything in flight, queued or arriving.
	traffic bool
}

// fnInfo is what a report's stat is checked against.
type fnInfo struct {
	key types.NamespacedName
	// limit is the most load counted for the function from one report.
	limit float64
}

// loadLimit is the most load one report can count for f: what maxReplicas
// pods take at the target, times a headroom. Above maxReplicas × target any
// figure already asks for maxReplicas; the headroom (twice the panic
// threshold) keeps a real overload at maxReplicas able to start panic mode,
// which holds the pods through a burst, while a forged figure counts at
// most a few times what the function can take.
func (a *Autoscaler) loadLimit(f *lambdapodv1alpha1.Function) float64 {
	s := SpecOf(f)
	max, target := float64(s.Max), s.Target
	if max < 1 {
		max = 1
	}
	if target <= 0 {
		target = 1
	}
	return math.Min(max*target*2*math.Max(a.opts.PanicThreshold, 1), maxLoad)
}

// setKnown replaces the known functions with a listing.
func (a *Autoscaler) setKnown(fns []lambdapodv1alpha1.Function) {
	known := make(map[types.NamespacedName]fnInfo, len(fns))
	for i := range fns {
		k := types.NamespacedName{Namespace: fns[i].Namespace, Name: fns[i].Name}
		known[k] = fnInfo{key: k, limit: a.loadLimit(&fns[i])}
	}
	a.knownMu.Lock()
	a.known = known
	a.knownMu.Unlock()
}

// lookup says whether k is a function, from the known set or, for one
// created since the last listing, from the client (the manager's informer
// cache: no API call). *lookups counts the latter for the report.
func (a *Autoscaler) lookup(ctx context.Context, k types.NamespacedName, lookups *int) (fnInfo, bool) {
	a.knownMu.RLock()
	info, ok := a.known[k]
	a.knownMu.RUnlock()
	if ok {
		return info, true
	}
	// A name no Function can have is not worth a lookup.
	if len(validation.IsDNS1123Label(k.Namespace)) > 0 || len(validation.IsDNS1035Label(k.Name)) > 0 ||
		*lookups >= maxLookupsPerReport {
		return fnInfo{}, false
	}
	*lookups++
	var f lambdapodv1alpha1.Function
	if err := a.c.Get(ctx, k, &f); err != nil {
		if !apierrors.IsNotFound(err) {
			a.log.Debug("looking up a reported function", "function", k.String(), "err", err)
		}
		return fnInfo{}, false
	}
	info = fnInfo{key: k, limit: a.loadLimit(&f)}
	a.knownMu.Lock()
	a.known[k] = info
	a.knownMu.Unlock()
	return info, true
}

// admission sorts one report's stats as they are decoded: those of known
// functions are clamped and merged per function (a real activator sends one
// stat a function; a forged report must not count one several times); the
// rest are counted and dropped.
type admission struct {
	a       *Autoscaler
	ctx     context.Context
	index   map[types.NamespacedName]int
	loads   []load
	limits  []float64
	lookups int
	// ignored counts stats of functions that do not exist, clamped those
	// with a figure out of range.
	ignored, clamped int
}

func (a *Autoscaler) newAdmission(ctx context.Context) *admission {
	return &admission{a: a, ctx: ctx, index: map[types.NamespacedName]int{}}
}

func (ad *admission) add(s stats.Stat) {
	k := types.NamespacedName{Namespace: s.Namespace, Name: s.Name}
	i, seen := ad.index[k]
	if !seen {
		info, ok := ad.a.lookup(ad.ctx, k, &ad.lookups)
		if !ok {
			ad.ignored++
			return
		}
		i = len(ad.loads)
		ad.index[info.key] = i
		ad.loads = append(ad.loads, load{key: info.key})
		ad.limits = append(ad.limits, info.limit)
	}
	limit := ad.limits[i]
	inFlight, c1 := clampInt(s.InFlight, limit)
	queued, c2 := clampInt(s.Queued, limit)
	concurrency, c3 := clampFloat(s.Concurrency, limit)
	if c1 || c2 || c3 || s.Requests < 0 {
		ad.clamped++
	}
	if n := float64(inFlight + queued); n > concurrency {
		concurrency = n
	}
	l := &ad.loads[i]
	l.concurrency = math.Min(l.concurrency+concurrency, limit)
	l.queued = min(l.queued+queued, int(limit))
	l.traffic = l.traffic || inFlight > 0 || queued > 0 || s.Requests > 0
}

// clampFloat puts v in [0, limit]; NaN counts as 0.
func clampFloat(v, limit float64) (float64, bool) {
	switch {
	case !(v >= 0):
		return 0, true
	case v > limit:
		return limit, true
	}
	return v, false
}

func clampInt(v int, limit float64) (int, bool) {
	switch {
	case v < 0:
		return 0, true
	case float64(v) > limit:
		return int(limit), true
	}
	return v, false
}

// Ingest records a report from a Go caller, as the handler does one it
// decoded: only stats of functions that exist count, clamped.
func (a *Autoscaler) Ingest(ctx context.Context, rep stats.Report) {
	ad := a.newAdmission(ctx)
	for _, s := range rep.Stats {
		ad.add(s)
	}
	a.store(rep.Activator, ad)
}

// store records an activator's admitted stats in place of its previous
// report; functions with queued requests are evaluated at once.
func (a *Autoscaler) store(activator string, ad *admission) {
	if ad.ignored > 0 || ad.clamped > 0 {
		// One line a report, not a stat: a flood of forged stats must not
		// become a flood of log lines.
		a.log.Debug("report admitted in part", "activator", activator, "kept", len(ad.loads),
			"ignoredUnknownFunctions", ad.ignored, "clampedOutOfRange", ad.clamped)
	}
	now := a.now()
	var pokes []types.NamespacedName
	a.mu.Lock()
	if len(ad.loads) == 0 {
		// Nothing to count: the previous report goes (its load is over),
		// and an activator that only names unknown functions takes no slot.
		delete(a.reports, activator)
	} else {
		if _, ok := a.reports[activator]; !ok && len(a.reports) >= maxActivators {
			a.dropOldestReportLocked()
		}
		a.reports[activator] = activatorReport{at: now, loads: ad.loads}
	}
	for _, l := range ad.loads {
		st := a.stateLocked(l.key)
		if l.traffic {
			st.lastTraffic = now
		}
		if l.queued > 0 {
			pokes = append(pokes, l.key)
		}
	}
	a.mu.Unlock()
	for _, k := range pokes {
		select {
		case a.poke <- k:
		default:
		}
	}
}

func (a *Autoscaler) dropOldestReportLocked() {
	var oldest string
	var at time.Time
	for id, r := range a.reports {
		if at.IsZero() || r.at.Before(at) {
			oldest, at = id, r.at
		}
	}
	delete(a.reports, oldest)
}

var errTooManyStats = fmt.Errorf("a report lists at most %d stats", stats.MaxStats)

// decodeReport reads a stats.Report and hands each stat to add as it is
// decoded, so that a report costs memory for what is kept, not for what it
// lists: concurrent reports of made-up functions then cost little however
// many callers send them. It returns the activator's name.
func decodeReport(r io.Reader, add func(stats.Stat)) (string, error) {
	dec := json.NewDecoder(r)
	if err := expectDelim(dec, '{'); err != nil {
		return "", err
	}
	var activator string
	n := 0
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return "", err
		}
		switch key {
		case "activator":
			if err := dec.Decode(&activator); err != nil {
				return "", fmt.Errorf("activator: %w", err)
			}
		case "stats":
			t, err := dec.Token()
			if err != nil {
				return "", err
			}
			if t == nil { // null: no stats
				continue
			}
			if t != json.Delim('[') {
				return "", errors.New("stats: not an array")
			}
			for dec.More() {
				if n++; n > stats.MaxStats {
					return "", errTooManyStats
				}
				var s stats.Stat
				if err := dec.Decode(&s); err != nil {
					return "", fmt.Errorf("stat %d: %w", n, err)
				}
				add(s)
			}
			if err := expectDelim(dec, ']'); err != nil {
				return "", err
			}
		default:
			// A newer activator's field: skipped, as encoding/json would.
			if err := skipValue(dec); err != nil {
				return "", err
			}
		}
	}
	return activator, expectDelim(dec, '}')
}

func expectDelim(dec *json.Decoder, d json.Delim) error {
	t, err := dec.Token()
	if err != nil {
		return err
	}
	if t != d {
		return fmt.Errorf("expected '%c', got %v", rune(d), t)
	}
	return nil
}

// skipValue reads past one value token by token, without buffering it.
func skipValue(dec *json.Decoder) error {
	depth := 0
	for {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		switch t {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
		if depth == 0 {
			return nil
		}
	}
}

// serveReport is the handler's work once the request may be read.
func (a *Autoscaler) serveReport(w http.ResponseWriter, r *http.Request) {
	tooLarge := fmt.Sprintf("report too large: the autoscaler takes at most %d bytes", stats.MaxReportBytes)
	// A declared length over the cap is refused before a byte is read;
	// MaxBytesReader catches a report that lies or streams.
	if r.ContentLength > stats.MaxReportBytes {
		a.refuse(w, http.StatusRequestEntityTooLarge, tooLarge)
		return
	}
	ad := a.newAdmission(r.Context())
	activator, err := decodeReport(http.MaxBytesReader(w, r.Body, stats.MaxReportBytes), ad.add)
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		a.refuse(w, http.StatusRequestEntityTooLarge, tooLarge)
	case errors.Is(err, errTooManyStats):
		a.refuse(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("report lists too many stats: the autoscaler takes at most %d", stats.MaxStats))
	case err != nil:
		a.refuse(w, http.StatusBadRequest, "bad report: "+err.Error())
	case len(activator) > stats.MaxActivatorLen:
		a.refuse(w, http.StatusBadRequest, fmt.Sprintf("bad report: the activator's name has %d bytes, at most %d", len(activator), stats.MaxActivatorLen))
	default:
		a.store(activator, ad)
		w.WriteHeader(http.StatusAccepted)
	}
}

func (a *Autoscaler) refuse(w http.ResponseWriter, code int, msg string) {
	// Debug: whoever can reach the port could otherwise fill the log.
	a.log.Debug("report refused", "code", code, "reason", msg)
	// The body may be unread (a refused token, a report over the cap):
	// without this, net/http reads up to 256 KiB of it before it answers,
	// as long as the sender cares to take sending it.
	w.Header().Set("Connection", "close")
	http.Error(w, msg, code)
}
