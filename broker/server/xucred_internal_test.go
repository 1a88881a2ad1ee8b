package server

import (
	"reflect"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker/broker"
)

// The macOS reading of LOCAL_PEERCRED: cr_groups[0] is the effective gid,
// the next cr_ngroups-1 entries the supplementary groups, and a struct of
// another version or with a group count out of range is refused rather
// than read.
func TestXucredCaller(t *testing.T) {
	var groups [16]uint32
	copy(groups[:], []uint32{20, 12, 61, 79, 80})
	tests := []struct {
		name    string
		version uint32
		ngroups int
		want    broker.Caller
		wantErr string
	}{
		{name: "gid and supplementary groups", ngroups: 5,
			want: broker.Caller{UID: 501, GID: 20, Groups: []uint32{12, 61, 79, 80}, PID: 4242}},
		{name: "primary group only", ngroups: 1,
			want: broker.Caller{UID: 501, GID: 20, PID: 4242}},
		{name: "all sixteen", ngroups: 16,
			want: broker.Caller{UID: 501, GID: 20, Groups: append([]uint32{12, 61, 79, 80}, make([]uint32, 11)...), PID: 4242}},
		{name: "no groups", ngroups: 0, wantErr: "0 groups, want 1 to 16"},
		{name: "more groups than the struct holds", ngroups: 17, wantErr: "17 groups, want 1 to 16"},
		{name: "negative count", ngroups: -1, wantErr: "-1 groups"},
		{name: "another version", version: 1, ngroups: 5, wantErr: "struct xucred version 1, want 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := xucredCaller(tt.version, 501, groups[:], tt.ngroups, 4242)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "LOCAL_PEERCRED: ") {
					t.Fatalf("xucredCaller() = %+v, %v; want an error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("xucredCaller(): %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("xucredCaller() = %+v, want %+v", got, tt.want)
			}
		})
	}
	// The Caller does not share the kernel's buffer.
	got, _ := xucredCaller(0, 501, groups[:], 3, 1)
	groups[1] = 999
	if got.Groups[0] != 12 {
		t.Errorf("Caller.Groups follows a later change of the buffer: %v", got.Groups)
	}
}
