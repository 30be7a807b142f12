package builder

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/qufop/qufop/errs"
)

// LogStore keeps build logs as files under <dir>/logs/<owner>/<name>/v<N>.log.
type LogStore struct{ dir string }

// NewLogStore returns the store of build logs under dir/logs.
func NewLogStore(dir string) *LogStore { return &LogStore{dir: filepath.Join(dir, "logs")} }

// Path is the log file of a version.
func (s *LogStore) Path(owner, name string, v int) (string, error) {
	if err := checkName("owner", owner); err != nil {
		return "", err
	}
	if err := checkName("ufop name", name); err != nil {
		return "", err
	}
	if v < 1 {
		return "", errs.BadRequest("bad version %d", v)
	}
	return filepath.Join(s.dir, owner, name, "v"+strconv.Itoa(v)+".log"), nil
}

// Create starts (or restarts) the log of a version.
func (s *LogStore) Create(owner, name string, v int) (io.WriteCloser, error) {
	p, err := s.Path(owner, name, v)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, err
	}
	return os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
}

// Open reads the log of a version; a missing log is a 404.
func (s *LogStore) Open(owner, name string, v int) (io.ReadCloser, error) {
	p, err := s.Path(owner, name, v)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errs.NotFound("no build log for %s/%s v%d", owner, name, v)
	}
	return f, err
}

// followPoll is how often Follow looks for more of a growing log.
const followPoll = 150 * time.Millisecond

// Follow copies the log of a version to w as it grows, until done() is
// true and the file is drained, or ctx ends. A log not created yet is
// waited for while done() is false.
func (s *LogStore) Follow(ctx context.Context, owner, name string, v int, done func() bool, w io.Writer) error {
	p, err := s.Path(owner, name, v)
	if err != nil {
		return err
	}
	var f *os.File
	for f == nil {
		f, err = os.Open(p)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if done() {
			return errs.NotFound("no build log for %s/%s v%d", owner, name, v)
		}
		if err := sleep(ctx, followPoll); err != nil {
			return err
		}
	}
	defer f.Close()
	buf := make([]byte, 32<<10)
	for {
		// Read done() before draining so that what was written before it
		// turned true is copied.
		finished := done()
		for {
			n, err := f.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return werr
				}
				if fl, ok := w.(interface{ Flush() }); ok {
					fl.Flush()
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
		}
		if finished {
			return nil
		}
		if err := sleep(ctx, followPoll); err != nil {
			return err
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
