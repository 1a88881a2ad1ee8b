package broker

import (
	"context"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
)

// noCache is an MSAL cache accessor that empties MSAL's token cache before
// every call. MSAL would otherwise answer AcquireTokenByCredential from its
// cache until 5 minutes before expiry, so a proactive refresh would hand
// back the old token; the broker's own cache is the one that decides. The
// tenant discovery document is held by the client, not this cache, so it is
// still fetched once per client.
type noCache struct{}

func (noCache) Replace(_ context.Context, u cache.Unmarshaler, _ cache.ReplaceHints) error {
	return u.Unmarshal([]byte("{}"))
}

func (noCache) Export(context.Context, cache.Marshaler, cache.ExportHints) error { return nil }
