// Command ufop-v1-fetch is a UFOP written for Qiniu's first-generation
// platform (qufopctl, 2015), kept exactly as its author would have written
// it: it serves POST /uop on the fixed port 9100, has no health endpoint,
// ignores PORT_HTTP, and its ufop.yaml has only Qiniu's three keys.
//
// It fetches the input from src.url (the platform's short-lived internal
// URL of the object, or of the previous step's output in a pipeline) and
// answers its digest:
//
//	<name>          {"md5":"<hex>","size":1234}
//	<name>/sha1     {"sha1":"<hex>","size":1234}
//
// qufop runs it unchanged: with no health path in ufop.yaml an instance is
// ready once port 9100 accepts connections and answers HTTP.
package main

import (
	"crypto/md5"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"log"
	"net/http"
	"strings"
	"time"
)

// request is what Qiniu posts to /uop.
type request struct {
	Cmd string `json:"cmd"`
	Src struct {
		URL      string `json:"url"`
		Mimetype string `json:"mimetype"`
		Fsize    int64  `json:"fsize"`
		Bucket   string `json:"bucket"`
		Key      string `json:"key"`
	} `json:"src"`
}

// maxInput is what this program agrees to download.
const maxInput = 64 << 20

var client = &http.Client{Timeout: 60 * time.Second}

func main() {
	http.HandleFunc("/uop", uop)
	log.Println("ufop-v1-fetch listening on 0.0.0.0:9100")
	log.Fatal(http.ListenAndServe("0.0.0.0:9100", nil))
}

func uop(w http.ResponseWriter, r *http.Request) {
	if r.Method != "POST" {
		fail(w, 405, "method not allowed")
		return
	}
	var req request
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		fail(w, 500, "bad request body: "+err.Error())
		return
	}
	sub := ""
	if i := strings.Index(req.Cmd, "/"); i >= 0 {
		sub = req.Cmd[i+1:]
	}
	var h hash.Hash
	name := "md5"
	switch sub {
	case "", "md5":
		h = md5.New()
	case "sha1":
		h, name = sha1.New(), "sha1"
	default:
		fail(w, 400, "unknown command "+sub)
		return
	}
	if req.Src.URL == "" {
		fail(w, 400, "no src.url")
		return
	}
	resp, err := client.Get(req.Src.URL)
	if err != nil {
		fail(w, 400, "fetching the input: "+err.Error())
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		fail(w, 400, fmt.Sprintf("fetching the input: %s", resp.Status))
		return
	}
	n, err := io.Copy(h, io.LimitReader(resp.Body, maxInput+1))
	if err != nil {
		fail(w, 400, "reading the input: "+err.Error())
		return
	}
	if n > maxInput {
		fail(w, 400, "input too large")
		return
	}
	log.Printf("cmd=%q key=%q size=%d", req.Cmd, req.Src.Key, n)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]interface{}{name: hex.EncodeToString(h.Sum(nil)), "size": n})
}

func fail(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
