// Command ferretdb-embedded runs FerretDB v1 (MongoDB wire protocol over SQLite)
// through its embeddable package, so that no debug port or telemetry is opened
// and no release-time version file is needed. fhir-server starts it as a child
// process when no MongoDB URI is configured.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen-addr", "127.0.0.1:27017", "TCP address to listen on (empty to disable)")
	unix := flag.String("listen-unix", "", "Unix socket path to listen on (empty to disable)")
	dataDir := flag.String("data-dir", "", "directory holding the SQLite databases")
	flag.Parse()

	if *dataDir == "" {
		log.Fatal("ferretdb-embedded: -data-dir is required")
	}
	if err := os.MkdirAll(*dataDir, 0o700); err != nil {
		log.Fatalf("ferretdb-embedded: cannot create data dir: %v", err)
	}

	f, err := ferretdb.New(&ferretdb.Config{
		Listener: ferretdb.ListenerConfig{
			TCP:  *listen,
			Unix: *unix,
		},
		Handler:   "sqlite",
		SQLiteURL: "file:" + *dataDir + "/",
	})
	if err != nil {
		log.Fatalf("ferretdb-embedded: %v", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()

	// The parent waits for this line before connecting.
	fmt.Println("ferretdb-embedded: ready on", f.MongoDBURI())

	if err := <-done; err != nil && ctx.Err() == nil {
		log.Fatalf("ferretdb-embedded: %v", err)
	}
}
