package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/textproto"
	"strconv"
	"strings"
)

// serveFloor is -floor: the least work a Go program can do to relay one
// HTTP/1.1 request at a time over TLS, for scale in the c=1 phase of
// scripts/bench-proxy.sh. It is no proxy to use: it checks nothing,
// relays only requests without a body and answers with a Content-Length,
// and gives each client connection an upstream connection of its own.
// What it costs is what the hop itself costs a Go program on this machine
// (two sockets, the netpoller, the scheduler, TLS), with no HTTP server
// or client library in between.
func serveFloor(ln net.Listener, tlsCfg *tls.Config, upstream string) error {
	tlsCfg = tlsCfg.Clone()
	tlsCfg.NextProtos = []string{"http/1.1"}
	tl := tls.NewListener(ln, tlsCfg)
	for {
		c, err := tl.Accept()
		if err != nil {
			return err
		}
		go func() {
			if err := relayFloor(c, upstream); err != nil && !errors.Is(err, io.EOF) {
				log.Printf("bareproxy -floor: %v", err)
			}
		}()
	}
}

func relayFloor(client net.Conn, upstream string) error {
	defer func() { _ = client.Close() }()
	var d net.Dialer
	up, err := d.DialContext(context.Background(), "tcp", upstream)
	if err != nil {
		return err
	}
	defer func() { _ = up.Close() }()
	cr, ur := bufio.NewReader(client), bufio.NewReader(up)
	head := make([]byte, 0, 4096)
	for {
		// The request: its head, relayed as it came (no body allowed).
		head = head[:0]
		for {
			line, err := cr.ReadSlice('\n')
			if err != nil {
				return err
			}
			head = append(head, line...)
			if len(line) <= 2 {
				break
			}
		}
		if bytes.Contains(bytes.ToLower(head), []byte("content-length:")) ||
			bytes.Contains(bytes.ToLower(head), []byte("transfer-encoding:")) {
			return errors.New("a request with a body")
		}
		if _, err := up.Write(head); err != nil {
			return err
		}
		// The answer: its head, then Content-Length bytes of body.
		head = head[:0]
		n := -1
		for {
			line, err := ur.ReadSlice('\n')
			if err != nil {
				return err
			}
			head = append(head, line...)
			if len(line) <= 2 {
				break
			}
			if k, v, ok := strings.Cut(string(line), ":"); ok && textproto.CanonicalMIMEHeaderKey(k) == "Content-Length" {
				if n, err = strconv.Atoi(strings.TrimSpace(v)); err != nil {
					return err
				}
			}
		}
		if n < 0 {
			return errors.New("an answer without Content-Length")
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(ur, body); err != nil {
			return err
		}
		if _, err := client.Write(append(head, body...)); err != nil {
			return err
		}
	}
}
