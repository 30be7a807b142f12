package errs

import (
	"errors"
	"fmt"
	"testing"
)

type carrier struct{}

func (carrier) Error() string   { return "bad fop segment 1" }
func (carrier) HTTPStatus() int { return 400 }

func TestStatusAndPublic(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		status int
		public string
	}{
		{"nil", nil, 200, "processing failed"},
		{"plain error hides its text", errors.New("open /secret/path"), 599, "processing failed"},
		{"bad request", BadRequest("bad %s", "w"), 400, "bad w"},
		{"not found", NotFound("no %q", "k"), 404, `no "k"`},
		{"failed keeps cause out of the public text", Failed(errors.New("vips: x"), "resize failed"), 599, "resize failed"},
		{"wrapped twice: outermost wins", fmt.Errorf("ctx: %w", New(503, "busy")), 503, "busy"},
		{"carrier", fmt.Errorf("wrap: %w", carrier{}), 400, "bad fop segment 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Status(tc.err); got != tc.status {
				t.Errorf("Status = %d, want %d", got, tc.status)
			}
			if tc.err == nil {
				return
			}
			if got := Public(tc.err); got != tc.public {
				t.Errorf("Public = %q, want %q", got, tc.public)
			}
		})
	}
	e := Failed(errors.New("cause"), "msg")
	if e.Error() != "msg: cause" || !errors.Is(e, e.Err) {
		t.Errorf("Error/Unwrap: %q", e.Error())
	}
}

type carried string

func (c carried) Error() string   { return string(c) }
func (c carried) HTTPStatus() int { return 400 }

// Every public error of a join is shown, not only the first.
func TestPublicOfJoin(t *testing.T) {
	err := errors.Join(carried("ufop.yaml:1: image: missing"), carried("ufop.yaml:3: foo: unknown key"), errors.New("/secret/path"))
	if got, want := Public(err), "ufop.yaml:1: image: missing; ufop.yaml:3: foo: unknown key"; got != want {
		t.Fatalf("Public = %q, want %q", got, want)
	}
	if got := Public(errors.Join(errors.New("/secret/path"))); got != "processing failed" {
		t.Fatalf("Public = %q", got)
	}
	if got := Status(err); got != 400 {
		t.Fatalf("Status = %d", got)
	}
}
