// Command server is the UFOP stand-in of the process runtime's tests: it
// listens on 127.0.0.1:$PORT_HTTP and answers /health (500 when HEALTH_FAIL
// is set and READY_FILE does not exist, or after /sick), /crash (exits with
// code 3), /version; it logs SIGTERM and exits (once RELEASE_FILE exists,
// when that is set: it holds a graceful stop as long as the test wants),
// or ignores SIGTERM when IGNORE_TERM is set.
//
// MODE makes it one of the shapes of programs without a health endpoint:
//
//	accept   accepts connections and never answers (reads until closed)
//	close    accepts connections and closes them at once
//	garbage  answers every connection with a line that is not HTTP
//	405      answers every HTTP request 405 Method Not Allowed; after a
//	         request to /sick it closes connections at once (SICK=close,
//	         the default) or stops listening (SICK=stop)
package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
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
	go func() {
		<-sigs
		fmt.Println("got SIGTERM")
		if release := os.Getenv("RELEASE_FILE"); release != "" {
			for {
				if _, err := os.Stat(release); err == nil {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			fmt.Println("released")
		}
		os.Exit(0)
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Println("listening on 127.0.0.1:" + port + " pid " + strconv.Itoa(os.Getpid()) + " mode " + os.Getenv("MODE"))
	switch mode := os.Getenv("MODE"); mode {
	case "":
		serveHealth(ln)
	case "405":
		serve405(ln)
	case "accept", "close", "garbage":
		for {
			c, err := ln.Accept()
			if err != nil {
				fmt.Println(err)
				os.Exit(1)
			}
			switch mode {
			case "accept":
				go io.Copy(io.Discard, c)
			case "close":
				c.Close()
			case "garbage":
				go func() {
					fmt.Fprint(c, "hello there\r\n\r\n")
					c.Close()
				}()
			}
		}
	default:
		fmt.Println("unknown MODE", mode)
		os.Exit(2)
	}
}

func serveHealth(ln net.Listener) {
	var sick atomic.Bool
	fail, ready := os.Getenv("HEALTH_FAIL") != "", os.Getenv("READY_FILE")
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		if sick.Load() {
			http.Error(w, "sick", http.StatusInternalServerError)
			return
		}
		if fail {
			if _, err := os.Stat(ready); ready == "" || err != nil {
				http.Error(w, "not ready", http.StatusInternalServerError)
				return
			}
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
	if err := http.Serve(ln, mux); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
}

// serve405 is a program that knows only some other route (POST /uop, say)
// and turns every request down.
func serve405(ln net.Listener) {
	var sick atomic.Bool
	stop := os.Getenv("SICK") == "stop"
	for {
		c, err := ln.Accept()
		if err != nil {
			if sick.Load() && stop {
				select {} // no longer listening, still running
			}
			fmt.Println(err)
			os.Exit(1)
		}
		if sick.Load() {
			c.Close()
			continue
		}
		go func() {
			defer c.Close()
			br := bufio.NewReader(c)
			for {
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, req.Body)
				if req.URL.Path == "/sick" && !sick.Swap(true) {
					fmt.Println("now sick")
					if stop {
						ln.Close()
					}
				}
				fmt.Fprint(c, "HTTP/1.1 405 Method Not Allowed\r\nAllow: POST\r\nContent-Length: 0\r\n\r\n")
				if req.Close {
					return
				}
			}
		}()
	}
}
