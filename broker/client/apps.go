package client

import (
	"context"

	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// ListTenantsAndApps is ListTenants with the apps of the tenants it lists
// (every app, for brokerd's own uid and root), sorted by name: their
// client ids, authority hosts and required roles. It never carries a token
// or a secret.
func (c *Client) ListTenantsAndApps(ctx context.Context) ([]*brokerv1.TenantStatus, []*brokerv1.AppStatus, error) {
	resp, err := c.api.ListTenants(ctx, &brokerv1.ListTenantsRequest{})
	if err != nil {
		return nil, nil, err
	}
	return resp.GetTenants(), resp.GetApps(), nil
}
