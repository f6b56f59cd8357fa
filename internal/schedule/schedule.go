// Package schedule reads EventBridge schedule expressions, rate(...) and
// cron(...), and says when they fire. Times are UTC, as for EventBridge
// rules.
package schedule

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/cronexpr"
)

// Schedule says when an expression fires.
type Schedule interface {
	// Next is the first time the schedule fires strictly after t.
	// The zero time means never again.
	Next(t time.Time) time.Time
}

var rateRE = regexp.MustCompile(`^rate\(([1-9][0-9]*) (minute|minutes|hour|hours|day|days)\)$`)

// Parse reads expr. anchor is where a rate counts from (the times of
// rate(5 minutes) are anchor, anchor+5m, ...): EventBridge counts from
// the rule's creation; lambdapod from the Function's.
func Parse(expr string, anchor time.Time) (Schedule, error) {
	expr = strings.TrimSpace(expr)
	switch {
	case strings.HasPrefix(expr, "rate("):
		return parseRate(expr, anchor)
	case strings.HasPrefix(expr, "cron(") && strings.HasSuffix(expr, ")"):
		return parseCron(strings.TrimSuffix(strings.TrimPrefix(expr, "cron("), ")"))
	}
	return nil, fmt.Errorf("%q is neither rate(<value> <unit>) nor cron(<six fields>)", expr)
}

type rate struct {
	anchor time.Time
	every  time.Duration
}

func parseRate(expr string, anchor time.Time) (Schedule, error) {
	m := rateRE.FindStringSubmatch(expr)
	if m == nil {
		return nil, fmt.Errorf("%q: a rate is rate(<value> <unit>), the value a positive whole number, the unit minute, hour or day (minutes, hours, days when the value is not 1)", expr)
	}
	n, err := strconv.Atoi(m[1])
	if err != nil || n > 1_000_000 {
		return nil, fmt.Errorf("%q: the value is too large", expr)
	}
	unit := m[2]
	if (n == 1) != !strings.HasSuffix(unit, "s") {
		return nil, fmt.Errorf("%q: use the singular unit for 1 and the plural otherwise, e.g. rate(1 minute), rate(5 minutes)", expr)
	}
	every := map[string]time.Duration{"minute": time.Minute, "hour": time.Hour, "day": 24 * time.Hour}[strings.TrimSuffix(unit, "s")]
	return rate{anchor: anchor.UTC().Truncate(time.Second), every: time.Duration(n) * every}, nil
}

func (r rate) Next(t time.Time) time.Time {
	if t.Before(r.anchor) {
		return r.anchor
	}
	k := t.Sub(r.anchor)/r.every + 1
	return r.anchor.Add(k * r.every)
}

type cron struct{ e *cronexpr.Expression }

// parseCron reads EventBridge's six fields: minutes, hours, day of month,
// month, day of week (1-7 = SUN-SAT, or SUN-SAT), year. One of the two day
// fields must be ?.
func parseCron(s string) (Schedule, error) {
	f := strings.Fields(s)
	if len(f) != 6 {
		return nil, fmt.Errorf("cron(%s): want six fields (minutes hours day-of-month month day-of-week year), got %d", s, len(f))
	}
	if (f[2] == "?") == (f[4] == "?") {
		return nil, fmt.Errorf("cron(%s): exactly one of day-of-month and day-of-week must be ?, as in cron(0 12 * * ? *)", s)
	}
	dow, err := dowFromEventBridge(f[4])
	if err != nil {
		return nil, fmt.Errorf("cron(%s): day-of-week: %w", s, err)
	}
	f[4] = dow
	e, err := cronexpr.Parse(strings.Join(f, " "))
	if err != nil {
		return nil, fmt.Errorf("cron(%s): %w", s, err)
	}
	return cron{e}, nil
}

// dowFromEventBridge renumbers the days of week from EventBridge's 1-7
// (Sunday first) to 0-6: the numbers that name a day, not the week after
// # or a step after /.
func dowFromEventBridge(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); {
		if s[i] < '0' || s[i] > '9' {
			b.WriteByte(s[i])
			i++
			continue
		}
		j := i
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		if i > 0 && (s[i-1] == '#' || s[i-1] == '/') {
			b.WriteString(s[i:j])
		} else {
			n, _ := strconv.Atoi(s[i:j])
			if n < 1 || n > 7 {
				return "", fmt.Errorf("%d: days of week are 1-7 (SUN-SAT) or SUN-SAT", n)
			}
			b.WriteString(strconv.Itoa(n - 1))
		}
		i = j
	}
	return b.String(), nil
}

func (c cron) Next(t time.Time) time.Time { return c.e.Next(t.UTC()) }
