// Command flood is the connection flooder of brokerd's process tests: it
// opens n connections to a brokerd socket, starts HTTP/2 on each (the
// client preface and an empty SETTINGS frame, so the server keeps it past
// its handshake timeout), and prints how many the server kept (it sent a
// frame), refused (closed at once) and left undecided. It holds them all
// until its stdin closes.
//
// Usage: flood SOCKET N
package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"
)

const preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: flood SOCKET N")
		os.Exit(2)
	}
	n, err := strconv.Atoi(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, "flood:", err)
		os.Exit(2)
	}
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := net.Dial("unix", os.Args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, "flood: connect:", err)
			os.Exit(1)
		}
		conns = append(conns, c)
		// A write to a connection the server already closed fails; the
		// read below tells the outcome either way.
		_, _ = c.Write([]byte(preface))
	}
	var kept, refused, undecided int
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		var b [1]byte
		_, err := c.Read(b[:])
		var ne net.Error
		switch {
		case err == nil:
			kept++
		case errors.As(err, &ne) && ne.Timeout():
			undecided++
		default: // EOF, or ECONNRESET for a socket closed with our preface unread
			refused++
		}
	}
	fmt.Printf("kept %d refused %d undecided %d\n", kept, refused, undecided)
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
}
