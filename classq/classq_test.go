package classq

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qufop/qufop/tenant"
)

// run plays a script on a fresh queue and returns what the pops and
// refusals gave, space separated. Ops: "p3" pushes paid waiters p1..p3 (its
// names continue from the last push of the class), "f2" likewise for free,
// "." pops one ("-" when empty), "x:p2" removes p2.
func run(t *testing.T, w Weights, b Bounds, script string) string {
	t.Helper()
	q := New[string](w)
	entries := map[string]*Entry[string]{}
	next := map[byte]int{}
	var out []string
	for _, op := range strings.Fields(script) {
		switch {
		case op == ".":
			e, ok := q.Pop()
			if !ok {
				out = append(out, "-")
				continue
			}
			out = append(out, e.Value)
		case strings.HasPrefix(op, "x:"):
			out = append(out, fmt.Sprintf("x%v", q.Remove(entries[op[2:]])))
		default:
			var n int
			_, err := fmt.Sscanf(op[1:], "%d", &n)
			require.NoError(t, err, op)
			c := tenant.Free
			if op[0] == 'p' {
				c = tenant.Paid
			}
			for range n {
				next[op[0]]++
				name := fmt.Sprintf("%c%d", op[0], next[op[0]])
				e, ok := q.Push(c, name, b.Of(c))
				if !ok {
					out = append(out, "full:"+name)
					continue
				}
				entries[name] = e
			}
		}
	}
	return strings.Join(out, " ")
}

func TestSequences(t *testing.T) {
	big := Uniform(100)
	for _, tc := range []struct {
		name   string
		w      Weights
		b      Bounds
		script string
		want   string
	}{
		{"free only is FIFO (today's behaviour with no tenant)", Weights{}, big,
			"f4 . . . . .", "f1 f2 f3 f4 -"},
		{"paid only is FIFO", Weights{}, big,
			"p3 . . .", "p1 p2 p3"},
		{"paid goes first, 4:1, though free came first", Weights{}, big,
			"f3 p10 . . . . . . . . . . . . .",
			"p1 p2 p3 p4 f1 p5 p6 p7 p8 f2 p9 p10 f3"},
		{"an empty class is skipped", Weights{}, big,
			"p1 f3 . . . .", "p1 f1 f2 f3"},
		{"paid arriving while free is served takes the next turn", Weights{}, big,
			"f3 . p2 . . .", "f1 p1 p2 f2"},
		{"configured 2:1", Weights{Paid: 2, Free: 1}, big,
			"f3 p6 . . . . . . . . .", "p1 p2 f1 p3 p4 f2 p5 p6 f3"},
		{"1:1 alternates", Weights{Paid: 1, Free: 1}, big,
			"f2 p2 . . . .", "p1 f1 p2 f2"},
		{"each class has its own bound", Weights{}, Bounds{Paid: 1, Free: 2},
			"f3 p2 . . .", "full:f3 full:p2 p1 f1 f2"},
		{"a bound of zero refuses at once", Weights{}, Bounds{Paid: 2, Free: 0},
			"f1 p1 .", "full:f1 p1"},
		{"a freed place can be taken again", Weights{}, Bounds{Paid: 1, Free: 1},
			"f1 f1 . f1 .", "full:f2 f1 f3"},
		{"a removed waiter is never served and frees its place", Weights{}, Bounds{Paid: 2, Free: 2},
			"f2 x:f1 f1 . . .", "xtrue f2 f3 -"},
		{"removing a served waiter says so (the caller owns a slot)", Weights{}, big,
			"p1 . x:p1", "p1 xfalse"},
		{"removing twice", Weights{}, big,
			"p2 x:p1 x:p1 .", "xtrue xfalse p2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, run(t, tc.w, tc.b, tc.script))
		})
	}
}

// Over a long pseudo-random sequence of arrivals, departures and hand-offs
// (fixed seed: deterministic), a free waiter is served within five
// hand-offs whenever it waits, paid waiters are never passed over while
// paid has its turn, and every class stays FIFO.
func TestNoStarvation(t *testing.T) {
	for _, w := range []Weights{DefaultWeights, {Paid: 2, Free: 1}, {Paid: 1, Free: 3}} {
		t.Run(fmt.Sprintf("%d:%d", w.Paid, w.Free), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(w.Paid*10+w.Free)))
			q := New[int](w)
			var (
				seq     int
				waiting = map[tenant.Class][]*Entry[int]{} // in arrival order
				// since counts the hand-offs to the other class while
				// the oldest waiter of a class waits.
				since          = map[tenant.Class]int{}
				served         = map[tenant.Class]int{}
				bothWaitServed = map[tenant.Class]int{}
			)
			limit := map[tenant.Class]int{tenant.Free: w.Paid, tenant.Paid: w.Free}
			for step := 0; step < 100000; step++ {
				switch r := rng.IntN(10); {
				case r < 4: // arrivals, mostly paid: the flood that could starve free
					c := tenant.Paid
					if r == 0 {
						c = tenant.Free
					}
					seq++
					e, ok := q.Push(c, seq, 50)
					if ok {
						waiting[c] = append(waiting[c], e)
					}
				case r == 4: // a waiter gives up
					c := tenant.Classes[rng.IntN(2)]
					if n := len(waiting[c]); n > 0 {
						i := rng.IntN(n)
						require.True(t, q.Remove(waiting[c][i]))
						waiting[c] = append(waiting[c][:i], waiting[c][i+1:]...)
					}
				default: // a slot frees
					both := len(waiting[tenant.Paid]) > 0 && len(waiting[tenant.Free]) > 0
					e, ok := q.Pop()
					if !ok {
						require.Zero(t, len(waiting[tenant.Paid])+len(waiting[tenant.Free]))
						continue
					}
					c := e.Class
					require.Same(t, waiting[c][0], e, "class %s is FIFO", c)
					waiting[c] = waiting[c][1:]
					served[c]++
					if both {
						bothWaitServed[c]++
					}
					since[c] = 0
					for _, o := range tenant.Classes {
						if o != c && len(waiting[o]) > 0 {
							since[o]++
							require.LessOrEqual(t, since[o], limit[o],
								"step %d: a waiting %s waiter passed over more than %d times", step, o, limit[o])
						} else if o != c {
							since[o] = 0
						}
					}
				}
				require.Equal(t, len(waiting[tenant.Paid])+len(waiting[tenant.Free]), q.Total())
				require.Equal(t, len(waiting[tenant.Free]), q.Len(tenant.Free))
			}
			// The sequence did exercise contention of both kinds.
			require.Greater(t, bothWaitServed[tenant.Free], 100, "%v", bothWaitServed)
			require.Greater(t, bothWaitServed[tenant.Paid], 100, "%v", bothWaitServed)
		})
	}
}

// While both classes have a backlog, every round of weight-many hand-offs
// gives each class exactly its weight.
func TestSharesUnderBacklog(t *testing.T) {
	for _, w := range []Weights{DefaultWeights, {Paid: 2, Free: 1}, {Paid: 1, Free: 3}, {Paid: 7, Free: 2}} {
		q := New[int](w)
		for i := range 1000 {
			q.Push(tenant.Paid, i, 1000)
			q.Push(tenant.Free, i, 1000)
		}
		round := w.Paid + w.Free
		for r := range 1000 / round / 2 {
			got := map[tenant.Class]int{}
			for range round {
				e, ok := q.Pop()
				require.True(t, ok)
				got[e.Class]++
			}
			require.Equal(t, map[tenant.Class]int{tenant.Paid: w.Paid, tenant.Free: w.Free}, got, "weights %v, round %d", w, r)
		}
	}
}

func TestLensAndValidate(t *testing.T) {
	q := New[int](Weights{})
	q.Push(tenant.Paid, 1, 5)
	q.Push(tenant.Free, 2, 5)
	q.Push(tenant.Free, 3, 5)
	q.Push("gold", 4, 5) // an unknown class is served as the lowest
	assert.Equal(t, map[tenant.Class]int{tenant.Paid: 1, tenant.Free: 3}, q.Lens())
	assert.Equal(t, 4, q.Total())

	require.NoError(t, DefaultWeights.Validate())
	require.Error(t, Weights{Paid: 4}.Validate())
	assert.Equal(t, 7, Bounds{Paid: 7, Free: 3}.Of(tenant.Paid))
	assert.Equal(t, 3, Bounds{Paid: 7, Free: 3}.Of(""))
}

// PopIf serves only the classes it is allowed, in their usual order, and
// leaves the others' waiters and the round where they were.
func TestPopIf(t *testing.T) {
	q := New[string](Weights{})
	for _, v := range []string{"f1", "f2"} {
		q.Push(tenant.Free, v, 10)
	}
	for _, v := range []string{"p1", "p2"} {
		q.Push(tenant.Paid, v, 10)
	}
	paidOnly := func(c tenant.Class) bool { return c == tenant.Paid }
	noneOK := func(tenant.Class) bool { return false }

	_, ok := q.PopIf(noneOK)
	assert.False(t, ok, "nobody may be served")
	var got []string
	for {
		e, ok := q.PopIf(paidOnly)
		if !ok {
			break
		}
		got = append(got, e.Value)
	}
	assert.Equal(t, []string{"p1", "p2"}, got)
	assert.Equal(t, 2, q.Total())
	_, ok = q.PopIf(paidOnly)
	assert.False(t, ok, "free waiters are not served by a paid-only pop")
	q.Push(tenant.Paid, "p3", 10)
	got = nil
	for {
		e, ok := q.PopIf(nil)
		if !ok {
			break
		}
		got = append(got, e.Value)
	}
	// Paid had two of its four hand-offs: p3 goes before the free ones.
	assert.Equal(t, []string{"p3", "f1", "f2"}, got)
	assert.Equal(t, 0, q.Total())
}
