package broker

import (
	"errors"
	"time"

	"github.com/tokenbroker/tokenbroker/keystore"
)

// Observer is told of the broker's requests to Entra ID and of its failed
// keystore calls, for metrics. Its methods are called without the broker's
// lock, from many goroutines at once, and must return quickly. They get no
// token, secret or caller string: a tenant is its configured name.
type Observer interface {
	// IdPRequest is told of each token request that reached for Entra ID
	// (Close's cancellations aside): the tenant, Entra ID's AADSTS code as
	// the broker classified it (0 when none), whether it gave a usable
	// token, and how long it took, the wait for a max_idp_requests slot
	// included.
	IdPRequest(tenant string, aadsts int, ok bool, took time.Duration)
	// KeystoreError is told of each keystore call that failed: op is
	// "get", "set" or "delete". A credential that is not stored is no
	// error.
	KeystoreError(op string)
}

// noObserver is the Observer of a broker without one.
type noObserver struct{}

func (noObserver) IdPRequest(string, int, bool, time.Duration) {}
func (noObserver) KeystoreError(string)                        {}

// observeStore tells the observer of a failed keystore call op.
func (b *Broker) observeStore(op string, err error) {
	if err != nil && !errors.Is(err, keystore.ErrNotFound) {
		b.obs.KeystoreError(op)
	}
}
