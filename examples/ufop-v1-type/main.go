// Command ufop-v1-type is a UFOP written for Qiniu's first-generation
// platform (qufopctl, 2015), kept exactly as its author would have written
// it: it serves POST /uop on the fixed port 9100, has no health endpoint,
// ignores PORT_HTTP, and its ufop.yaml has only Qiniu's three keys.
//
// It answers from the request alone, without fetching the input: the
// platform's src.mimetype and src.fsize say what the file is.
//
//	<name>          {"mimetype":"image/jpeg","kind":"image","fsize":1234,"bucket":"b","key":"k"}
//	<name>/kind     the kind alone, as text: image, video, audio, text or other
//
// qufop runs it unchanged: with no health path in ufop.yaml an instance is
// ready once port 9100 accepts connections and answers HTTP.
package main

import (
	"encoding/json"
	"log"
	"net/http"
	"strings"
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

type answer struct {
	Mimetype string `json:"mimetype"`
	Kind     string `json:"kind"`
	Fsize    int64  `json:"fsize"`
	Bucket   string `json:"bucket"`
	Key      string `json:"key"`
}

func main() {
	http.HandleFunc("/uop", uop)
	log.Println("ufop-v1-type listening on 0.0.0.0:9100")
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
	// cmd is "<ufop name>[/<sub command>]": drop the name.
	sub := ""
	if i := strings.Index(req.Cmd, "/"); i >= 0 {
		sub = req.Cmd[i+1:]
	}
	kind := kindOf(req.Src.Mimetype)
	log.Printf("cmd=%q mimetype=%q fsize=%d key=%q", req.Cmd, req.Src.Mimetype, req.Src.Fsize, req.Src.Key)
	switch sub {
	case "":
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(answer{req.Src.Mimetype, kind, req.Src.Fsize, req.Src.Bucket, req.Src.Key})
	case "kind":
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte(kind + "\n"))
	default:
		fail(w, 400, "unknown command "+sub)
	}
}

func kindOf(mimetype string) string {
	t := strings.TrimSpace(strings.SplitN(mimetype, ";", 2)[0])
	for _, k := range []string{"image", "video", "audio", "text"} {
		if strings.HasPrefix(t, k+"/") {
			return k
		}
	}
	return "other"
}

func fail(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
