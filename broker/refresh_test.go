package broker

import (
	"testing"
	"time"
)

func TestRefreshAt(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	tests := []struct {
		name          string
		lifetime      time.Duration
		refreshOn     time.Time
		refreshBefore time.Duration
		jitter        float64
		want          time.Time
	}{
		{"entra 60m, no jitter: 15m before expiry", time.Hour, time.Time{}, 15 * time.Minute, 0, at(45 * time.Minute)},
		{"entra 60m, full jitter: up to 6m more", time.Hour, time.Time{}, 15 * time.Minute, 1, at(39 * time.Minute)},
		{"entra 90m, half jitter", 90 * time.Minute, time.Time{}, 15 * time.Minute, 0.5, at(90*time.Minute - 15*time.Minute - 270*time.Second)},
		{"60s test token: capped at half the lifetime", time.Minute, time.Time{}, 15 * time.Minute, 0, at(30 * time.Second)},
		{"60s test token, full jitter", time.Minute, time.Time{}, 15 * time.Minute, 1, at(24 * time.Second)},
		{"20s token, half jitter", 20 * time.Second, time.Time{}, 15 * time.Minute, 0.5, at(9 * time.Second)},
		{"refresh_in earlier than the rule wins", time.Hour, at(30 * time.Minute), 15 * time.Minute, 0, at(30 * time.Minute)},
		{"refresh_in later than the rule is ignored", time.Hour, at(50 * time.Minute), 15 * time.Minute, 0, at(45 * time.Minute)},
		{"refresh_in before issue is clamped", time.Hour, at(-time.Minute), 15 * time.Minute, 0, t0},
		{"small refresh_before", time.Hour, time.Time{}, time.Minute, 0, at(59 * time.Minute)},
		{"expired on arrival: refresh now", 0, time.Time{}, 15 * time.Minute, 0, t0},
		{"negative lifetime: refresh now", -time.Minute, time.Time{}, 15 * time.Minute, 0.9, t0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := refreshAt(t0, t0.Add(tt.lifetime), tt.refreshOn, tt.refreshBefore, tt.jitter)
			if !got.Equal(tt.want) {
				t.Errorf("refreshAt = issued+%v, want issued+%v", got.Sub(t0), tt.want.Sub(t0))
			}
			if tt.lifetime > 0 && !got.Before(t0.Add(tt.lifetime)) {
				t.Errorf("refreshAt = issued+%v is not before expiry", got.Sub(t0))
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	tests := []struct {
		name      string
		failures  int
		transient bool
		idp       time.Duration
		jitter    float64
		want      time.Duration
	}{
		{"first transient, no jitter", 1, true, 0, 0, 500 * time.Millisecond},
		{"first transient, full jitter", 1, true, 0, 1, time.Second},
		{"third transient", 3, true, 0, 1, 4 * time.Second},
		{"capped", 12, true, 0, 1, retryMax},
		{"capped, no overflow", 100, true, 0, 0, retryMax / 2},
		{"zero failures treated as first", 0, true, 0, 1, time.Second},
		{"Retry-After longer than backoff wins", 1, true, 30 * time.Second, 1, 30 * time.Second},
		{"Retry-After shorter than backoff loses", 10, true, 30 * time.Second, 1, retryMax},
		{"permanent", 1, false, 0, 0.5, retryPermanent},
		{"permanent with longer Retry-After", 1, false, time.Hour, 0, time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := retryAfter(tt.failures, tt.transient, tt.idp, tt.jitter); got != tt.want {
				t.Errorf("retryAfter = %v, want %v", got, tt.want)
			}
		})
	}
}
