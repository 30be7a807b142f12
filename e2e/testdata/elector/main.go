// Command elector takes part in a cluster/consul leader election until it
// gets SIGTERM or SIGINT, printing "leading" when it starts to lead and
// "stopped" when it stops: the stand-in for `qufop scaler` in
// TestRealConsulLock, which kills it to see another one take over.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/hashicorp/consul/api"

	"github.com/qufop/qufop/cluster/consul"
)

func main() {
	addr := flag.String("consul-addr", "127.0.0.1:8500", "Consul HTTP address")
	key := flag.String("lock-key", consul.DefaultLockKey, "lock key")
	name := flag.String("name", "elector", "value kept in the key while leading")
	ttl := flag.Duration("lock-ttl", consul.DefaultLockTTL, "the elector's TTL: a dead leader is replaced within it")
	flag.Parse()
	cfg := api.DefaultConfig()
	cfg.Address = *addr
	client, err := api.NewClient(cfg)
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	e := consul.NewElector(client, *key, consul.ElectorOptions{
		TTL:   *ttl,
		Value: []byte(*name),
		Logf:  func(f string, a ...any) { log.Printf(f, a...) },
	})
	err = e.Run(ctx, func(ctx context.Context) {
		fmt.Println("leading")
		<-ctx.Done()
		fmt.Println("stopped")
	})
	if err != nil {
		log.Fatal(err)
	}
	os.Exit(0)
}
