// Command upstream is the backend of scripts/bench-proxy.sh: a minimal
// net/http server whose GET /hello answers a fixed 99-byte JSON body, so that
// a benchmark measures the proxies in front of it rather than the backend.
// POST /hello reads the request's body whole, then answers the same.
//
// Run it with GOMAXPROCS=1 to leave CPU to the proxy and the load generator
// on a small machine.
package main

import (
	"flag"
	"io"
	"log"
	"net/http"
	"strconv"
	"time"
)

// body is the answer to GET /hello: 99 bytes of JSON, newline included.
var body = []byte(`{"message":"hello from the benchmark upstream","service":"upstream","ok":true,"padding":"xxxxxxx"}` + "\n")

func main() {
	addr := flag.String("addr", "127.0.0.1:18080", "address to listen on (plain HTTP)")
	flag.Parse()

	contentLength := strconv.Itoa(len(body))
	mux := http.NewServeMux()
	answer := func(w http.ResponseWriter) {
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", contentLength)
		_, _ = w.Write(body)
	}
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, _ *http.Request) { answer(w) })
	mux.HandleFunc("POST /hello", func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			http.Error(w, "short body", http.StatusBadRequest)
			return
		}
		answer(w)
	})

	srv := &http.Server{
		Addr:              *addr,
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	log.Printf("upstream: listening on http://%s (GET and POST /hello, %d-byte body)", *addr, len(body))
	log.Fatal(srv.ListenAndServe())
}
