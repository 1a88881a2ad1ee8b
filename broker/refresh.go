package broker

import "time"

// refreshAt is the refresh rule: when a token issued at issued and expiring
// at expires should be replaced.
//
// The lead before expiry is refreshBefore, capped at half the lifetime so
// that short-lived tokens are still refreshed well before they expire, plus
// a random part of up to a tenth of the lifetime (jitter in [0,1) picks how
// much) so that tenants fetched together do not refresh together. A
// refresh_in hint from the IdP (refreshOn, zero when absent) can only move
// the refresh earlier. The result is never before issued.
func refreshAt(issued, expires, refreshOn time.Time, refreshBefore time.Duration, jitter float64) time.Time {
	lifetime := expires.Sub(issued)
	if lifetime <= 0 {
		return issued
	}
	lead := min(refreshBefore, lifetime/2) + time.Duration(jitter*float64(lifetime/10))
	at := expires.Add(-lead)
	if !refreshOn.IsZero() && refreshOn.Before(at) {
		at = refreshOn
	}
	if at.Before(issued) {
		return issued
	}
	return at
}

// Retry delays after a failed acquisition.
const (
	retryMin       = time.Second
	retryMax       = 5 * time.Minute
	retryPermanent = 10 * time.Minute
)

// retryAfter is how long to wait before the next attempt after the
// failures-th consecutive failure (1 for the first). Transient failures back
// off exponentially from retryMin to retryMax with jitter in [0,1) spreading
// the upper half of each step; the IdP's Retry-After is honoured when longer.
// Permanent failures (a rejected credential, a missing consent) are retried
// only every retryPermanent.
func retryAfter(failures int, transient bool, idpRetryAfter time.Duration, jitter float64) time.Duration {
	if !transient {
		return max(retryPermanent, idpRetryAfter)
	}
	d := retryMax
	if failures < 20 {
		d = min(retryMin<<(max(failures, 1)-1), retryMax)
	}
	d = d/2 + time.Duration(jitter*float64(d/2))
	return max(d, idpRetryAfter)
}
