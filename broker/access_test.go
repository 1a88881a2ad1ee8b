package broker

import (
	"os"
	"strings"
	"testing"
)

func TestAccessAllows(t *testing.T) {
	a := &Access{Source: "tenants.contoso allow lists", UIDs: []uint32{1001}, GIDs: []uint32{2001}}
	self := uint32(os.Getuid())
	other := uint32(54321)
	if other == self {
		other++
	}
	tests := []struct {
		name   string
		c      Caller
		want   bool
		reason string
	}{
		{"root", Caller{UID: 0, GID: 0}, true, "root"},
		{"listed uid", Caller{UID: 1001, GID: 9}, true, "uid 1001 is allowed by tenants.contoso"},
		{"listed primary group", Caller{UID: other, GID: 2001}, true, "gid 2001 is allowed"},
		{"listed supplementary group", Caller{UID: other, GID: 9, Groups: []uint32{7, 2001}}, true, "group 2001 is allowed"},
		{"stranger", Caller{UID: other, GID: 9, Groups: []uint32{7}}, false, "is not allowed by tenants.contoso"},
	}
	if self != 0 {
		tests = append(tests, struct {
			name   string
			c      Caller
			want   bool
			reason string
		}{"the daemon's uid", Caller{UID: self, GID: 9}, true, "the daemon's own uid"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, why := a.Allows(tt.c)
			if ok != tt.want || !strings.Contains(why, tt.reason) {
				t.Errorf("Allows = %v, %q; want %v, %q", ok, why, tt.want, tt.reason)
			}
		})
	}
	if !IsAdmin(Caller{UID: 0}) || !IsAdmin(Caller{UID: self}) || IsAdmin(Caller{UID: other}) {
		t.Error("IsAdmin: only root and the daemon's uid")
	}
}
