// Command verify-service is a small Go API that lets keyway decide who may
// call it, in process, with the verify package: no proxy in front.
//
//	go run ./examples/verify-service -keyway https://127.0.0.1:8443 -ca keyway-data/ca.pem
//	go run ./examples/verify-service -config keyway.yaml     # keyway embedded, on its store
//
// keyway's config needs forward_auth: {enabled: true} (remote mode), and
// routes for this service's paths, such as
//
//	routes:
//	  - {name: notes, path: /v1/notes, methods: [GET, POST], policy: api_key, scopes: [notes:read]}
//
// It listens on loopback only unless it is given a certificate: an API that
// takes credentials is served over TLS.
package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/keywayhq/keyway/verify"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "verify-service:", err)
		os.Exit(1)
	}
}

func run() error {
	keywayURL := flag.String("keyway", "", "keyway's HTTPS base URL (asks it over the network)")
	caFile := flag.String("ca", "", "keyway's CA certificate (its data_dir/ca.pem in local TLS mode)")
	configFile := flag.String("config", "", "keyway's config file (embeds keyway instead, on its store)")
	listen := flag.String("listen", "127.0.0.1:3000", "address to serve on")
	certFile := flag.String("cert", "", "TLS certificate; without it the service stays on loopback")
	keyFile := flag.String("key", "", "TLS key")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))

	var v *verify.Verifier
	var err error
	switch {
	case *configFile != "":
		v, err = verify.Open(ctx, *configFile, logger)
	case *keywayURL != "":
		var roots *x509.CertPool
		if *caFile != "" {
			pem, err := os.ReadFile(*caFile)
			if err != nil {
				return err
			}
			roots = x509.NewCertPool()
			if !roots.AppendCertsFromPEM(pem) {
				return fmt.Errorf("%s holds no certificate", *caFile)
			}
		}
		v, err = verify.New(verify.Config{URL: *keywayURL, RootCAs: roots})
	default:
		return errors.New("give -keyway URL or -config FILE")
	}
	if err != nil {
		return err
	}
	defer func() { _ = v.Close() }()

	mux := http.NewServeMux()
	mux.Handle("/v1/notes", v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := verify.IdentityFrom(r.Context())
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"notes": []string{"buy milk"}, "for": id.Subject, "key": id.KeyID})
	})))
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
		WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute}
	errc := make(chan error, 1)
	go func() {
		if *certFile != "" {
			errc <- srv.ListenAndServeTLS(*certFile, *keyFile)
			return
		}
		if host, _, _ := strings.Cut(*listen, ":"); host != "127.0.0.1" && host != "localhost" && host != "[::1]" {
			errc <- errors.New("without -cert the service listens on loopback only")
			return
		}
		errc <- srv.ListenAndServe()
	}()
	logger.Info("serving", "addr", *listen)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
