package schedule

import (
	"strings"
	"testing"
	"time"
)

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestNext(t *testing.T) {
	anchor := at("2026-11-30T08:00:30Z")
	for _, c := range []struct {
		expr, after string
		want        []string
	}{
		{"rate(1 minute)", "2026-11-30T08:00:00Z", []string{"2026-11-30T08:00:30Z", "2026-11-30T08:01:30Z", "2026-11-30T08:02:30Z"}},
		{"rate(5 minutes)", "2026-11-30T08:07:00Z", []string{"2026-11-30T08:10:30Z", "2026-11-30T08:15:30Z"}},
		{"rate(1 hour)", "2026-11-30T08:00:30Z", []string{"2026-11-30T09:00:30Z"}},
		{"rate(2 days)", "2026-12-01T00:00:00Z", []string{"2026-12-02T08:00:30Z"}},
		// Every day at noon.
		{"cron(0 12 * * ? *)", "2026-11-30T12:00:00Z", []string{"2026-12-01T12:00:00Z", "2026-12-02T12:00:00Z"}},
		// Every 15 minutes, 8-17, Monday to Friday (2026-12-04 is a Friday).
		{"cron(0/15 8-17 ? * MON-FRI *)", "2026-12-04T17:40:00Z", []string{"2026-12-04T17:45:00Z", "2026-12-07T08:00:00Z"}},
		// The same days by number: 2-6 is MON-FRI in EventBridge.
		{"cron(0/15 8-17 ? * 2-6 *)", "2026-12-04T17:40:00Z", []string{"2026-12-04T17:45:00Z", "2026-12-07T08:00:00Z"}},
		// 1 is Sunday, 7 Saturday.
		{"cron(0 10 ? * 1 *)", "2026-11-30T00:00:00Z", []string{"2026-12-06T10:00:00Z"}},
		{"cron(0 10 ? * 7 *)", "2026-11-30T00:00:00Z", []string{"2026-12-05T10:00:00Z"}},
		// The first Monday of the month (2#1), the last Friday (6L).
		{"cron(0 9 ? * 2#1 *)", "2026-11-30T10:00:00Z", []string{"2026-12-07T09:00:00Z"}},
		{"cron(0 9 ? * 6L *)", "2026-11-30T10:00:00Z", []string{"2026-12-25T09:00:00Z"}},
		// The last day of the month; a year field.
		{"cron(0 0 L * ? *)", "2026-11-30T10:00:00Z", []string{"2026-12-31T00:00:00Z"}},
		{"cron(30 6 1 1 ? 2028)", "2026-11-30T10:00:00Z", []string{"2028-01-01T06:30:00Z"}},
	} {
		s, err := Parse(c.expr, anchor)
		if err != nil {
			t.Errorf("%s: %v", c.expr, err)
			continue
		}
		got, prev := []string{}, at(c.after)
		for range c.want {
			prev = s.Next(prev)
			got = append(got, prev.Format(time.RFC3339))
		}
		if strings.Join(got, " ") != strings.Join(c.want, " ") {
			t.Errorf("%s after %s: %v, want %v", c.expr, c.after, got, c.want)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	for expr, want := range map[string]string{
		"rate(0 minutes)":      "positive whole number",
		"rate(1 minutes)":      "singular",
		"rate(5 minute)":       "singular",
		"rate(5 weeks)":        "minute, hour or day",
		"every 5 minutes":      "neither rate",
		"cron(0 12 * * *)":     "six fields",
		"cron(0 12 * * * *)":   "exactly one of day-of-month and day-of-week",
		"cron(0 12 ? * ? *)":   "exactly one of day-of-month and day-of-week",
		"cron(0 12 ? * 8 *)":   "days of week are 1-7",
		"cron(0 25 * * ? *)":   "cron(0 25",
		"cron(0 12 * FOO ? *)": "cron(0 12",
	} {
		_, err := Parse(expr, time.Now())
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one that says %q", expr, err, want)
		}
	}
}
