package brokertest

import (
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
)

// Proxy is a TCP proxy on loopback that stands between a client and a
// server (the broker and the fake Entra ID), so that a test can refuse
// connections or send them to another server, such as one whose
// certificate the client does not trust.
type Proxy struct {
	l net.Listener

	mu      sync.Mutex
	backend string
	conns   map[net.Conn]bool
}

// NewProxy listens on 127.0.0.1 and forwards every connection to the host
// of backendURL, until Refuse or the end of the test.
func NewProxy(t testing.TB, backendURL string) *Proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{l: l, backend: hostOf(t, backendURL), conns: map[net.Conn]bool{}}
	t.Cleanup(p.Refuse)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func hostOf(t testing.TB, u string) string {
	t.Helper()
	parsed, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return parsed.Host
}

// URL is the proxy's address as an https URL, to configure as the
// authority host.
func (p *Proxy) URL() string { return "https://" + p.l.Addr().String() }

func (p *Proxy) serve(c net.Conn) {
	p.mu.Lock()
	backend := p.backend
	p.mu.Unlock()
	b, err := net.Dial("tcp", backend)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[c], p.conns[b] = true, true
	p.mu.Unlock()
	go func() { io.Copy(b, c); b.Close() }()
	io.Copy(c, b)
	c.Close()
}

// dropConns closes every proxied connection, so the client reconnects.
func (p *Proxy) dropConns() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// Refuse closes the listener and every proxied connection: new
// connections are refused.
func (p *Proxy) Refuse() {
	p.l.Close()
	p.dropConns()
}

// Swap sends new connections to the host of backendURL, and closes the
// current ones.
func (p *Proxy) Swap(t testing.TB, backendURL string) {
	p.mu.Lock()
	p.backend = hostOf(t, backendURL)
	p.mu.Unlock()
	p.dropConns()
}
