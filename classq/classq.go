// Package classq is the wait queue of admission with classes of service:
// one FIFO per class (tenant.Class), each with its own bound, served by
// weighted round robin so that paid work goes first yet free work is
// never starved. It is a plain data structure: the caller's lock guards
// it (both pools already hold one while they hand slots over), and the
// caller hands the slot to what Pop returns.
package classq

import (
	"container/list"
	"fmt"

	"github.com/qufop/qufop/tenant"
)

// classes are the served classes in the order of tenant.Classes, highest
// priority first; the round starts with the first.
var classes = tenant.Classes

func index(c tenant.Class) int {
	for i, k := range classes {
		if k == c {
			return i
		}
	}
	return len(classes) - 1 // unknown: the lowest class (free)
}

// Weights are how many hand-offs in a row each class gets while the others
// wait too: {Paid: 4, Free: 1} serves at most four paid waiters for each
// free one, so a waiting free step is served within five hand-offs.
type Weights struct{ Paid, Free int }

// DefaultWeights is paid:free = 4:1.
var DefaultWeights = Weights{Paid: 4, Free: 1}

func (w Weights) of(c tenant.Class) int {
	if c == tenant.Paid {
		return w.Paid
	}
	return w.Free
}

// Validate refuses a weight under 1: a class with weight 0 would never be
// served while another waits.
func (w Weights) Validate() error {
	if w.Paid < 1 || w.Free < 1 {
		return fmt.Errorf("queue class weights must be at least 1, got paid %d, free %d", w.Paid, w.Free)
	}
	return nil
}

// Bounds are how many waiters each class's queue holds.
type Bounds struct{ Paid, Free int }

// Uniform is the same bound n for every class.
func Uniform(n int) Bounds { return Bounds{Paid: n, Free: n} }

// Of is the bound of class c.
func (b Bounds) Of(c tenant.Class) int {
	if c == tenant.Paid {
		return b.Paid
	}
	return b.Free
}

// Entry is one waiter in the queue.
type Entry[T any] struct {
	Value  T
	Class  tenant.Class
	el     *list.Element
	class  int
	queued bool
}

// Queue is the set of FIFOs. The zero Queue is not ready: use New.
type Queue[T any] struct {
	weights []int
	fifos   []list.List // of *Entry[T]
	cur     int         // the class being served
	credit  int         // hand-offs it has left this round
	total   int
}

// New returns an empty queue served with the weights w (zero value:
// DefaultWeights).
func New[T any](w Weights) *Queue[T] {
	if w == (Weights{}) {
		w = DefaultWeights
	}
	q := &Queue[T]{weights: make([]int, len(classes)), fifos: make([]list.List, len(classes))}
	for i, c := range classes {
		q.weights[i] = max(w.of(c), 1)
	}
	q.credit = q.weights[0]
	return q
}

// Push queues v at the back of class c's FIFO, unless that FIFO already
// holds bound waiters (false).
func (q *Queue[T]) Push(c tenant.Class, v T, bound int) (*Entry[T], bool) {
	i := index(c)
	if q.fifos[i].Len() >= bound {
		return nil, false
	}
	e := &Entry[T]{Value: v, Class: classes[i], class: i, queued: true}
	e.el = q.fifos[i].PushBack(e)
	q.total++
	return e, true
}

// Remove takes e out of its queue (a waiter whose context ended). It
// returns false when e was no longer queued: Pop had already chosen it, so
// the caller owns a slot it must give back.
func (q *Queue[T]) Remove(e *Entry[T]) bool {
	if e == nil || !e.queued {
		return false
	}
	q.fifos[e.class].Remove(e.el)
	e.queued, e.el = false, nil
	q.total--
	return true
}

// Pop takes the next waiter to serve: the oldest of the class whose turn it
// is. A class keeps the turn for its weight in hand-offs, then passes it
// on; a class with nobody waiting is skipped (and loses the rest of its
// turn, so the turn can come back to it only after the others had theirs).
func (q *Queue[T]) Pop() (*Entry[T], bool) { return q.PopIf(nil) }

// PopIf is Pop among the classes for which ok is true (nil: all): a class
// that may not be served now (a pool that keeps its last workers for paid
// work) is skipped as if nobody of it waited.
func (q *Queue[T]) PopIf(ok func(tenant.Class) bool) (*Entry[T], bool) {
	n := 0
	for i := range q.fifos {
		if ok == nil || ok(classes[i]) {
			n += q.fifos[i].Len()
		}
	}
	if n == 0 {
		return nil, false
	}
	for {
		if f := &q.fifos[q.cur]; q.credit > 0 && f.Len() > 0 && (ok == nil || ok(classes[q.cur])) {
			e := f.Remove(f.Front()).(*Entry[T])
			e.queued, e.el = false, nil
			q.credit--
			q.total--
			return e, true
		}
		q.cur = (q.cur + 1) % len(q.fifos)
		q.credit = q.weights[q.cur]
	}
}

// Len is how many waiters class c has.
func (q *Queue[T]) Len(c tenant.Class) int { return q.fifos[index(c)].Len() }

// Total is how many waiters all classes have.
func (q *Queue[T]) Total() int { return q.total }

// Lens are the waiters of each class (for the metrics), as of one moment.
func (q *Queue[T]) Lens() map[tenant.Class]int {
	out := make(map[tenant.Class]int, len(classes))
	for i, c := range classes {
		out[c] = q.fifos[i].Len()
	}
	return out
}
