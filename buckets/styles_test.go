package buckets

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/qufop/qufop/cluster"
	"github.com/qufop/qufop/errs"
	"github.com/qufop/qufop/storage"
)

func TestStylesRoundTrip(t *testing.T) {
	ctx := context.Background()
	k := newKeeper(t)
	if err := k.Create(ctx, Record{Name: "photos", Dir: "/srv/p", Owner: "alice", Private: true}); err != nil {
		t.Fatal(err)
	}
	rec, err := k.Get(ctx, "photos")
	if err != nil || rec.Separators() != DefaultSeparator || rec.Styles != nil {
		t.Fatalf("a new record = %+v, %v; want separator %q and no styles", rec, err, DefaultSeparator)
	}
	steps := []struct {
		do   func() (*Record, error)
		seps string
		want map[string]string
	}{
		{func() (*Record, error) { return k.SetStyle(ctx, "photos", "thumb", "imageView2/2/w/200") }, "-", map[string]string{"thumb": "imageView2/2/w/200"}},
		{func() (*Record, error) {
			return k.SetStyle(ctx, "photos", "v1.big_x", "imageMogr2/thumbnail/800x|imageInfo")
		}, "-",
			map[string]string{"thumb": "imageView2/2/w/200", "v1.big_x": "imageMogr2/thumbnail/800x|imageInfo"}},
		{func() (*Record, error) { return k.SetStyle(ctx, "photos", "thumb", "imageView2/1/w/100/h/100") }, "-",
			map[string]string{"thumb": "imageView2/1/w/100/h/100", "v1.big_x": "imageMogr2/thumbnail/800x|imageInfo"}},
		{func() (*Record, error) { return k.SetSeparator(ctx, "photos", "!-@") }, "!-@",
			map[string]string{"thumb": "imageView2/1/w/100/h/100", "v1.big_x": "imageMogr2/thumbnail/800x|imageInfo"}},
		{func() (*Record, error) { return k.RemoveStyle(ctx, "photos", "v1.big_x") }, "!-@", map[string]string{"thumb": "imageView2/1/w/100/h/100"}},
		{func() (*Record, error) { return k.RemoveStyle(ctx, "photos", "thumb") }, "!-@", nil},
	}
	for i, st := range steps {
		got, err := st.do()
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		stored, err := k.Get(ctx, "photos")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range []*Record{got, stored} {
			if r.Separators() != st.seps || !reflect.DeepEqual(r.Styles, st.want) {
				t.Fatalf("step %d: record %+v, want separator %q and styles %v", i, r, st.seps, st.want)
			}
			// The rest of the record is left alone.
			if r.Owner != "alice" || !r.Private || r.Dir != "/srv/p" {
				t.Fatalf("step %d: record %+v lost its owner, mode or dir", i, r)
			}
		}
	}
}

func TestStylesRefused(t *testing.T) {
	ctx := context.Background()
	k := newKeeper(t)
	if err := k.Create(ctx, Record{Name: "photos", Dir: "/srv/p", Owner: "alice"}); err != nil {
		t.Fatal(err)
	}
	if _, err := k.SetStyle(ctx, "photos", "a_b", "imageInfo"); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("imageInfo|", MaxStyleChain/10) + "imageInfo"
	for _, tc := range []struct {
		name   string
		do     func() error
		status int
		msg    string
	}{
		{"no such bucket", func() error { _, err := k.SetStyle(ctx, "nope", "thumb", "imageInfo"); return err }, storage.StatusNoSuchBucket, "bucket does not exist"},
		{"empty name", func() error { _, err := k.SetStyle(ctx, "photos", "", "imageInfo"); return err }, 400, `style name ""`},
		{"name with a space", func() error { _, err := k.SetStyle(ctx, "photos", "a b", "imageInfo"); return err }, 400, "letters, digits"},
		{"name starting with a dot", func() error { _, err := k.SetStyle(ctx, "photos", ".x", "imageInfo"); return err }, 400, "starting with a letter or digit"},
		{"name too long", func() error {
			_, err := k.SetStyle(ctx, "photos", strings.Repeat("a", MaxStyleName+1), "imageInfo")
			return err
		}, 400, "1 to 64"},
		{"name holds the separator", func() error { _, err := k.SetStyle(ctx, "photos", "big-thumb", "imageInfo"); return err }, 400, `holds '-', a style separator`},
		{"chain that does not parse", func() error { _, err := k.SetStyle(ctx, "photos", "thumb", "imageView2//w"); return err }, 400, `style chain "imageView2//w"`},
		{"no chain", func() error { _, err := k.SetStyle(ctx, "photos", "thumb", ""); return err }, 400, "not a processing chain"},
		{"download parameters", func() error { _, err := k.SetStyle(ctx, "photos", "thumb", "imageInfo&attname=a"); return err }, 400, "no download parameters"},
		{"only download parameters", func() error { _, err := k.SetStyle(ctx, "photos", "thumb", "e=1"); return err }, 400, "not a processing chain"},
		{"chain too long", func() error { _, err := k.SetStyle(ctx, "photos", "thumb", long); return err }, 400, "over the limit of 2048"},
		{"too many steps", func() error {
			_, err := k.SetStyle(ctx, "photos", "thumb", strings.Repeat("imageInfo|", MaxStyleSteps)+"imageInfo")
			return err
		}, 400, "17 steps, over the limit of 16"},
		{"remove a missing style", func() error { _, err := k.RemoveStyle(ctx, "photos", "nope"); return err }, 404, `bucket "photos" has no style "nope"`},
		{"bad separator", func() error { _, err := k.SetSeparator(ctx, "photos", "-."); return err }, 400, `'.' is not allowed`},
		{"no separator", func() error { _, err := k.SetSeparator(ctx, "photos", ""); return err }, 400, "give one or more of"},
		{"separator twice", func() error { _, err := k.SetSeparator(ctx, "photos", "--"); return err }, 400, "given twice"},
		{"separator a style holds", func() error { _, err := k.SetSeparator(ctx, "photos", "-_"); return err }, 409, `style "a_b" of bucket "photos" holds '_'`},
		{"separator of a missing bucket", func() error { _, err := k.SetSeparator(ctx, "nope", "-"); return err }, storage.StatusNoSuchBucket, "bucket does not exist"},
		{"create with a bad style", func() error {
			return k.Create(ctx, Record{Name: "other", Dir: "/d", Owner: "a", Styles: map[string]string{"x": "e=1"}})
		}, 400, "not a processing chain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do()
			if st := errs.Status(err); st != tc.status || err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v (status %d), want status %d and %q", err, st, tc.status, tc.msg)
			}
		})
	}
	// Nothing refused was stored.
	rec, err := k.Get(ctx, "photos")
	if err != nil || rec.Separators() != "-" || !reflect.DeepEqual(rec.Styles, map[string]string{"a_b": "imageInfo"}) {
		t.Fatalf("record after the refusals = %+v, %v", rec, err)
	}
}

func TestStylesLimit(t *testing.T) {
	ctx := context.Background()
	k := newKeeper(t)
	if err := k.Create(ctx, Record{Name: "photos", Dir: "/srv/p", Owner: "alice"}); err != nil {
		t.Fatal(err)
	}
	for i := range MaxStyles {
		if _, err := k.SetStyle(ctx, "photos", fmt.Sprint("s", i), "imageInfo"); err != nil {
			t.Fatal(err)
		}
	}
	_, err := k.SetStyle(ctx, "photos", "one_more", "imageInfo")
	if errs.Status(err) != 400 || !strings.Contains(err.Error(), "has 100 styles already") {
		t.Fatalf("style %d: %v, want a 400 on the limit", MaxStyles+1, err)
	}
	// Replacing one at the limit is not adding one.
	if _, err := k.SetStyle(ctx, "photos", "s0", "imageView2/2/w/10"); err != nil {
		t.Fatalf("replacing a style at the limit: %v", err)
	}
}

// meddlingKV lets another writer change a record between a reader's Get
// and its CAS, once.
type meddlingKV struct {
	cluster.KV
	once   sync.Once
	meddle func()
}

func (m *meddlingKV) CAS(ctx context.Context, key string, val []byte, index uint64) (bool, error) {
	if index != 0 {
		m.once.Do(m.meddle)
	}
	return m.KV.CAS(ctx, key, val, index)
}

// A change made between another change's read and write is kept: both
// styles are there.
func TestStylesCheckAndSet(t *testing.T) {
	ctx := context.Background()
	inner := newKeeper(t)
	if err := inner.Create(ctx, Record{Name: "photos", Dir: "/srv/p", Owner: "alice"}); err != nil {
		t.Fatal(err)
	}
	m := &meddlingKV{KV: inner.kv}
	m.meddle = func() {
		if _, err := inner.SetStyle(ctx, "photos", "other", "imageInfo"); err != nil {
			t.Error(err)
		}
	}
	k := NewKeeper(m)
	if _, err := k.SetStyle(ctx, "photos", "thumb", "imageView2/2/w/200"); err != nil {
		t.Fatal(err)
	}
	rec, err := inner.Get(ctx, "photos")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"thumb": "imageView2/2/w/200", "other": "imageInfo"}
	if !reflect.DeepEqual(rec.Styles, want) {
		t.Fatalf("styles = %v, want %v (a concurrent change was lost)", rec.Styles, want)
	}
}
