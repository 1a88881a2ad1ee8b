// Command squatter is the hostile listener of brokerd's trust tests: it
// binds the Unix socket named by its argument, as whichever user runs it,
// and records on stdout every connection ("conn"), every byte a client
// sends it ("read N: %q") and the end of each connection ("closed"). It opens each connection with an HTTP/2 SETTINGS
// frame, as a gRPC server does, so that a client that trusted it would go
// on to send its request, secret included.
package main

import (
	"fmt"
	"net"
	"os"
	"sync"
)

// settings is an empty HTTP/2 SETTINGS frame: length 0, type 4, flags 0,
// stream 0.
var settings = []byte{0, 0, 0, 4, 0, 0, 0, 0, 0}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: squatter SOCKET")
		os.Exit(2)
	}
	l, err := net.Listen("unix", os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "squatter:", err)
		os.Exit(1)
	}
	// Anyone may connect, like a socket left open for victims.
	if err := os.Chmod(os.Args[1], 0o777); err != nil {
		fmt.Fprintln(os.Stderr, "squatter:", err)
		os.Exit(1)
	}
	var mu sync.Mutex
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Printf(format+"\n", args...)
	}
	say("listening")
	for {
		c, err := l.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "squatter:", err)
			os.Exit(1)
		}
		say("conn")
		go func() {
			defer say("closed")
			defer c.Close()
			if _, err := c.Write(settings); err != nil {
				return
			}
			buf := make([]byte, 64<<10)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					say("read %d: %q", n, buf[:n])
				}
				if err != nil {
					return
				}
			}
		}()
	}
}
