package main

import (
	"fmt"
	"strings"
	"testing"

	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// Thousands of tenants added at once are summed up, not printed on one
// line; a path with a line break stays on one line.
func TestReloadSummary(t *testing.T) {
	var added []string
	for i := range 5000 {
		added = append(added, fmt.Sprintf("t%d", i))
	}
	got := reloadSummary(&brokerv1.ReloadResponse{ConfigPath: "/etc/tokenbroker/brokerd.toml\n", AddedTenants: added,
		RemovedTenants: []string{"old"}, UnchangedTenants: 3, Generation: 2})
	want := `reloaded /etc/tokenbroker/brokerd.toml (configuration 2): 5000 tenants added, 1 removed, 3 unchanged
added: t0, t1, t2, t3, t4, t5, t6, t7, t8, t9, t10, t11, t12, t13, t14, t15, t16, t17, t18, t19 and 4980 more
removed: old
`
	if got != want {
		t.Errorf("summary:\n%s\nwant:\n%s", got, want)
	}
	if one := reloadSummary(&brokerv1.ReloadResponse{ConfigPath: "/c", UnchangedTenants: 1, Generation: 3}); strings.Count(one, "\n") != 1 {
		t.Errorf("nothing added or removed: %q", one)
	}
}
