// Command server is the UFOP stand-in of the process runtime's tests: it
// listens on 127.0.0.1:$PORT_HTTP and answers /health (500 when HEALTH_FAIL
// is set, or after /sick), /crash (exits with code 3), /version; it logs
// SIGTERM and exits, or ignores it when IGNORE_TERM is set.
package main

import (
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	port := os.Getenv("PORT_HTTP")
	if d, err := time.ParseDuration(os.Getenv("START_DELAY")); err == nil {
		time.Sleep(d)
	}
	sigs := make(chan os.Signal, 1)
	if os.Getenv("IGNORE_TERM") != "" {
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ignoring SIGTERM")
	} else {
		signal.Notify(sigs, syscall.SIGTERM)
	}
	var sick atomic.Bool
	sick.Store(os.Getenv("HEALTH_FAIL") != "")
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		if sick.Load() {
			http.Error(w, "sick", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/sick", func(w http.ResponseWriter, r *http.Request) {
		sick.Store(true)
		fmt.Println("now sick")
	})
	mux.HandleFunc("/crash", func(w http.ResponseWriter, r *http.Request) {
		fmt.Println("crashing")
		os.Exit(3)
	})
	mux.HandleFunc("/version", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, os.Getenv("VERSION"))
	})
	go func() {
		<-sigs
		fmt.Println("got SIGTERM")
		os.Exit(0)
	}()
	fmt.Println("listening on 127.0.0.1:" + port + " pid " + strconv.Itoa(os.Getpid()))
	if err := http.ListenAndServe("127.0.0.1:"+port, mux); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
}
