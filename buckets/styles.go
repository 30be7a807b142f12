package buckets

// Styles are Qiniu's aliases of processing chains: a bucket names chains
// ("thumb" = "imageView2/2/w/200") and the characters that may join a key
// to a style name, so that GET /<bucket>/cat.jpg-thumb answers what
// GET /<bucket>/cat.jpg?imageView2/2/w/200 answers. They live in the
// bucket's record, changed by check-and-set like the rest of it; the
// gateways resolve them (gateway/styles.go) from the records they re-read
// every second.

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/fop"
	"github.com/qufop/qufop/storage"
)

const (
	// DefaultSeparator joins key and style in a bucket that never set
	// its own (Qiniu's examples use "-").
	DefaultSeparator = "-"
	// SeparatorChars are the characters Qiniu accepts as style
	// separators: a bucket's separator is a set of them, any one of which
	// joins a key to a style name.
	SeparatorChars = `~@$^&*()-_/!+={}[]|:;"'<>,`
	// MaxStyles bounds the styles of one bucket (each gateway keeps them
	// all in memory, and every record is re-read every second).
	MaxStyles = 100
	// MaxStyleName bounds a style's name.
	MaxStyleName = 64
	// MaxStyleChain bounds a style's chain, in bytes: it stands for a
	// query string, and gateways cap request lines at 8 KB.
	MaxStyleChain = 2048
	// MaxStyleSteps bounds the steps of a style's chain.
	MaxStyleSteps = 16
	// casTries is how often a change is retried when another writer
	// changed the record between our read and our write.
	casTries = 16
)

// Separators are the characters joining a key to a style in r: its own,
// else DefaultSeparator.
func (r Record) Separators() string {
	if r.Separator == "" {
		return DefaultSeparator
	}
	return r.Separator
}

// CheckSeparator accepts one or more distinct characters of SeparatorChars.
func CheckSeparator(sep string) error {
	if sep == "" {
		return errs.BadRequest("style separator: give one or more of %s", SeparatorChars)
	}
	for i, c := range sep {
		if c > 127 || !strings.ContainsRune(SeparatorChars, c) {
			return errs.BadRequest("style separator %q: %q is not allowed (use one or more of %s)", sep, c, SeparatorChars)
		}
		if strings.ContainsRune(sep[:i], c) {
			return errs.BadRequest("style separator %q: %q is given twice", sep, c)
		}
	}
	return nil
}

// CheckStyleName accepts a name of 1 to MaxStyleName letters, digits, '-',
// '_' and '.', starting with a letter or digit, holding none of the
// separators seps (a name holding one could never be reached: a styled
// key is cut at its last separator).
func CheckStyleName(name, seps string) error {
	ok := name != "" && len(name) <= MaxStyleName && isAlnum(name[0])
	for i := 0; ok && i < len(name); i++ {
		c := name[i]
		ok = isAlnum(c) || c == '-' || c == '_' || c == '.'
	}
	if !ok {
		return errs.BadRequest("style name %q: use 1 to %d letters, digits, '-', '_' or '.', starting with a letter or digit", name, MaxStyleName)
	}
	if i := strings.IndexAny(name, seps); i >= 0 {
		return errs.BadRequest("style name %q holds %q, a style separator of the bucket (%s)", name, name[i], seps)
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// CheckStyleChain accepts a processing chain as a URL's query would carry
// it: it parses, has 1 to MaxStyleSteps steps and no download parameters
// (those belong to each URL: e, token, attname). Whether its commands
// exist is checked where they run, by the gateway, when a URL uses it.
func CheckStyleChain(chain string) error {
	if len(chain) > MaxStyleChain {
		return errs.BadRequest("style chain is %d bytes, over the limit of %d", len(chain), MaxStyleChain)
	}
	ch, err := fop.Parse(chain)
	if err != nil {
		return errs.BadRequest("style chain %q: %v", chain, err)
	}
	switch {
	case ch.Empty():
		return errs.BadRequest("style chain %q: not a processing chain (e.g. imageView2/2/w/200)", chain)
	case len(ch.Download) > 0 || ch.Raw != chain:
		return errs.BadRequest("style chain %q: no download parameters (&k=v) in a style", chain)
	case len(ch.Cmds) > MaxStyleSteps:
		return errs.BadRequest("style chain has %d steps, over the limit of %d", len(ch.Cmds), MaxStyleSteps)
	}
	return nil
}

// checkStyles checks what a record says of styles as a whole.
func checkStyles(r Record) error {
	if r.Separator != "" {
		if err := CheckSeparator(r.Separator); err != nil {
			return err
		}
	}
	if len(r.Styles) > MaxStyles {
		return errs.BadRequest("bucket %q: %d styles, over the limit of %d", r.Name, len(r.Styles), MaxStyles)
	}
	for name, chain := range r.Styles {
		if err := CheckStyleName(name, r.Separators()); err != nil {
			return err
		}
		if err := CheckStyleChain(chain); err != nil {
			return err
		}
	}
	return nil
}

// SetStyle adds or replaces the style name of bucket and returns the
// record as stored.
func (k *Keeper) SetStyle(ctx context.Context, bucket, name, chain string) (*Record, error) {
	return k.update(ctx, bucket, func(r *Record) error {
		if err := CheckStyleName(name, r.Separators()); err != nil {
			return err
		}
		if err := CheckStyleChain(chain); err != nil {
			return err
		}
		if _, ok := r.Styles[name]; !ok && len(r.Styles) >= MaxStyles {
			return errs.BadRequest("bucket %q has %d styles already, the limit: remove one first", bucket, len(r.Styles))
		}
		if r.Styles == nil {
			r.Styles = map[string]string{}
		}
		r.Styles[name] = chain
		return nil
	})
}

// RemoveStyle removes the style name of bucket (404 if it has none of that
// name) and returns the record as stored.
func (k *Keeper) RemoveStyle(ctx context.Context, bucket, name string) (*Record, error) {
	return k.update(ctx, bucket, func(r *Record) error {
		if _, ok := r.Styles[name]; !ok {
			return errs.New(http.StatusNotFound, "bucket %q has no style %q", bucket, name)
		}
		delete(r.Styles, name)
		if len(r.Styles) == 0 {
			r.Styles = nil
		}
		return nil
	})
}

// SetSeparator sets the characters that join a key to a style in bucket.
// A separator that a style's name holds is refused: that style could no
// longer be reached.
func (k *Keeper) SetSeparator(ctx context.Context, bucket, sep string) (*Record, error) {
	if err := CheckSeparator(sep); err != nil {
		return nil, err
	}
	return k.update(ctx, bucket, func(r *Record) error {
		for name := range r.Styles {
			if i := strings.IndexAny(name, sep); i >= 0 {
				return errs.New(http.StatusConflict, "style separator %q: style %q of bucket %q holds %q (rename or remove the style first)", sep, name, bucket, name[i])
			}
		}
		r.Separator = sep
		return nil
	})
}

// update applies change to the record of name and stores it with a
// check-and-set, re-reading and retrying when another writer came first,
// so that concurrent changes of one bucket are all kept.
func (k *Keeper) update(ctx context.Context, name string, change func(*Record) error) (*Record, error) {
	for range casTries {
		b, index, err := k.kv.Get(ctx, key(name))
		if errors.Is(err, cluster.ErrNotFound) {
			return nil, storage.NoSuchBucket(name)
		}
		if err != nil {
			return nil, errs.Failed(err, "reading bucket %q failed", name)
		}
		var rec Record
		if err := json.Unmarshal(b, &rec); err != nil {
			return nil, errs.Failed(err, "bucket %q: corrupt record", name)
		}
		if err := change(&rec); err != nil {
			return nil, err
		}
		nb, err := json.Marshal(rec)
		if err != nil {
			return nil, err
		}
		ok, err := k.kv.CAS(ctx, key(name), nb, index)
		if err != nil {
			return nil, errs.Failed(err, "storing bucket %q failed", name)
		}
		if ok {
			return &rec, nil
		}
	}
	return nil, errs.New(http.StatusConflict, "bucket %q changed %d times while this change was made: try again", name, casTries)
}
