package main

import (
	"context"
	"sync"

	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// credBroker is brokertest.FakeBroker with canned GetCredential and
// DeleteCredential answers, served over a real socket by brokertest.Serve.
type credBroker struct {
	*brokertest.FakeBroker

	Info    *brokerv1.CredentialInfo // answers both; nil is an empty one
	Err     error                    // returned instead, when set
	mu      sync.Mutex
	gets    []string
	deletes []string
}

func newCredBroker(info *brokerv1.CredentialInfo) *credBroker {
	return &credBroker{FakeBroker: &brokertest.FakeBroker{}, Info: info}
}

func (b *credBroker) GetCredential(_ context.Context, req *brokerv1.GetCredentialRequest) (*brokerv1.GetCredentialResponse, error) {
	b.mu.Lock()
	b.gets = append(b.gets, req.GetApp())
	b.mu.Unlock()
	if b.Err != nil {
		return nil, b.Err
	}
	return &brokerv1.GetCredentialResponse{Credential: b.Info}, nil
}

func (b *credBroker) DeleteCredential(_ context.Context, req *brokerv1.DeleteCredentialRequest) (*brokerv1.DeleteCredentialResponse, error) {
	b.mu.Lock()
	b.deletes = append(b.deletes, req.GetApp())
	b.mu.Unlock()
	if b.Err != nil {
		return nil, b.Err
	}
	return &brokerv1.DeleteCredentialResponse{Credential: b.Info}, nil
}

// requests returns the apps of the GetCredential and DeleteCredential
// calls so far.
func (b *credBroker) requests() (gets, deletes []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.gets...), append([]string(nil), b.deletes...)
}
