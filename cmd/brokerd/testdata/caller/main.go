// Command caller is the long-lived client of brokerd's reload tests: it
// dials SOCKET once (broker/client) and, over that one connection, runs one
// command per line it reads on stdin:
//
//   - "get TENANT" calls GetToken and prints "get CODE";
//   - "watch TENANT" opens a WatchToken stream and prints "watch CODE" for
//     its first event (the gRPC code of the event's error, OK for a
//     token), then "watch ended CODE" when the stream ends.
//
// CODE is a gRPC code's name (OK, PermissionDenied, ...). It never prints a
// token. It exits when its stdin closes.
//
// Usage: caller SOCKET
package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenbroker/tokenbroker/broker/client"
)

var out sync.Mutex

func say(format string, args ...any) {
	out.Lock()
	defer out.Unlock()
	fmt.Printf(format+"\n", args...)
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: caller SOCKET")
		os.Exit(2)
	}
	c, err := client.Dial(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "caller:", err)
		os.Exit(1)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var watches sync.WaitGroup
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		cmd, tenant, _ := strings.Cut(in.Text(), " ")
		switch cmd {
		case "get":
			_, err := c.GetToken(ctx, tenant, nil, 0)
			say("get %v", status.Code(err))
		case "watch":
			watches.Add(1)
			go func() {
				defer watches.Done()
				watch(ctx, c, tenant)
			}()
		default:
			fmt.Fprintf(os.Stderr, "caller: unknown command %q\n", cmd)
			os.Exit(2)
		}
	}
	cancel()
	watches.Wait()
}

// watch follows tenant's token until the stream ends.
func watch(ctx context.Context, c *client.Client, tenant string) {
	st, err := c.WatchToken(ctx, tenant, nil, 0)
	if err != nil {
		say("watch ended %v", status.Code(err))
		return
	}
	for first := true; ; first = false {
		ev, err := st.Recv()
		if err != nil {
			say("watch ended %v", status.Code(err))
			return
		}
		if first {
			code := codes.OK
			if e := ev.GetError(); e != nil {
				code = codes.Code(e.GetCode())
			}
			say("watch %v", code)
		}
	}
}
