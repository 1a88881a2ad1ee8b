package server

import (
	"context"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tokenbroker/tokenbroker/internal/version"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// GetVersion reports how this brokerd was built.
func (s *service) GetVersion(context.Context, *brokerv1.GetVersionRequest) (*brokerv1.GetVersionResponse, error) {
	return versionResponse(version.Current()), nil
}

func versionResponse(i version.Info) *brokerv1.GetVersionResponse {
	resp := &brokerv1.GetVersionResponse{
		Version:   i.Version,
		Commit:    i.Commit,
		Modified:  i.Modified,
		GoVersion: i.GoVersion,
		Platform:  i.Platform,
	}
	if !i.Time.IsZero() {
		resp.CommitTime = timestamppb.New(i.Time)
	}
	return resp
}
