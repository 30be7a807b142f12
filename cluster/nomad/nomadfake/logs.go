package nomadfake

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/nomad/api"
)

// Task logs: GET /v1/client/fs/logs/<alloc>?task=&type=&follow=&origin=&
// offset=&plain=, answered as a Nomad 1.6.5 client does (recorded on a dev
// agent): a stream of JSON StreamFrames with no separator,
// {"Data":<base64>,"File":"alloc/logs/<task>.<type>.0","Offset":<offset
// after the data>}, at most 64 KiB of data each, and "{}" heartbeats every
// second while following; with plain=true the bytes as they are. The
// errors are Nomad's texts and statuses.

const (
	logFrameSize      = 64 * 1024
	logHeartbeatEvery = time.Second
)

// logFrame is api.StreamFrame with the field order (alphabetical) and
// omissions Nomad encodes it with.
type logFrame struct {
	Data   []byte `json:",omitempty"`
	File   string `json:",omitempty"`
	Offset int64  `json:",omitempty"`
}

// AppendLog adds data to the stdout or stderr log ("stdout", "stderr") of
// allocation allocID, as its task would write it; followers receive it at
// once.
func (s *Server) AppendLog(allocID, typ string, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.logs[allocID] == nil {
		s.logs[allocID] = map[string][]byte{}
	}
	s.logs[allocID][typ] = append(s.logs[allocID][typ], data...)
	s.wake()
}

// logRequest is a parsed log request.
type logRequest struct {
	alloc, task, typ string
	follow, plain    bool
	origin           string
	offset           int64
}

// parseLogRequest checks the parameters in Nomad's order, with its texts.
func parseLogRequest(r *http.Request) (logRequest, int, string) {
	q := r.URL.Query()
	lr := logRequest{alloc: strings.TrimPrefix(r.URL.Path, "/v1/client/fs/logs/"), task: q.Get("task"), typ: q.Get("type"), origin: q.Get("origin")}
	var err error
	switch {
	case lr.alloc == "":
		return lr, http.StatusBadRequest, "must provide a valid alloc id"
	case lr.task == "":
		return lr, http.StatusBadRequest, "must provide task name"
	}
	if v := q.Get("follow"); v != "" {
		if lr.follow, err = strconv.ParseBool(v); err != nil {
			return lr, http.StatusBadRequest, fmt.Sprintf("failed to parse follow field to boolean: %v", err)
		}
	}
	if v := q.Get("plain"); v != "" {
		if lr.plain, err = strconv.ParseBool(v); err != nil {
			return lr, http.StatusBadRequest, fmt.Sprintf("failed to parse plain field to boolean: %v", err)
		}
	}
	if lr.typ != api.FSLogNameStdout && lr.typ != api.FSLogNameStderr {
		return lr, http.StatusBadRequest, "must provide log type (stdout/stderr)"
	}
	if v := q.Get("offset"); v != "" {
		if lr.offset, err = strconv.ParseInt(v, 10, 64); err != nil {
			return lr, http.StatusBadRequest, fmt.Sprintf("error parsing offset: %v", err)
		}
	}
	switch lr.origin {
	case "":
		lr.origin = api.OriginStart
	case api.OriginStart, api.OriginEnd:
	default:
		return lr, http.StatusBadRequest, "origin must be start or end"
	}
	return lr, 0, ""
}

// serveLogs streams a task's log. It takes s.mu only to read: a follower
// waits for AppendLog without holding it.
func (s *Server) serveLogs(w http.ResponseWriter, r *http.Request) {
	lr, code, msg := parseLogRequest(r)
	if code != 0 {
		writeErr(w, code, msg)
		return
	}
	ctype := "application/json"
	if lr.plain {
		ctype = "text/plain"
	}
	w.Header().Set("Content-Type", ctype)
	s.mu.Lock()
	s.advance()
	code, msg = s.checkLogTask(lr)
	offset := startOffset(lr, len(s.logs[lr.alloc][lr.typ]))
	s.mu.Unlock()
	if code != 0 {
		// Nomad sets the Content-Type before it finds the error.
		w.WriteHeader(code)
		_, _ = w.Write([]byte(msg))
		return
	}
	w.WriteHeader(http.StatusOK)
	s.streamLog(w, r, lr, offset)
}

// checkLogTask answers Nomad's errors for an unknown allocation or task,
// or a task that has not started.
func (s *Server) checkLogTask(lr logRequest) (int, string) {
	a, v := s.findAlloc(lr.alloc)
	if a == nil {
		return http.StatusNotFound, fmt.Sprintf("Unknown allocation %q", lr.alloc)
	}
	if v == nil || taskName(v) != lr.task {
		return http.StatusBadRequest, fmt.Sprintf("unknown task name %q", lr.task)
	}
	if ts := a.stub.TaskStates[lr.task]; ts == nil || ts.StartedAt.IsZero() {
		return http.StatusNotFound, fmt.Sprintf("task %q not started yet. No logs available", lr.task)
	}
	return 0, ""
}

func startOffset(lr logRequest, size int) int {
	off := int(lr.offset)
	if lr.origin == api.OriginEnd {
		off = size - off
	}
	return min(max(off, 0), size)
}

// streamLog writes the log from offset; when following, it then waits for
// appended data, sending heartbeats, until the client goes away.
func (s *Server) streamLog(w http.ResponseWriter, r *http.Request, lr logRequest, offset int) {
	file := fmt.Sprintf("alloc/logs/%s.%s.0", lr.task, lr.typ)
	heartbeat := time.NewTicker(logHeartbeatEvery)
	defer heartbeat.Stop()
	for {
		s.mu.Lock()
		data := s.logs[lr.alloc][lr.typ][offset:]
		changed := s.changed
		s.mu.Unlock()
		for len(data) > 0 {
			n := min(len(data), logFrameSize)
			offset += n
			if !writeFrame(w, lr.plain, logFrame{Data: data[:n], File: file, Offset: int64(offset)}) {
				return
			}
			data = data[n:]
		}
		flush(w)
		if !lr.follow {
			return
		}
		select {
		case <-changed:
		case <-heartbeat.C:
			if !lr.plain && !writeFrame(w, false, logFrame{}) {
				return
			}
			flush(w)
		case <-r.Context().Done():
			return
		}
	}
}

func writeFrame(w http.ResponseWriter, plain bool, f logFrame) bool {
	var err error
	if plain {
		_, err = w.Write(f.Data)
	} else {
		var b []byte
		b, err = json.Marshal(f)
		if err == nil {
			_, err = w.Write(b)
		}
	}
	return err == nil
}

func flush(w http.ResponseWriter) {
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
}
